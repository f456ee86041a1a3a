import Foundation
import TensorCore

/// A PyTorch checkpoint written by `torch.save` (PyTorch ≥ 1.6 zip format: `.bin`, `.pt`, `.pth`,
/// `.ckpt`) opened through a read-only memory mapping and read without executing anything.
///
/// Opening maps the file, reads the zip central directory (`ZipDirectory`), checks the CRC of
/// `<archive>/data.pkl`, runs it through `RestrictedUnpickler` (an allowlist of tensor state-dict
/// globals; anything else throws `forbiddenGlobal` naming it), flattens nested dicts into dotted
/// keys (`StateDictFlattener`) and validates every tensor against its storage record. F32/F16/BF16
/// tensors whose strides are row-major come back from `tensor(_:)` as zero-copy views of the
/// mapping (their `TensorStorage` borrows it and keeps it alive); other strides (a transposed
/// weight, an `expand`ed tensor) are gathered into a new contiguous tensor. Tensors that share a
/// storage view the same bytes. Integer/BOOL/F64/… tensors are listed with their stored type;
/// `tensor(_:)` throws `notAFloatType` for them (read them with `rawBytes(_:)`/`int64Values(_:)`).
/// Non-tensor leaves (epoch, global_step, strings, lists of numbers, numpy scalars …) are in
/// `metadata`.
///
/// matches: `torch.load(path, weights_only=True, mmap=True)` for dense CPU state dicts (torch
/// 2.13: torch/serialization.py `_load`, torch/_weights_only_unpickler.py), with the zip layout of
/// `PyTorchStreamWriter` (`<archive>/data.pkl`, `<archive>/data/<key>`, `<archive>/byteorder`,
/// `<archive>/version`, stored entries, zip64). Differences: numpy scalars and Lightning's
/// `ModelCheckpoint` are accepted as inert data (torch needs `weights_only=False` for them);
/// Python objects never exist, so `metadata` holds plain values.
/// Limitations: pre-1.6 (non-zip) files are refused with `legacyFormat` (convert to safetensors);
/// big-endian checkpoints, compressed or encrypted records, sparse/quantized/nested tensors,
/// tensor subclasses and arbitrary Python objects are refused; the CRC of tensor data is not
/// verified (that would read every byte of a multi-GB file); a file truncated by another
/// process while mapped raises SIGBUS (see `MemoryMappedFile`).
public final class TorchCheckpoint: TensorArchive {
  /// A non-tensor leaf of the checkpoint (a plain Python value, converted).
  ///
  /// matches: the Python values `torch.load` returns for these leaves (int, float, str, bytes,
  /// None, bool, list/tuple/set of those; numpy scalars as their number).
  /// Limitations: ints wider than 64 bits and objects are kept only by a description (`.object`);
  /// tuples and sets become `.list`.
  public enum MetadataValue: Equatable, Sendable, CustomStringConvertible {
    case none
    case bool(Bool)
    case int(Int64)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    /// A list, tuple or set of plain values.
    case list([MetadataValue])
    /// An object kept only by its kind: an allowlisted class or instance ("pytorch_lightning…
    /// ModelCheckpoint"), a storage, an integer wider than 64 bits, a numpy dtype.
    case object(String)

    /// The value if it is an int.
    public var intValue: Int64? {
      if case .int(let v) = self { return v }
      return nil
    }

    /// The value if it is a float or an int.
    public var doubleValue: Double? {
      switch self {
      case .float(let v): v
      case .int(let v): Double(v)
      default: nil
      }
    }

    /// The value if it is a string.
    public var stringValue: String? {
      if case .string(let v) = self { return v }
      return nil
    }

    public var description: String {
      switch self {
      case .none: "None"
      case .bool(let b): b ? "True" : "False"
      case .int(let v): String(v)
      case .float(let v): String(v)
      case .string(let s): "\"\(s)\""
      case .bytes(let b): "bytes(\(b.count))"
      case .list(let l): "[" + l.map(\.description).joined(separator: ", ") + "]"
      case .object(let name): "<\(name)>"
      }
    }
  }

  /// Where a tensor lives inside the checkpoint, as the pickle describes it.
  ///
  /// matches: `Tensor.untyped_storage()` key, `storage_offset()`, `size()`, `stride()` and
  /// `is_contiguous()` of the tensor torch.load would return. Limitations: strides are never
  /// negative (torch has none).
  public struct TensorLayout: Equatable, Sendable {
    /// The storage record key (`<archive>/data/<storageKey>`); equal for tensors sharing storage.
    public var storageKey: String
    /// Element type of the storage as pickled (U8 for `UntypedStorage`).
    public var storageElementType: TorchElementType
    /// Element type of the tensor.
    public var elementType: TorchElementType
    /// Offset of element 0 in the storage, in tensor elements.
    public var storageOffset: Int
    public var shape: [Int]
    /// Strides in elements.
    public var strides: [Int]
    /// True when the strides are row-major (size-1 dimensions ignored, as torch's
    /// `is_contiguous`), so `tensor(_:)` can return a view.
    public var isRowMajor: Bool
  }

  struct Record: Sendable {
    var layout: TensorLayout
    /// File offset of the storage's first byte.
    var dataOffset: Int
    /// Bytes of the storage (elements × storage element size).
    var storageByteCount: Int
  }

  /// What `parse` finds in a checkpoint's bytes.
  struct Parsed {
    var archiveName: String
    var pickleProtocol: Int
    var formatVersion: String?
    var records: [String: Record]
    var metadata: [String: MetadataValue]
  }

  /// The path the file was opened from.
  public let path: String
  /// Every tensor key, sorted.
  public let keys: [String]
  /// Non-tensor leaves by dotted key ("epoch", "global_step", "callbacks.…").
  public let metadata: [String: MetadataValue]
  /// The zip's top folder (torch names it after the file: "ip-adapter-plus_sd15", "archive").
  public let archiveName: String
  /// The pickle protocol of data.pkl (torch.save writes 2 unless told otherwise).
  public let pickleProtocol: Int
  /// The content of the `version` record (torch 2.x writes "3"), if any.
  public let formatVersion: String?
  let mapping: MemoryMappedFile
  let records: [String: Record]

  /// Maps and reads the checkpoint at `path`. Throws `TorchCheckpointError`.
  public init(path: String) throws(TorchCheckpointError) {
    self.path = path
    do {
      mapping = try MemoryMappedFile(path: path)
    } catch {
      switch error {
      case .notARegularFile(let p): throw .notARegularFile(path: p)
      case .io(let p, let operation, let reason): throw .io(path: p, operation: operation, reason: reason)
      default: throw .io(path: path, operation: "open", reason: error.description)
      }
    }
    let parsed = try Self.parse(mapping.bytes, path: path)
    archiveName = parsed.archiveName
    pickleProtocol = parsed.pickleProtocol
    formatVersion = parsed.formatVersion
    records = parsed.records
    metadata = parsed.metadata
    keys = parsed.records.keys.sorted()
  }

  /// Maps and reads the checkpoint at `url` (a file URL).
  public convenience init(url: URL) throws(TorchCheckpointError) {
    try self.init(path: url.path)
  }

  public func info(_ key: String) -> TensorInfo? {
    records[key].map { TensorInfo(storedType: $0.layout.elementType.rawValue, shape: $0.layout.shape) }
  }

  /// Storage, offset and strides of `key`, or nil if there is no such tensor.
  public func layout(_ key: String) -> TensorLayout? { records[key]?.layout }

  /// Largest contiguous copy (bytes) of a tensor that holds more elements than its storage
  /// (stride-0 `expand`ed tensors); larger ones are refused at open with `tensorTooLarge`.
  public static let maxExpandedBytes = 1 << 30

  /// The F32/F16/BF16 tensor `key`: a zero-copy view of the mapping when its strides are
  /// row-major (and its bytes aligned), else a contiguous copy.
  public func tensor(_ key: String) throws(TorchCheckpointError) -> Tensor {
    let record = try lookup(key)
    let layout = record.layout
    guard let dtype = layout.elementType.dtype else {
      throw .notAFloatType(path: path, key: key, dtype: layout.elementType.rawValue)
    }
    let count = layout.shape.reduce(1, *)
    if count == 0 { return Tensor(uninitializedShape: layout.shape, dtype: dtype) }
    let base = mapping.baseAddress + record.dataOffset
    let byteOffset = layout.storageOffset * dtype.byteSize
    if layout.isRowMajor && Int(bitPattern: base + byteOffset) % dtype.byteSize == 0 {
      let storage = TensorStorage(
        borrowing: UnsafeMutableRawPointer(mutating: base), byteCount: record.storageByteCount, owner: mapping)
      return Tensor(shape: layout.shape, dtype: dtype, storage: storage, byteOffset: byteOffset)
    }
    var out = Tensor(uninitializedShape: layout.shape, dtype: dtype)
    out.withUnsafeMutableRawPointer { dst in
      Self.gather(from: base, layout: layout, elementSize: dtype.byteSize, into: dst)
    }
    return out
  }

  /// The elements of `key` (any element type) in row-major order, little-endian as stored.
  public func rawBytes(_ key: String) throws(TorchCheckpointError) -> [UInt8] {
    let record = try lookup(key)
    let size = record.layout.elementType.byteSize
    let count = record.layout.shape.reduce(1, *)
    var out = [UInt8](repeating: 0, count: count * size)
    if count > 0 {
      withExtendedLifetime(mapping) {
        out.withUnsafeMutableBytes { dst in
          Self.gather(
            from: mapping.baseAddress + record.dataOffset, layout: record.layout, elementSize: size,
            into: dst.baseAddress!)
        }
      }
    }
    return out
  }

  /// The elements of an integer or BOOL tensor widened to Int64 (row-major). Throws
  /// `.notAnIntegerType` for other types and `.integerOutOfRange` for U64 values above Int64.max.
  public func int64Values(_ key: String) throws(TorchCheckpointError) -> [Int64] {
    let record = try lookup(key)
    let type = record.layout.elementType
    guard type.isInteger else { throw .notAnIntegerType(path: path, key: key, dtype: type.rawValue) }
    let raw = try rawBytes(key)
    let size = type.byteSize
    var values = [Int64](repeating: 0, count: raw.count / size)
    var outOfRange: Int? = nil
    raw.withUnsafeBytes { p in
      for i in 0..<values.count {
        let o = i * size
        switch type {
        case .bool, .u8: values[i] = Int64(p[o])
        case .i8: values[i] = Int64(Int8(bitPattern: p[o]))
        case .i16: values[i] = Int64(Int16(littleEndian: p.loadUnaligned(fromByteOffset: o, as: Int16.self)))
        case .u16: values[i] = Int64(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self)))
        case .i32: values[i] = Int64(Int32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: Int32.self)))
        case .u32: values[i] = Int64(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)))
        case .i64: values[i] = Int64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: Int64.self))
        case .u64:
          let v = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self))
          if let exact = Int64(exactly: v) { values[i] = exact } else if outOfRange == nil { outOfRange = i }
        default: break
        }
      }
    }
    if let index = outOfRange { throw .integerOutOfRange(path: path, key: key, index: index) }
    return values
  }

  private func lookup(_ key: String) throws(TorchCheckpointError) -> Record {
    guard let record = records[key] else { throw .tensorNotFound(path: path, key: key) }
    return record
  }

  /// Copies the strided elements described by `layout` (offsets validated at open) from the
  /// storage at `base` into `dst`, row-major.
  static func gather(
    from base: UnsafeRawPointer, layout: TensorLayout, elementSize size: Int, into dst: UnsafeMutableRawPointer
  ) {
    let shape = layout.shape
    let strides = layout.strides
    let rank = shape.count
    let start = base + layout.storageOffset * size
    guard rank > 0 else {
      dst.copyMemory(from: start, byteCount: size)
      return
    }
    let inner = shape[rank - 1]
    let innerStride = strides[rank - 1]
    let outer = shape.dropLast().reduce(1, *)
    var index = [Int](repeating: 0, count: rank - 1)
    var out = dst
    for _ in 0..<outer {
      var offset = 0
      for d in 0..<(rank - 1) { offset += index[d] * strides[d] }
      let row = start + offset * size
      if innerStride == 1 {
        out.copyMemory(from: row, byteCount: inner * size)
      } else {
        switch size {
        case 2:
          for j in 0..<inner {
            (out + j * 2).storeBytes(of: (row + j * innerStride * 2).loadUnaligned(as: UInt16.self), as: UInt16.self)
          }
        case 4:
          for j in 0..<inner {
            (out + j * 4).storeBytes(of: (row + j * innerStride * 4).loadUnaligned(as: UInt32.self), as: UInt32.self)
          }
        default:
          for j in 0..<inner { (out + j * size).copyMemory(from: row + j * innerStride * size, byteCount: size) }
        }
      }
      out += inner * size
      var d = rank - 2
      while d >= 0 {
        index[d] += 1
        if index[d] < shape[d] { break }
        index[d] = 0
        d -= 1
      }
    }
  }

  // MARK: Parsing

  /// Reads a whole checkpoint held in `bytes` (the mapping); `path` is used in messages.
  static func parse(_ bytes: UnsafeRawBufferPointer, path: String) throws(TorchCheckpointError) -> Parsed {
    guard bytes.count >= 4, bytes[0] == 0x50, bytes[1] == 0x4B else {
      if let kind = CheckpointFormat.legacyKind(bytes) { throw .legacyFormat(path: path, kind: kind) }
      throw .notAZip(path: path, found: CheckpointFormat.describeLeadingBytes(bytes))
    }
    let zip = try ZipDirectory.read(bytes, path: path)
    guard let first = zip.entries.first, let slash = first.name.firstIndex(of: "/") else {
      throw .missingDataPickle(path: path, expected: "<archive>/data.pkl")
    }
    let archive = String(first.name[..<slash])
    let pickleName = archive + "/data.pkl"
    guard let pickleEntry = zip.entry(pickleName) else {
      throw .missingDataPickle(path: path, expected: pickleName)
    }
    let pickle = try storedBytes(pickleEntry, in: bytes, path: path, verifyCRC: true)

    if let entry = zip.entry(archive + "/byteorder") {
      let order = String(decoding: try storedBytes(entry, in: bytes, path: path, verifyCRC: true), as: UTF8.self)
      guard order == "little" else { throw .unsupportedByteOrder(path: path, byteOrder: order) }
    }
    var formatVersion: String? = nil
    if let entry = zip.entry(archive + "/version") {
      formatVersion = String(decoding: try storedBytes(entry, in: bytes, path: path, verifyCRC: true), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    let unpickler = RestrictedUnpickler(bytes: pickle, path: path)
    defer { unpickler.releaseGraph() }
    let root = try unpickler.load()
    var flattener = StateDictFlattener(path: path, opcodeCount: unpickler.opcodeCount)
    try flattener.visit(root, key: "")

    var records: [String: Record] = [:]
    for (key, reference) in flattener.tensors {
      records[key] = try resolve(key, reference, archive: archive, zip: zip, path: path)
    }
    return Parsed(
      archiveName: archive, pickleProtocol: unpickler.protocolVersion, formatVersion: formatVersion,
      records: records, metadata: flattener.metadata)
  }

  /// The bytes of a stored (uncompressed, unencrypted) record.
  private static func storedBytes(
    _ entry: ZipDirectory.Entry, in bytes: UnsafeRawBufferPointer, path: String, verifyCRC: Bool
  ) throws(TorchCheckpointError) -> UnsafeRawBufferPointer {
    try requireStored(entry, path: path)
    let data = UnsafeRawBufferPointer(rebasing: bytes[entry.dataOffset..<(entry.dataOffset + entry.compressedSize)])
    if verifyCRC {
      let crc = CRC32.checksum(data)
      guard crc == entry.crc32 else {
        throw .checksumMismatch(path: path, entry: entry.name, expected: entry.crc32, actual: crc)
      }
    }
    return data
  }

  private static func requireStored(_ entry: ZipDirectory.Entry, path: String) throws(TorchCheckpointError) {
    if entry.isEncrypted { throw .unsupportedZipEntry(path: path, entry: entry.name, reason: "is encrypted") }
    guard entry.method == 0 else {
      throw .unsupportedZipEntry(path: path, entry: entry.name, reason: "is compressed (method \(entry.method))")
    }
    guard entry.compressedSize == entry.uncompressedSize else {
      throw .corruptZip(path: path, reason: "stored record \"\(entry.name)\" has different compressed and uncompressed sizes")
    }
  }

  /// Checks a tensor against its storage record and computes where its bytes are.
  private static func resolve(
    _ key: String, _ reference: TensorReference, archive: String, zip: ZipDirectory, path: String
  ) throws(TorchCheckpointError) -> Record {
    let storage = reference.storage
    let recordName = archive + "/data/" + storage.key
    guard let entry = zip.entry(recordName) else {
      throw .storageEntryMissing(path: path, key: key, storageKey: storage.key, record: recordName)
    }
    try requireStored(entry, path: path)
    func overflow() -> TorchCheckpointError {
      .invalidTensorGeometry(path: path, key: key, reason: "size arithmetic overflows (corrupt shape, stride or offset)")
    }
    let (storageBytes, o1) = storage.elementCount.multipliedReportingOverflow(by: storage.elementType.byteSize)
    guard !o1 else { throw overflow() }
    guard storageBytes <= entry.compressedSize else {
      throw .storageTooSmall(
        path: path, key: key, storageKey: storage.key, neededBytes: storageBytes, availableBytes: entry.compressedSize)
    }
    let size = reference.elementType.byteSize
    var count = 1
    for d in reference.shape {
      let (c, o) = count.multipliedReportingOverflow(by: d)
      guard !o else { throw overflow() }
      count = c
    }
    if count > 0 {
      var last = reference.storageOffset
      for (d, s) in Swift.zip(reference.shape, reference.strides) {
        let (step, o) = (d - 1).multipliedReportingOverflow(by: s)
        guard !o else { throw overflow() }
        let (sum, o2) = last.addingReportingOverflow(step)
        guard !o2 else { throw overflow() }
        last = sum
      }
      let (elements, o3) = last.addingReportingOverflow(1)
      let (needed, o4) = elements.multipliedReportingOverflow(by: size)
      guard !o3, !o4 else { throw overflow() }
      guard needed <= storageBytes else {
        throw .storageTooSmall(
          path: path, key: key, storageKey: storage.key, neededBytes: needed, availableBytes: storageBytes)
      }
      // A copy of a tensor that repeats elements (stride 0) can be far larger than its storage:
      // bound it, so a hostile shape cannot make `tensor(_:)` allocate without limit.
      let (contiguousBytes, o5) = count.multipliedReportingOverflow(by: size)
      guard !o5 else { throw overflow() }
      if contiguousBytes > storageBytes && contiguousBytes > Self.maxExpandedBytes {
        throw .tensorTooLarge(path: path, key: key, byteCount: contiguousBytes, limit: Self.maxExpandedBytes)
      }
    }
    var expected = 1
    var rowMajor = true
    for d in stride(from: reference.shape.count - 1, through: 0, by: -1) {
      if reference.shape[d] != 1 && reference.strides[d] != expected { rowMajor = false }
      expected = expected &* reference.shape[d]
    }
    if count == 0 { rowMajor = true }
    let layout = TensorLayout(
      storageKey: storage.key, storageElementType: storage.elementType, elementType: reference.elementType,
      storageOffset: reference.storageOffset, shape: reference.shape, strides: reference.strides,
      isRowMajor: rowMajor)
    return Record(layout: layout, dataOffset: entry.dataOffset, storageByteCount: storageBytes)
  }
}
