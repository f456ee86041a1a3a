import Foundation
import TensorCore

/// Errors of writing a PyTorch checkpoint, naming the file.
public enum TorchCheckpointWriteError: Error, Equatable, CustomStringConvertible {
  case tooLarge(path: String, bytes: Int)
  case unwritable(path: String, reason: String)

  public var description: String {
    switch self {
    case .tooLarge(let path, let bytes): "\(path): \(bytes) bytes needs ZIP64, which this writer does not produce (use .safetensors)"
    case .unwritable(let path, let reason): "\(path): cannot write: \(reason)"
    }
  }
}

/// Writes float32 tensors in `torch.save`'s zip format: a dictionary of dictionaries of tensors
/// (IP-Adapter's `{"image_proj": {…}, "ip_adapter": {…}}`), loadable with
/// `torch.load(path, weights_only=True)` and by this package's `TorchCheckpoint`.
///
/// matches: `torch.save(obj, path)` (PyTorch ≥ 1.6 zip serialization, protocol 2 pickle): entries
/// `archive/data.pkl`, `archive/byteorder`, `archive/data/<n>` (one storage per tensor, little
/// endian), `archive/version`; tensors rebuilt by `torch._utils._rebuild_tensor_v2` from
/// `torch.FloatStorage` persistent ids, contiguous strides. Stored (uncompressed) zip entries with
/// CRC-32s; no ZIP64 (files up to 4 GiB). The file is written atomically.
public enum TorchCheckpointWriter {
  public static func write(_ groups: [(name: String, tensors: [(key: String, tensor: Tensor)])], to path: String) throws {
    var pickle = Pickle()
    var storages: [[UInt8]] = []
    pickle.op(0x80); pickle.op(2)  // PROTO 2
    pickle.op(0x7D)  // EMPTY_DICT
    pickle.op(0x28)  // MARK
    for group in groups {
      pickle.string(group.name)
      pickle.op(0x7D); pickle.op(0x28)
      for (key, tensor) in group.tensors {
        pickle.string(key)
        let t = tensor.asFloat32()
        pickle.global("torch._utils", "_rebuild_tensor_v2")
        pickle.op(0x28)
        // Persistent id ('storage', torch.FloatStorage, '<n>', 'cpu', numel).
        pickle.op(0x28)
        pickle.string("storage")
        pickle.global("torch", "FloatStorage")
        pickle.string("\(storages.count)")
        pickle.string("cpu")
        pickle.int(t.count)
        pickle.op(0x74)  // TUPLE
        pickle.op(0x51)  // BINPERSID
        pickle.int(0)
        pickle.tuple(t.shape)
        var strides = [Int](repeating: 1, count: t.shape.count)
        for i in stride(from: t.shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * t.shape[i + 1] }
        pickle.tuple(strides)
        pickle.op(0x89)  // NEWFALSE (requires_grad)
        pickle.global("collections", "OrderedDict")
        pickle.op(0x29); pickle.op(0x52)  // EMPTY_TUPLE, REDUCE: backward hooks
        pickle.op(0x74); pickle.op(0x52)  // TUPLE, REDUCE
        storages.append(t.count == 0 ? [] : Array(UnsafeRawBufferPointer(start: t.floatPointer, count: t.count * 4)))
      }
      pickle.op(0x75)  // SETITEMS
    }
    pickle.op(0x75)
    pickle.op(0x2E)  // STOP
    var zip = StoredZip()
    zip.add("archive/data.pkl", pickle.bytes)
    zip.add("archive/byteorder", Array("little".utf8))
    for (i, s) in storages.enumerated() { zip.add("archive/data/\(i)", s) }
    zip.add("archive/version", Array("3\n".utf8))
    let bytes = try zip.finish(path: path)
    do { try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
      throw TorchCheckpointWriteError.unwritable(path: path, reason: "\(error.localizedDescription)")
    }
  }
}

/// The pickle opcodes the writer needs (protocol 2).
private struct Pickle {
  var bytes: [UInt8] = []

  mutating func op(_ code: UInt8) { bytes.append(code) }

  mutating func u32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }

  mutating func string(_ s: String) {
    let utf8 = Array(s.utf8)
    op(0x58)  // BINUNICODE
    u32(UInt32(utf8.count))
    bytes += utf8
  }

  mutating func global(_ module: String, _ name: String) {
    op(0x63)  // GLOBAL
    bytes += Array("\(module)\n\(name)\n".utf8)
  }

  mutating func int(_ v: Int) {
    if (0..<256).contains(v) {
      op(0x4B); op(UInt8(v))  // BININT1
    } else if v >= Int(Int32.min) && v <= Int(Int32.max) {
      op(0x4A); u32(UInt32(bitPattern: Int32(v)))  // BININT
    } else {
      op(0x8A); op(8)  // LONG1, 8 bytes little endian
      for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }
  }

  mutating func tuple(_ values: [Int]) {
    op(0x28)
    for v in values { int(v) }
    op(0x74)
  }
}

/// A zip archive of stored (uncompressed) entries.
private struct StoredZip {
  var bytes: [UInt8] = []
  var central: [UInt8] = []
  var count = 0

  static let crcTable: [UInt32] = (0..<256).map { n in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
  }

  static func crc32(_ data: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in data { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
  }

  static func le(_ v: UInt32, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }

  mutating func add(_ name: String, _ data: [UInt8]) {
    let nameBytes = Array(name.utf8)
    let crc = Self.crc32(data)
    let offset = UInt32(truncatingIfNeeded: bytes.count)
    let size = UInt32(truncatingIfNeeded: data.count)
    // Local header, then the data (torch aligns data to 64 bytes with an extra field; readers do not need it).
    bytes += Self.le(0x0403_4B50, 4) + Self.le(20, 2) + Self.le(0, 2) + Self.le(0, 2) + Self.le(0, 2) + Self.le(0, 2)
    bytes += Self.le(crc, 4) + Self.le(size, 4) + Self.le(size, 4) + Self.le(UInt32(nameBytes.count), 2) + Self.le(0, 2)
    bytes += nameBytes
    bytes += data
    central += Self.le(0x0201_4B50, 4) + Self.le(20, 2) + Self.le(20, 2) + Self.le(0, 2) + Self.le(0, 2) + Self.le(0, 2)
    central += Self.le(0, 2) + Self.le(crc, 4) + Self.le(size, 4) + Self.le(size, 4) + Self.le(UInt32(nameBytes.count), 2)
    central += Self.le(0, 2) + Self.le(0, 2) + Self.le(0, 2) + Self.le(0, 2) + Self.le(0, 4) + Self.le(offset, 4)
    central += nameBytes
    count += 1
  }

  mutating func finish(path: String) throws -> [UInt8] {
    let total = bytes.count + central.count + 22
    guard total < Int(UInt32.max), count < 0xFFFF else { throw TorchCheckpointWriteError.tooLarge(path: path, bytes: total) }
    let start = UInt32(bytes.count)
    var out = bytes + central
    out += Self.le(0x0605_4B50, 4) + Self.le(0, 2) + Self.le(0, 2) + Self.le(UInt32(count), 2) + Self.le(UInt32(count), 2)
    out += Self.le(UInt32(central.count), 4) + Self.le(start, 4) + Self.le(0, 2)
    return out
  }
}
