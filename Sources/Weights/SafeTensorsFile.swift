import Foundation
import TensorCore

/// A `.safetensors` checkpoint opened lazily through a read-only memory mapping.
///
/// Opening validates the whole header (see `SafeTensorsHeader`) but reads no tensor data.
/// `tensor(_:)` returns a zero-copy `Tensor` view for F32/F16/BF16 entries: its borrowed storage
/// keeps the mapping alive, so views stay valid after this object is gone, and the file is
/// unmapped when the last view dies. Entries of other stored types (I64 `position_ids`, BOOL, F64,
/// FP8 …) appear in `keys`/`info` and are read with `rawBytes(_:)`, `withUnsafeRawBytes(_:_:)` or
/// `int64Values(_:)`; `tensor(_:)` throws `SafeTensorsError.notAFloatType` for them.
///
/// matches: huggingface/safetensors format; validation as Rust `SafeTensors::deserialize`
/// (v0.8.0), loading as Python `safe_open(framework="pt")`.
/// Limitations: data is assumed little-endian (as the format specifies; the engine targets x86-64
/// and arm64). A tensor whose bytes are not aligned to its element size in memory (only possible
/// with files from writers that do not pad the header to 8 bytes) is copied instead of viewed.
public final class SafeTensorsFile: TensorArchive {
  /// The path the file was opened from.
  public let path: String
  /// The validated header.
  public let header: SafeTensorsHeader
  /// Every tensor name, sorted.
  public let keys: [String]
  let mapping: MemoryMappedFile

  /// The `__metadata__` map (empty if the file has none).
  public var metadata: [String: String] { header.metadata }

  /// Maps and validates the file at `path`. Throws `SafeTensorsError`.
  public init(path: String) throws(SafeTensorsError) {
    self.path = path
    mapping = try MemoryMappedFile(path: path)
    header = try SafeTensorsHeader.parse(file: mapping.bytes, path: path)
    keys = header.entries.map(\.name).sorted()
  }

  /// Maps and validates the file at `url` (a file URL). Throws `SafeTensorsError`.
  public convenience init(url: URL) throws(SafeTensorsError) {
    try self.init(path: url.path)
  }

  public func info(_ key: String) -> TensorInfo? {
    header.entry(key).map { TensorInfo(storedType: $0.elementType.rawValue, shape: $0.shape) }
  }

  /// The F32/F16/BF16 tensor `key` as a zero-copy view of the mapping.
  public func tensor(_ key: String) throws(SafeTensorsError) -> Tensor {
    let entry = try lookup(key)
    guard let dtype = entry.elementType.dtype else {
      throw .notAFloatType(path: path, key: key, dtype: entry.elementType.rawValue)
    }
    let start = mapping.baseAddress + header.dataSectionOffset + entry.dataOffsets.lowerBound
    let storage: TensorStorage
    if Int(bitPattern: start) % dtype.byteSize == 0 {
      storage = TensorStorage(
        borrowing: UnsafeMutableRawPointer(mutating: start), byteCount: entry.byteCount, owner: mapping)
    } else {
      storage = TensorStorage(byteCount: entry.byteCount)
      storage.pointer.copyMemory(from: start, byteCount: entry.byteCount)
    }
    return Tensor(shape: entry.shape, dtype: dtype, storage: storage)
  }

  /// Calls `body` with the stored bytes of `key` (any element type), without copying.
  public func withUnsafeRawBytes<R>(
    _ key: String, _ body: (UnsafeRawBufferPointer) throws -> R
  ) throws -> R {
    let entry = try lookup(key)
    let start = mapping.baseAddress + header.dataSectionOffset + entry.dataOffsets.lowerBound
    return try withExtendedLifetime(mapping) {
      try body(UnsafeRawBufferPointer(start: start, count: entry.byteCount))
    }
  }

  /// A copy of the stored bytes of `key` (any element type), little-endian as in the file.
  public func rawBytes(_ key: String) throws(SafeTensorsError) -> [UInt8] {
    let entry = try lookup(key)
    let offset = header.dataSectionOffset + entry.dataOffsets.lowerBound
    return Array(mapping.bytes[offset..<(offset + entry.byteCount)])
  }

  /// The elements of an integer or BOOL tensor widened to Int64 (row-major). Throws
  /// `.notAnIntegerType` for float types and `.integerOutOfRange` for U64 values above Int64.max.
  public func int64Values(_ key: String) throws(SafeTensorsError) -> [Int64] {
    let entry = try lookup(key)
    let type = entry.elementType
    guard type.isInteger else { throw .notAnIntegerType(path: path, key: key, dtype: type.rawValue) }
    let base = mapping.baseAddress + header.dataSectionOffset + entry.dataOffsets.lowerBound
    let size = type.bitSize / 8
    let count = entry.byteCount / size
    var values = [Int64](repeating: 0, count: count)
    for i in 0..<count {
      let p = base + i * size
      switch type {
      case .bool, .u8: values[i] = Int64(p.load(as: UInt8.self))
      case .i8: values[i] = Int64(p.load(as: Int8.self))
      case .i16: values[i] = Int64(Int16(littleEndian: p.loadUnaligned(as: Int16.self)))
      case .u16: values[i] = Int64(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self)))
      case .i32: values[i] = Int64(Int32(littleEndian: p.loadUnaligned(as: Int32.self)))
      case .u32: values[i] = Int64(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
      case .i64: values[i] = Int64(littleEndian: p.loadUnaligned(as: Int64.self))
      case .u64:
        let v = UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
        guard let exact = Int64(exactly: v) else { throw .integerOutOfRange(path: path, key: key, index: i) }
        values[i] = exact
      default: break
      }
    }
    return values
  }

  private func lookup(_ key: String) throws(SafeTensorsError) -> SafeTensorsHeader.Entry {
    guard let entry = header.entry(key) else { throw .tensorNotFound(path: path, key: key) }
    return entry
  }
}
