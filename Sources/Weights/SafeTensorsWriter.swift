import Foundation
import TensorCore

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Builds a `.safetensors` file from named tensors, byte-identical to Python
/// `safetensors.torch.save_file` / `save` (safetensors 0.8.0) for the same tensors and metadata.
///
/// matches: Rust `safetensors::tensor::prepare` + `serialize_to_file`: tensors ordered by
/// descending dtype rank (`SafeTensorsElementType.writeRank`, e.g. I64 > F32 > BF16 > F16), then by
/// name compared as UTF-8 bytes; `data_offsets` contiguous from 0; header is compact JSON
/// (`__metadata__` first when given, then `{"dtype":…,"shape":[…],"data_offsets":[s,e]}` per
/// tensor) padded with spaces to a multiple of 8 bytes; 8-byte little-endian length prefix.
/// Files are written atomically: a hidden temp file in the destination directory, fsync, rename.
/// Known difference: the reference emits metadata keys in Rust `HashMap` order, which is random
/// per process; this writer sorts them by UTF-8 bytes, so files with two or more metadata keys can
/// differ from a Python-written one in key order only (the reference itself is not reproducible).
public struct SafeTensorsWriter: Sendable {
  private enum Payload: Sendable {
    case tensor(Tensor)
    case bytes([UInt8])
  }

  private struct Item: Sendable {
    var type: SafeTensorsElementType
    var shape: [Int]
    var payload: Payload
  }

  /// Written as `__metadata__` when non-nil (an empty map is written as `{}`, like the reference).
  public var metadata: [String: String]?
  private var items: [String: Item] = [:]

  /// An empty writer.
  public init(metadata: [String: String]? = nil) {
    self.metadata = metadata
  }

  /// A writer holding `tensors` (no copies are made; the tensors are read when writing).
  public init(_ tensors: [String: Tensor], metadata: [String: String]? = nil) {
    self.metadata = metadata
    for (name, tensor) in tensors { add(name, tensor) }
  }

  /// The names added so far, sorted.
  public var names: [String] { items.keys.sorted() }

  /// Adds (or replaces) an F32/F16/BF16 tensor.
  public mutating func add(_ name: String, _ tensor: Tensor) {
    items[name] = Item(
      type: SafeTensorsElementType(tensor.dtype), shape: tensor.shape, payload: .tensor(tensor))
  }

  /// Adds (or replaces) a tensor of any stored type from its little-endian bytes (e.g. I64
  /// `position_ids`). The byte count is checked against the shape when writing.
  public mutating func addRaw(
    _ name: String, elementType: SafeTensorsElementType, shape: [Int], bytes: [UInt8]
  ) {
    items[name] = Item(type: elementType, shape: shape, payload: .bytes(bytes))
  }

  /// The complete file image.
  public func serialized() throws(SafeTensorsError) -> [UInt8] {
    let (header, ordered) = try prepare(path: "<memory>")
    var out = header
    for (_, item) in ordered {
      switch item.payload {
      case .bytes(let b): out += b
      case .tensor(let t): out += UnsafeRawBufferPointer(start: t.rawPointer, count: t.byteCount)
      }
    }
    return out
  }

  /// Writes the file atomically to `path` (replacing any existing file; existing mappings of the
  /// old file stay valid). On failure the temp file is removed and `path` is left untouched.
  public func write(to path: String) throws(SafeTensorsError) {
    let (header, ordered) = try prepare(path: path)
    let url = URL(fileURLWithPath: path)
    let directory = url.deletingLastPathComponent().path
    let temp =
      directory + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw Self.ioError(path, "create temporary file \(temp)") }
    var closed = false
    do throws(SafeTensorsError) {
      try Self.writeAll(fd, header, path: path)
      for (_, item) in ordered {
        switch item.payload {
        case .bytes(let b):
          try Self.writeAll(fd, b, path: path)
        case .tensor(let t):
          try Self.writeAll(fd, UnsafeRawBufferPointer(start: t.rawPointer, count: t.byteCount), path: path)
        }
      }
      guard fsync(fd) == 0 else { throw Self.ioError(path, "fsync \(temp)") }
      closed = true
      guard close(fd) == 0 else { throw Self.ioError(path, "close \(temp)") }
      guard rename(temp, path) == 0 else { throw Self.ioError(path, "rename \(temp) to \(path)") }
    } catch {
      if !closed { close(fd) }
      unlink(temp)
      throw error
    }
  }

  /// Writes the file atomically to the file URL `url`.
  public func write(to url: URL) throws(SafeTensorsError) {
    try write(to: url.path)
  }

  /// Convenience: writes `tensors` (and optional metadata) to `path` atomically.
  public static func write(
    _ tensors: [String: Tensor], metadata: [String: String]? = nil, to path: String
  ) throws(SafeTensorsError) {
    try SafeTensorsWriter(tensors, metadata: metadata).write(to: path)
  }

  // MARK: - Layout

  /// Length prefix + padded header, and the items in file order.
  private func prepare(path: String) throws(SafeTensorsError) -> ([UInt8], [(String, Item)]) {
    let ordered = items.sorted { a, b in
      if a.value.type.writeRank != b.value.type.writeRank {
        return a.value.type.writeRank > b.value.type.writeRank
      }
      return a.key.utf8.lexicographicallyPrecedes(b.key.utf8)
    }
    var parts: [String] = []
    if let metadata {
      let pairs = metadata.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        .map { JSONText.quoted($0.key) + ":" + JSONText.quoted($0.value) }
      parts.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
    }
    var offset = 0
    for (name, item) in ordered {
      if name == "__metadata__" { throw .reservedTensorName(path: path, key: name) }
      let size = try Self.byteCount(name, item, path: path)
      let shape = item.shape.map(String.init).joined(separator: ",")
      parts.append(
        JSONText.quoted(name) + ":{\"dtype\":\"\(item.type.rawValue)\",\"shape\":[\(shape)],"
          + "\"data_offsets\":[\(offset),\(offset + size)]}")
      offset += size
    }
    var json = Array(("{" + parts.joined(separator: ",") + "}").utf8)
    let padded = (json.count + 7) / 8 * 8
    guard padded <= SafeTensorsHeader.maximumHeaderByteCount else {
      throw .headerTooLarge(
        path: path, headerByteCount: UInt64(padded), limit: SafeTensorsHeader.maximumHeaderByteCount)
    }
    json += [UInt8](repeating: 0x20, count: padded - json.count)
    var out: [UInt8] = []
    out.reserveCapacity(8 + padded)
    for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: UInt64(padded) >> (8 * UInt64(i)))) }
    return (out + json, ordered)
  }

  /// Data size of one item, validating raw payloads against their shape.
  private static func byteCount(_ name: String, _ item: Item, path: String) throws(SafeTensorsError) -> Int {
    let shapeText = "\(item.shape)"
    if let negative = item.shape.firstIndex(where: { $0 < 0 }) {
      throw .invalidShape(path: path, key: name, reason: "dimension \(negative) is negative in \(shapeText)")
    }
    guard let bits = SafeTensorsHeader.bitCount(of: item.type, shape: item.shape) else {
      throw .shapeOverflow(path: path, key: name, shape: shapeText)
    }
    guard bits % 8 == 0 else {
      throw .fractionalByteSize(path: path, key: name, dtype: item.type.rawValue, shape: item.shape)
    }
    let actual: Int
    switch item.payload {
    case .bytes(let b): actual = b.count
    case .tensor(let t): actual = t.byteCount
    }
    guard actual == bits / 8 else {
      throw .sizeMismatch(
        path: path, key: name, dtype: item.type.rawValue, shape: item.shape, expectedByteCount: bits / 8,
        actualByteCount: actual)
    }
    return actual
  }

  private static func writeAll(_ fd: Int32, _ array: [UInt8], path: String) throws(SafeTensorsError) {
    var failure: SafeTensorsError?
    array.withUnsafeBytes { buffer in
      do throws(SafeTensorsError) { try writeAll(fd, buffer, path: path) } catch { failure = error }
    }
    if let failure { throw failure }
  }

  private static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String)
    throws(SafeTensorsError)
  {
    var done = 0
    while done < buffer.count {
      let n = posixWrite(fd, buffer.baseAddress! + done, min(buffer.count - done, 1 << 30))
      if n < 0 {
        if errno == EINTR { continue }
        throw ioError(path, "write")
      }
      done += n
    }
  }

  private static func ioError(_ path: String, _ operation: String) -> SafeTensorsError {
    MemoryMappedFile.ioError(path, operation)
  }
}

/// `write(2)`, named so it does not clash with `SafeTensorsWriter.write(to:)`.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
  #if canImport(Glibc)
  Glibc.write(fd, buffer, count)
  #else
  Darwin.write(fd, buffer, count)
  #endif
}
