import TensorCore
import Weights

/// `torch`: PyTorch checkpoints (`torch.save` zips, legacy pickles) and the restricted unpickler.
///
/// The first byte chooses how the rest is used:
/// - even: the rest is a whole checkpoint file (zip, legacy pickle/tar, anything), opened with
///   `TorchCheckpoint(path:)` and through `openCheckpoint`'s content sniffing;
/// - odd: the rest is `data.pkl`, then the storage records `0`, `1`, … separated by
///   `partSeparator`; they are packed into a valid stored zip (`archive/data.pkl`,
///   `archive/byteorder`, `archive/data/<n>`, `archive/version`) with correct CRCs, so mutations
///   reach the unpickler and the tensor validation instead of stopping at the CRC check.
/// Every tensor found is then read (`tensor`, `rawBytes`, `int64Values`, conversions).
enum TorchTarget {
  static func run(_ input: [UInt8]) throws {
    guard let mode = input.first else { return }
    let body = input.dropFirst()
    let file: [UInt8]
    if mode & 1 == 0 {
      file = Array(body)
      _ = file.withUnsafeBytes { CheckpointFormat.detect($0) }
    } else {
      let parts = splitParts(body)
      var zip = StoredZipWriter()
      zip.add("archive/data.pkl", parts[0])
      zip.add("archive/byteorder", Array("little".utf8)[...])
      for (i, record) in parts.dropFirst().enumerated() { zip.add("archive/data/\(i)", record) }
      zip.add("archive/version", Array("3\n".utf8)[...])
      file = zip.finish()
    }
    let path = Scratch.write(file, name: "input.pt")
    if let archive = try? openCheckpoint(path: path) {
      // Sniffing may route the bytes to the safetensors reader too.
      _ = archive.keys.compactMap(archive.info)
    }
    let checkpoint = try TorchCheckpoint(path: path)
    _ = checkpoint.metadata.mapValues(\.description)
    _ = (checkpoint.archiveName, checkpoint.pickleProtocol, checkpoint.formatVersion)
    for key in checkpoint.keys {
      guard let info = checkpoint.info(key), let layout = checkpoint.layout(key) else {
        fatalError("listed key without info")
      }
      check(layout.shape == info.shape, "layout and info disagree on the shape")
      // Bound the work per input: expanded (stride-0) tensors may legitimately be up to 1 GiB.
      let count = layout.shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue }
      guard count <= 1 << 22 else { continue }
      _ = try? checkpoint.rawBytes(key)
      if info.dtype != nil {
        if let tensor = try? checkpoint.tensor(key) { TensorReading.touch(tensor) }
      } else {
        _ = try? checkpoint.int64Values(key)
      }
    }
  }
}
