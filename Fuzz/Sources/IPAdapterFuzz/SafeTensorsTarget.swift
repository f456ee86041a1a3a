import TensorCore
import Weights

/// `safetensors`: the input is a whole `.safetensors` file. The header is parsed from memory
/// (`SafeTensorsHeader.parse`); the file is then written to the scratch folder, opened the ways
/// the engine opens checkpoints (`SafeTensorsFile`, `openCheckpoint`'s content sniffing) and every
/// tensor is read and converted: float tensors to F32/F16/BF16, every tensor's raw bytes, integer
/// tensors widened to Int64.
enum SafeTensorsTarget {
  static func run(_ input: [UInt8]) throws {
    let header = try input.withUnsafeBytes { raw throws(SafeTensorsError) in
      try SafeTensorsHeader.parse(file: raw, path: "<fuzz>")
    }
    // Consistency of what the header promises: every entry inside the data section.
    for entry in header.entries {
      check(entry.dataOffsets.upperBound <= header.dataByteCount, "entry beyond the data section")
      _ = header.entry(entry.name)
    }
    let path = Scratch.write(input, name: "input.safetensors")
    let file = try SafeTensorsFile(path: path)
    readEverything(file)
    if let archive = try? openCheckpoint(path: path) { _ = archive.keys.compactMap(archive.info) }
  }

  static func readEverything(_ file: SafeTensorsFile) {
    _ = file.metadata
    for key in file.keys {
      guard let info = file.info(key) else { fatalError("listed key without info") }
      _ = try? file.rawBytes(key)
      _ = try? file.withUnsafeRawBytes(key) { raw in raw.reduce(0 as UInt8) { $0 &+ $1 } }
      if info.dtype != nil {
        if let tensor = try? file.tensor(key) { TensorReading.touch(tensor) }
      } else {
        _ = try? file.int64Values(key)
      }
    }
  }
}

/// Reading a tensor the ways the engine does: conversions to every float dtype and a full read.
enum TensorReading {
  static func touch(_ tensor: Tensor) {
    check(tensor.count >= 0, "negative element count")
    // Keep the work per input bounded: huge (but valid) tensors are only partly read.
    guard tensor.count <= 1 << 20 else { return }
    let f32 = tensor.toFloat32(pooled: false)
    _ = f32.scalars().reduce(0, +)
    _ = tensor.converted(to: .float16).byteCount
    _ = tensor.converted(to: .bfloat16).byteCount
    if tensor.rank >= 1, tensor.shape[0] > 1 {
      _ = tensor.slice(rows: 0..<1).toFloat32(pooled: false)
    }
  }
}
