import Foundation
import TensorCore
import Testing
import Weights

/// `TorchCheckpointWriter` writes what `TorchCheckpoint` (the engine's torch.save reader) reads
/// back exactly — nested keys, shapes from scalars to rank 4, an empty tensor, more than 255
/// storages. (That `torch.load(weights_only=True)` and diffusers' `load_ip_adapter` read it is
/// checked by tools/reference/check_trained_adapter.py; see docs/training.md.)
@Suite struct TorchCheckpointWriterTests {
  @Test func writtenCheckpointsReadBackExactly() throws {
    var tensors: [(key: String, tensor: Tensor)] = []
    for i in 0..<300 { tensors.append(("w\(i)", try Tensor(shape: [2, 3], floats: (0..<6).map { Float(i) + Float($0) / 7 }))) }
    let odd: [(key: String, tensor: Tensor)] = [
      ("scalar", try Tensor(shape: [], floats: [-2.5])), ("empty", try Tensor(shape: [0, 4], floats: [])),
      ("rank4", try Tensor(shape: [2, 1, 3, 2], floats: (0..<12).map { Float($0) * -0.25 })),
    ]
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("writer-\(UUID().uuidString).bin").path
    try TorchCheckpointWriter.write([("image_proj", odd), ("ip_adapter", tensors)], to: path)
    let file = try TorchCheckpoint(path: path)
    #expect(file.keys.count == 303)
    #expect(file.pickleProtocol == 2 && file.formatVersion == "3")
    for (key, t) in odd { #expect(try file.tensor("image_proj." + key).shape == t.shape) }
    for (key, t) in odd + tensors {
      let prefix = tensors.contains { $0.key == key } ? "ip_adapter." : "image_proj."
      let read = try file.tensor(prefix + key).asFloat32()
      #expect(read.shape == t.shape && read.scalars() == t.scalars(), "\(key)")
    }
  }
}
