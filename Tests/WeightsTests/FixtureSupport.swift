import Foundation
import TensorCore
import Testing

@testable import Weights

/// Golden files written by tools/reference/gen_safetensors_fixtures.py (Python safetensors 0.8.0).
enum Fixtures {
  static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../Fixtures/safetensors").standardizedFileURL

  static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

  static func bytes(_ name: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: directory.appendingPathComponent(name)))
  }

  struct ExpectedTensor: Decodable {
    var dtype: String
    var shape: [Int]
    var hex: String
    var f32_bits: [UInt32]?
    var int_values: [String]?

    var rawBytes: [UInt8] {
      var out: [UInt8] = []
      var i = hex.startIndex
      while i < hex.endIndex {
        let j = hex.index(i, offsetBy: 2)
        out.append(UInt8(hex[i..<j], radix: 16)!)
        i = j
      }
      return out
    }
  }

  struct ExpectedFile: Decodable {
    var metadata: [String: String]?
    var tensors: [String: ExpectedTensor]
  }

  static func expected() throws -> [String: ExpectedFile] {
    let data = try Data(contentsOf: directory.appendingPathComponent("expected.json"))
    return try JSONDecoder().decode([String: ExpectedFile].self, from: data)
  }

  static let fileNames = ["mixed.safetensors", "integers.safetensors", "empty.safetensors"]
}

/// A fresh temporary directory, removed by `cleanup()`.
final class TempDirectory {
  let url: URL

  init() throws {
    url = FileManager.default.temporaryDirectory
      .appendingPathComponent("weights-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  }

  func path(_ name: String) -> String { url.appendingPathComponent(name).path }

  /// Writes `bytes` to `name` and returns its path.
  func write(_ name: String, _ bytes: [UInt8]) throws -> String {
    let p = path(name)
    try Data(bytes).write(to: URL(fileURLWithPath: p))
    return p
  }

  /// A safetensors-like file: length prefix (or `length`), `header` padded with spaces to 8
  /// bytes (unless `pad` is false), then `data`.
  func safetensors(
    _ name: String, header: String, data: [UInt8] = [], length: UInt64? = nil, pad: Bool = true
  ) throws -> String {
    var h = Array(header.utf8)
    if pad { while h.count % 8 != 0 { h.append(0x20) } }
    return try write(name, littleEndian(length ?? UInt64(h.count)) + h + data)
  }

  func contents() throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
  }

  deinit { try? FileManager.default.removeItem(at: url) }
}

func littleEndian(_ n: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) } }

/// A tensor of `dtype` and `shape` holding exactly `bytes`.
func makeTensor(_ dtype: DType, _ shape: [Int], bytes: [UInt8]) -> Tensor {
  var t = Tensor(uninitializedShape: shape, dtype: dtype)
  precondition(t.byteCount == bytes.count)
  t.withUnsafeMutableRawPointer { p in
    bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
  }
  return t
}

/// The stored bytes of a tensor.
func bytesOf(_ t: Tensor) -> [UInt8] {
  Array(UnsafeRawBufferPointer(start: t.rawPointer, count: t.byteCount))
}

/// Float32 bit patterns of a tensor converted to Float32.
func f32Bits(_ t: Tensor) -> [UInt32] { t.scalars().map(\.bitPattern) }
