import Autograd
import Foundation
import IPAdapter
import NN
import TensorCore
import TestSupport
import Testing
import Training
import Weights

/// The Qwen-VL position-aware resampler (+ `ln_post`, `@ proj`) against Qwen-VL's own `visual.py`
/// `Resampler` under `torch.autograd` (tools/reference/gen_training.py `qwen`): query grids 2, 3, 4
/// over a 3×3 key grid (the sin-cos table resized down, kept, resized up), and a 2×2 grid over a
/// 5×5 key grid with two heads and an identity `kv_proj`. Checked: the bicubic key table (≤ 4e-6 absolute),
/// the sin-cos table, the inference module's and the trainable module's outputs (≤ 1e-5), the
/// loss and every gradient (≤ 1e-4), variant detection from the keys, and CLS-token handling.
@Suite struct QwenResamplerTests {
  static let golden = try! SafeTensorsFile(path: Fixtures.url("training/qwen_resampler.safetensors").path)
  static let cases = ["g2k3", "g3k3", "g4k3", "g2k5"]

  func tensor(_ key: String) throws -> Tensor { try Self.golden.tensor(key).asFloat32() }

  func state(_ name: String) throws -> [String: Tensor] {
    let prefix = "\(name).param."
    var out: [String: Tensor] = [:]
    for key in Self.golden.keys where key.hasPrefix(prefix) { out[String(key.dropFirst(prefix.count))] = try tensor(key) }
    return out
  }

  func shape(_ name: String) throws -> QwenResampler.Shape {
    let variant = try IPAdapterVariant.detect(TensorDictionary(try state(name)), path: name)
    guard case .qwen(let s) = variant else { throw AutogradError.invalidArgument("\(name) detected as \(variant)") }
    return s
  }

  @Test(arguments: cases) func tablesMatchQwenVL(_ name: String) throws {
    let s = try shape(name)
    let table = try state(name)["pos_embed"]!
    #expect(Compare.maxAbsDifference(QwenResampler.sinCosTable(dim: s.dim, grid: s.grid), table) <= 1e-6)
    let side = Int(Double(try tensor("\(name).x").shape[1]).squareRoot())
    let resized = try QwenResampler.resizedTable(table, from: s.grid, to: side)
    let difference = Compare.maxAbsDifference(resized, try tensor("\(name).kpos"))
    // ≤ 4e-6: float32 rounding of 16 products; torch's own float32 result on g2k5 is 3e-6 away from
    // the same interpolation done in double.
    #expect(difference <= 4e-6, "\(name) get_abs_pos: max difference \(difference)")
  }

  @Test(arguments: cases) func inferenceModuleMatchesQwenVL(_ name: String) throws {
    let module = QwenResampler(try shape(name))
    try module.loadWeights(from: TensorDictionary(try state(name)), source: name)
    let y = try module(try tensor("\(name).x"))
    #expect(Compare.relativeError(y, try tensor("\(name).y")) <= 1e-5)
    // CLIP hidden states carry a CLS token first: it is dropped.
    let x = try tensor("\(name).x")
    let withCLS = try Ops.concatRows(
      (0..<2).flatMap { i in [Tensor.zeros([1, x.shape[2]]), x.slice(rows: i..<(i + 1)).reshaped([x.shape[1], x.shape[2]])] }
    ).reshaped([2, x.shape[1] + 1, x.shape[2]])
    #expect(try module(withCLS).scalars() == y.scalars())
  }

  @Test(arguments: cases) func trainableModuleMatchesQwenVLUnderAutograd(_ name: String) throws {
    let s = try shape(name)
    let trainable = try TrainableProjections.make(.qwen(s), state: try state(name))
    let tape = Tape()
    let x = tape.leaf(try tensor("\(name).x"))
    let y = try trainable(x, on: tape)
    #expect(Compare.relativeError(y.value, try tensor("\(name).y")) <= 1e-5)
    let loss = try tape.mseLoss(y, Variable(constant: try tensor("\(name).target")))
    let expected = try tensor("\(name).loss").scalars()[0]
    #expect(abs(loss.value.scalars()[0] - expected) <= 1e-5 * expected)
    try tape.backward(loss)
    #expect(Compare.relativeError(try #require(x.grad), try tensor("\(name).dx")) <= 1e-4)
    for (key, p) in trainable.parameters {
      let error = Compare.relativeError(try #require(p.grad, "\(key)"), try tensor("\(name).grad.\(key)"))
      #expect(error <= 1e-4, "\(name) \(key): gradient relative error \(error)")
    }
    #expect(trainable.state()["pos_embed"] != nil, "the fixed table is saved with the adapter")
  }
}
