/// Everything that can go wrong reading or writing a safetensors file. Every case names the file
/// (or `<memory>` for in-memory buffers) and, where one is involved, the tensor key.
///
/// matches: the failure classes of the reference Rust `SafeTensorError`
/// (huggingface/safetensors `safetensors/src/tensor.rs`), split more finely so the message says
/// which field is wrong. Stricter than the reference: duplicate JSON keys are rejected.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable, Sendable {
  // MARK: File access
  /// A system call failed (`operation` is e.g. "open", "mmap", "rename"; `reason` is strerror).
  case io(path: String, operation: String, reason: String)
  /// The path is a directory, FIFO, device or other non-regular file.
  case notARegularFile(path: String)

  // MARK: Framing
  /// Fewer than the 8 bytes of the header-length prefix.
  case fileTooSmall(path: String, byteCount: Int)
  /// The header-length prefix exceeds the 100 MB limit of the reference implementation.
  case headerTooLarge(path: String, headerByteCount: UInt64, limit: Int)
  /// The header-length prefix points past the end of the file.
  case headerPastEndOfFile(path: String, headerByteCount: UInt64, fileByteCount: Int)
  /// The header bytes are not valid UTF-8 (`byteOffset` counts from the start of the file).
  case headerNotUTF8(path: String, byteOffset: Int)
  /// The header is not valid JSON (`byteOffset` counts from the start of the header text).
  case invalidJSON(path: String, byteOffset: Int, reason: String)
  /// The header is valid JSON but not an object.
  case headerNotObject(path: String, found: String)
  /// The same top-level key appears twice in the header.
  case duplicateKey(path: String, key: String)
  /// `__metadata__` is not an object of string values (or null).
  case invalidMetadata(path: String, reason: String)

  // MARK: Tensor entries
  /// A tensor entry is not an object, or a field is missing or has the wrong JSON type.
  case invalidEntry(path: String, key: String, reason: String)
  /// `dtype` names no known element type.
  case unknownDType(path: String, key: String, dtype: String)
  /// A shape dimension is negative or not an integer.
  case invalidShape(path: String, key: String, reason: String)
  /// A dimension, the element count or the byte size does not fit in `Int`.
  case shapeOverflow(path: String, key: String, shape: String)
  /// A sub-byte element type (F4/F6) whose tensor does not fill whole bytes.
  case fractionalByteSize(path: String, key: String, dtype: String, shape: [Int])
  /// A data offset is negative, does not fit in `Int`, or the end precedes the start.
  case offsetsOutOfRange(path: String, key: String, reason: String)
  /// `end - start` of `data_offsets` differs from `product(shape) * element size`.
  case sizeMismatch(
    path: String, key: String, dtype: String, shape: [Int], expectedByteCount: Int,
    actualByteCount: Int)

  // MARK: Data layout
  /// A tensor starts before the previous one (in offset order) ends.
  case overlappingTensors(path: String, key: String, previousKey: String, start: Int, previousEnd: Int)
  /// A tensor starts after the previous one ends (or the first does not start at 0).
  case gapBetweenTensors(path: String, key: String, previousKey: String?, start: Int, expectedStart: Int)
  /// The header declares more data bytes than the file holds (truncated file, or offsets past
  /// the end of the file).
  case dataTruncated(path: String, declaredByteCount: Int, availableByteCount: Int)
  /// The file holds bytes after the last tensor that no tensor covers.
  case trailingData(path: String, declaredByteCount: Int, availableByteCount: Int)

  // MARK: Access
  /// No tensor with this key.
  case tensorNotFound(path: String, key: String)
  /// `tensor(_:)` on a stored type other than F32/F16/BF16.
  case notAFloatType(path: String, key: String, dtype: String)
  /// `int64Values(_:)` on a stored type that is not an integer or BOOL.
  case notAnIntegerType(path: String, key: String, dtype: String)
  /// A U64 element does not fit in Int64.
  case integerOutOfRange(path: String, key: String, index: Int)

  // MARK: Writing
  /// `__metadata__` cannot be a tensor name.
  case reservedTensorName(path: String, key: String)

  public var description: String {
    switch self {
    case .io(let path, let operation, let reason):
      "\(path): \(operation) failed: \(reason)"
    case .notARegularFile(let path):
      "\(path): not a regular file"
    case .fileTooSmall(let path, let count):
      "\(path): file has \(count) bytes, fewer than the 8-byte header length prefix (not a safetensors file or truncated)"
    case .headerTooLarge(let path, let n, let limit):
      "\(path): header length prefix says \(n) bytes, more than the \(limit)-byte limit (corrupt or not a safetensors file)"
    case .headerPastEndOfFile(let path, let n, let size):
      "\(path): header length prefix says \(n) bytes but the file has only \(size) bytes (truncated or corrupt)"
    case .headerNotUTF8(let path, let offset):
      "\(path): header is not valid UTF-8 (bad byte at file offset \(offset))"
    case .invalidJSON(let path, let offset, let reason):
      "\(path): header is not valid JSON at header byte \(offset): \(reason)"
    case .headerNotObject(let path, let found):
      "\(path): header must be a JSON object, found \(found)"
    case .duplicateKey(let path, let key):
      "\(path): header lists key \"\(key)\" more than once"
    case .invalidMetadata(let path, let reason):
      "\(path): \"__metadata__\" must map strings to strings: \(reason)"
    case .invalidEntry(let path, let key, let reason):
      "\(path): tensor \"\(key)\": \(reason)"
    case .unknownDType(let path, let key, let dtype):
      "\(path): tensor \"\(key)\": unknown dtype \"\(dtype)\" (known: \(SafeTensorsElementType.allCases.map(\.rawValue).joined(separator: ", ")))"
    case .invalidShape(let path, let key, let reason):
      "\(path): tensor \"\(key)\": invalid shape: \(reason)"
    case .shapeOverflow(let path, let key, let shape):
      "\(path): tensor \"\(key)\": shape \(shape) overflows when computing its size"
    case .fractionalByteSize(let path, let key, let dtype, let shape):
      "\(path): tensor \"\(key)\": \(dtype) tensor of shape \(shape) does not fill a whole number of bytes"
    case .offsetsOutOfRange(let path, let key, let reason):
      "\(path): tensor \"\(key)\": invalid data_offsets: \(reason)"
    case .sizeMismatch(let path, let key, let dtype, let shape, let expected, let actual):
      "\(path): tensor \"\(key)\": \(dtype) shape \(shape) needs \(expected) bytes but data_offsets span \(actual)"
    case .overlappingTensors(let path, let key, let previous, let start, let previousEnd):
      "\(path): tensor \"\(key)\" starts at data byte \(start), inside \"\(previous)\" which ends at \(previousEnd) (overlapping data_offsets)"
    case .gapBetweenTensors(let path, let key, let previous, let start, let expected):
      if let previous {
        "\(path): tensor \"\(key)\" starts at data byte \(start) but \"\(previous)\" ends at \(expected) (gap in data_offsets)"
      } else {
        "\(path): first tensor \"\(key)\" starts at data byte \(start), expected \(expected) (gap in data_offsets)"
      }
    case .dataTruncated(let path, let declared, let available):
      "\(path): header declares \(declared) data bytes but the file has only \(available) after the header (truncated file or data_offsets out of range)"
    case .trailingData(let path, let declared, let available):
      "\(path): header declares \(declared) data bytes but the file has \(available) after the header (bytes not covered by any tensor)"
    case .tensorNotFound(let path, let key):
      "\(path): no tensor named \"\(key)\""
    case .notAFloatType(let path, let key, let dtype):
      "\(path): tensor \"\(key)\" is stored as \(dtype), not a float type the engine computes with (F32, F16, BF16); read it with rawBytes(_:) or int64Values(_:)"
    case .notAnIntegerType(let path, let key, let dtype):
      "\(path): tensor \"\(key)\" is stored as \(dtype), not an integer or BOOL type"
    case .integerOutOfRange(let path, let key, let index):
      "\(path): tensor \"\(key)\": U64 element \(index) does not fit in Int64"
    case .reservedTensorName(let path, let key):
      "\(path): \"\(key)\" is reserved for metadata and cannot name a tensor"
    }
  }
}
