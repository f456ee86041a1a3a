import Foundation
import TensorCore
import Testing

@testable import Weights

/// Golden files written by tools/reference/gen_torch_checkpoint_fixtures.py (torch 2.13).
enum TorchFixtures {
  static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../Fixtures/torch").standardizedFileURL

  static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

  static func bytes(_ name: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: directory.appendingPathComponent(name)))
  }

  static let goodFiles = ["ip-adapter-plus.bin", "sd-shaped.ckpt", "layouts.pt", "layouts-p4.pt", "layouts-p5.pt"]

  struct ExpectedTensor: Decodable {
    var dtype: String
    var shape: [Int]
    var stride: [Int]
    var storage_offset: Int
    var storage_group: String
    var contiguous: Bool
    var hex: String
    var f32_bits: [UInt32]?
    var int_values: [String]?

    var rawBytes: [UInt8] { hexBytes(hex) }
  }

  /// A metadata value as the script writes it: {"int": "7"}, {"float_bits": "3fb9…"}, …
  struct ExpectedMetadata: Decodable {
    var value: TorchCheckpoint.MetadataValue

    private enum Keys: String, CodingKey {
      case none, bool, int, float_bits, string, bytes, list, object
    }

    init(from decoder: any Decoder) throws {
      let c = try decoder.container(keyedBy: Keys.self)
      if c.contains(.none) {
        value = .none
      } else if let b = try c.decodeIfPresent(Bool.self, forKey: .bool) {
        value = .bool(b)
      } else if let i = try c.decodeIfPresent(String.self, forKey: .int) {
        value = .int(Int64(i)!)
      } else if let f = try c.decodeIfPresent(String.self, forKey: .float_bits) {
        value = .float(Double(bitPattern: UInt64(f, radix: 16)!))
      } else if let s = try c.decodeIfPresent(String.self, forKey: .string) {
        value = .string(s)
      } else if let h = try c.decodeIfPresent(String.self, forKey: .bytes) {
        value = .bytes(hexBytes(h))
      } else if let l = try c.decodeIfPresent([ExpectedMetadata].self, forKey: .list) {
        value = .list(l.map(\.value))
      } else {
        value = .object(try c.decode(String.self, forKey: .object))
      }
    }
  }

  struct ExpectedFile: Decodable {
    var archive: String
    var `protocol`: Int
    var tensors: [String: ExpectedTensor]
    var metadata: [String: ExpectedMetadata]
  }

  struct ExpectedRefusal: Decodable {
    var error: String
    var module: String?
    var name: String?
    var callee: String?
    var torch_error: String
  }

  struct Expected: Decodable {
    var files: [String: ExpectedFile]
    var malicious: [String: ExpectedRefusal]
  }

  static func expected() throws -> Expected {
    let data = try Data(contentsOf: directory.appendingPathComponent("expected.json"))
    return try JSONDecoder().decode(Expected.self, from: data)
  }

  static let maliciousFiles: [String] = {
    (try? FileManager.default.contentsOfDirectory(atPath: directory.path))?
      .filter { $0.hasPrefix("evil-") }.sorted() ?? []
  }()
}

func hexBytes(_ hex: String) -> [UInt8] {
  var out: [UInt8] = []
  var i = hex.startIndex
  while i < hex.endIndex {
    let j = hex.index(i, offsetBy: 2)
    out.append(UInt8(hex[i..<j], radix: 16)!)
    i = j
  }
  return out
}

/// Parses a whole checkpoint from memory (no file), as `TorchCheckpoint(path:)` does after mapping.
func parseCheckpoint(_ bytes: [UInt8], path: String = "<memory>") throws(TorchCheckpointError) -> TorchCheckpoint.Parsed {
  var result: Result<TorchCheckpoint.Parsed, TorchCheckpointError>!
  bytes.withUnsafeBytes { raw in
    result = Result { () throws(TorchCheckpointError) in try TorchCheckpoint.parse(raw, path: path) }
  }
  return try result.get()
}

/// Runs the restricted unpickler and the flattener over raw pickle bytes.
func unpickle(_ bytes: [UInt8], path: String = "<memory>") throws(TorchCheckpointError) -> StateDictFlattener {
  var result: Result<StateDictFlattener, TorchCheckpointError>!
  bytes.withUnsafeBytes { raw in
    result = Result { () throws(TorchCheckpointError) in
      let unpickler = RestrictedUnpickler(bytes: raw, path: path)
      defer { unpickler.releaseGraph() }
      let root = try unpickler.load()
      var flattener = StateDictFlattener(path: path, opcodeCount: unpickler.opcodeCount)
      try flattener.visit(root, key: "")
      return flattener
    }
  }
  return try result.get()
}

/// The records of a checkpoint zip, read with the reader's own directory code.
func zipRecords(_ bytes: [UInt8]) throws -> [(name: String, data: [UInt8])] {
  try bytes.withUnsafeBytes { raw in
    let dir = try ZipDirectory.read(raw, path: "<memory>")
    return dir.entries.map { e in
      (e.name, Array(raw[e.dataOffset..<(e.dataOffset + e.compressedSize)]))
    }
  }
}

/// Writes zip archives the way torch's PyTorchStreamWriter does (stored entries, data aligned to
/// 64 bytes by an "FB" padding extra field, DOS date 1980-01-01), optionally with zip64 records
/// and zip64 extended information for every entry, so tests can build archives around
/// hand-made pickles and damage them on purpose. (Python's zipfile and torch.load(weights_only=True)
/// read both the plain and the zip64 output of `checkpoint(pickle:storages:zip64:)`; checked when
/// this was written.)
struct TestZip {
  struct Item {
    var name: String
    var data: [UInt8]
    var method: UInt16 = 0
    var flags: UInt16 = 0x0808
    var crc: UInt32? = nil
  }

  static func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
  static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
  static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }

  static func build(_ items: [Item], zip64: Bool = false) -> [UInt8] {
    var out: [UInt8] = []
    var central: [UInt8] = []
    for item in items {
      let name = Array(item.name.utf8)
      let crc = item.crc ?? item.data.withUnsafeBytes { CRC32.checksum($0) }
      let offset = out.count
      // Pad the local extra field so the data starts on a 64-byte boundary.
      let pad = (64 - (offset + 30 + name.count + 4) % 64) % 64
      out += le32(0x0403_4B50) + le16(20) + le16(Int(item.flags)) + le16(Int(item.method)) + le16(0) + le16(0x21)
      out += le32(0) + le32(0) + le32(0) + le16(name.count) + le16(4 + pad)
      out += name + Array("FB".utf8) + le16(pad) + [UInt8](repeating: 0x5A, count: pad)
      out += item.data
      let size = UInt32(item.data.count)
      var extra: [UInt8] = []
      if zip64 {
        extra = le16(1) + le16(24) + le64(UInt64(item.data.count)) + le64(UInt64(item.data.count)) + le64(UInt64(offset))
      }
      central += le32(0x0201_4B50) + le16(zip64 ? 45 : 20) + le16(zip64 ? 45 : 20) + le16(Int(item.flags))
      central += le16(Int(item.method)) + le16(0) + le16(0x21) + le32(crc)
      central += zip64 ? le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) : le32(size) + le32(size)
      central += le16(name.count) + le16(extra.count) + le16(0) + le16(0) + le16(0) + le32(0)
      central += zip64 ? le32(0xFFFF_FFFF) : le32(UInt32(offset))
      central += name + extra
    }
    let directoryOffset = out.count
    out += central
    if zip64 {
      let record = out.count
      out += le32(0x0606_4B50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
      out += le64(UInt64(items.count)) + le64(UInt64(items.count)) + le64(UInt64(central.count))
      out += le64(UInt64(directoryOffset))
      out += le32(0x0706_4B50) + le32(0) + le64(UInt64(record)) + le32(1)
      out += le32(0x0605_4B50) + le16(0) + le16(0) + le16(0xFFFF) + le16(0xFFFF)
      out += le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) + le16(0)
    } else {
      out += le32(0x0605_4B50) + le16(0) + le16(0) + le16(items.count) + le16(items.count)
      out += le32(UInt32(central.count)) + le32(UInt32(directoryOffset)) + le16(0)
    }
    return out
  }

  /// A torch checkpoint zip: `archive/data.pkl`, `archive/byteorder`, `archive/data/<key>`…,
  /// `archive/version`.
  static func checkpoint(
    pickle: [UInt8], storages: [String: [UInt8]] = [:], archive: String = "archive", byteOrder: String = "little",
    zip64: Bool = false
  ) -> [UInt8] {
    var items = [Item(name: "\(archive)/data.pkl", data: pickle)]
    items.append(Item(name: "\(archive)/byteorder", data: Array(byteOrder.utf8)))
    for key in storages.keys.sorted() { items.append(Item(name: "\(archive)/data/\(key)", data: storages[key]!)) }
    items.append(Item(name: "\(archive)/version", data: Array("3\n".utf8)))
    return build(items, zip64: zip64)
  }
}

/// Hand assembly of pickle opcodes.
enum Pickle {
  static func unicode(_ s: String) -> [UInt8] {
    let b = Array(s.utf8)
    return [0x58] + TestZip.le32(UInt32(b.count)) + b
  }
  static func shortUnicode(_ s: String) -> [UInt8] {
    let b = Array(s.utf8)
    return [0x8C, UInt8(b.count)] + b
  }
  static func global(_ module: String, _ name: String) -> [UInt8] {
    [0x63] + Array(module.utf8) + [0x0A] + Array(name.utf8) + [0x0A]
  }
  static func stackGlobal(_ module: String, _ name: String) -> [UInt8] {
    shortUnicode(module) + shortUnicode(name) + [0x93]
  }
  static func int(_ v: Int) -> [UInt8] {
    if v >= 0 && v < 256 { return [0x4B, UInt8(v)] }
    return [0x4A] + TestZip.le32(UInt32(bitPattern: Int32(v)))
  }
  static func tuple(_ items: [[UInt8]]) -> [UInt8] { [0x28] + items.flatMap { $0 } + [0x74] }
  static let proto2: [UInt8] = [0x80, 0x02]
  static let stop: [UInt8] = [0x2E]
  static let emptyDict: [UInt8] = [0x7D]
  static let emptyTuple: [UInt8] = [0x29]
  static let mark: [UInt8] = [0x28]
  static let setItems: [UInt8] = [0x75]
  static let reduce: [UInt8] = [0x52]
  static let newFalse: [UInt8] = [0x89]

  /// `_rebuild_tensor_v2(('storage', torch.<cls>, key, 'cpu', numel), offset, shape, stride, False, OrderedDict())`
  static func tensor(
    storageClass: String = "FloatStorage", key: String, numel: Int, offset: Int = 0, shape: [Int], stride: [Int]
  ) -> [UInt8] {
    let pid = tuple([unicode("storage"), global("torch", storageClass), unicode(key), unicode("cpu"), int(numel)])
    return global("torch._utils", "_rebuild_tensor_v2")
      + tuple([
        pid + [0x51], int(offset), tuple(shape.map { int($0) }), tuple(stride.map { int($0) }), newFalse,
        global("collections", "OrderedDict") + emptyTuple + reduce,
      ]) + reduce
  }

  /// `{key: value, …}` with protocol 2 framing.
  static func dict(_ items: [(String, [UInt8])]) -> [UInt8] {
    proto2 + emptyDict + mark + items.flatMap { unicode($0.0) + $0.1 } + setItems + stop
  }
}

func floatBytes(_ values: [Float]) -> [UInt8] {
  values.flatMap { TestZip.le32($0.bitPattern) }
}
