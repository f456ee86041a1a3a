/// The validated header of a safetensors file: where every tensor's bytes are and what they hold.
///
/// Layout: an 8-byte little-endian header length `n`, `n` bytes of UTF-8 JSON, then the data
/// section. matches: huggingface/safetensors, Rust `SafeTensors::read_metadata` +
/// `Metadata::validate` (v0.8.0): header length ≤ 100 MB and inside the file; UTF-8 JSON object;
/// `__metadata__` a string→string map (or null); every other key a tensor entry with `dtype`,
/// `shape`, `data_offsets` (extra fields ignored); entries sorted by offsets must tile the data
/// section exactly (no gap, no overlap, last one ending at end of file); each span equals
/// `product(shape) * element size`. All arithmetic is overflow-checked.
/// Stricter than the reference: duplicate keys are an error (serde keeps the last one silently);
/// sizes must fit in `Int` (the reference uses `usize`, the same on 64-bit).
public struct SafeTensorsHeader: Sendable {
  /// One tensor entry. `dataOffsets` are relative to the start of the data section.
  public struct Entry: Sendable, Equatable {
    public let name: String
    public let elementType: SafeTensorsElementType
    public let shape: [Int]
    public let dataOffsets: Range<Int>

    public var byteCount: Int { dataOffsets.count }
  }

  /// The reference implementation's limit on the JSON header length (100 MB).
  public static let maximumHeaderByteCount = 100_000_000

  /// Length of the JSON text `n`, including any padding.
  public let headerByteCount: Int
  /// Byte offset of the data section in the file (`8 + n`).
  public var dataSectionOffset: Int { 8 + headerByteCount }
  /// Size of the data section (the end of the last tensor).
  public let dataByteCount: Int
  /// The `__metadata__` map (empty if absent or null).
  public let metadata: [String: String]
  /// All tensor entries, in data-offset order.
  public let entries: [Entry]
  private let indexByName: [String: Int]

  /// The entry named `name`, or nil.
  public func entry(_ name: String) -> Entry? { indexByName[name].map { entries[$0] } }

  /// Parses and validates the header of the complete file image `file`. `path` only labels errors.
  public static func parse(file: UnsafeRawBufferPointer, path: String) throws(SafeTensorsError)
    -> SafeTensorsHeader
  {
    guard file.count >= 8 else { throw .fileTooSmall(path: path, byteCount: file.count) }
    var n: UInt64 = 0
    for i in (0..<8).reversed() { n = n << 8 | UInt64(file[i]) }
    guard n <= UInt64(maximumHeaderByteCount) else {
      throw .headerTooLarge(path: path, headerByteCount: n, limit: maximumHeaderByteCount)
    }
    let headerLength = Int(n)
    guard headerLength <= file.count - 8 else {
      throw .headerPastEndOfFile(path: path, headerByteCount: n, fileByteCount: file.count)
    }
    let text = UnsafeRawBufferPointer(rebasing: file[8..<(8 + headerLength)])
    if let bad = firstInvalidUTF8Offset(text) { throw .headerNotUTF8(path: path, byteOffset: 8 + bad) }
    let json: JSONValue
    do {
      json = try JSONParser.parse(text)
    } catch {
      throw .invalidJSON(path: path, byteOffset: error.offset, reason: error.message)
    }
    guard case .object(let pairs) = json else { throw .headerNotObject(path: path, found: json.kindName) }

    var metadata: [String: String] = [:]
    var entries: [Entry] = []
    var seen = Set<String>()
    for member in pairs {
      let (key, value) = (member.key, member.value)
      guard seen.insert(key).inserted else { throw .duplicateKey(path: path, key: key) }
      if key == "__metadata__" {
        metadata = try parseMetadata(value, path: path)
      } else {
        entries.append(try parseEntry(key, value, path: path))
      }
    }
    let dataByteCount = try checkLayout(&entries, path: path)
    let available = file.count - 8 - headerLength
    if dataByteCount > available {
      throw .dataTruncated(path: path, declaredByteCount: dataByteCount, availableByteCount: available)
    }
    if dataByteCount < available {
      throw .trailingData(path: path, declaredByteCount: dataByteCount, availableByteCount: available)
    }
    var index: [String: Int] = [:]
    for (i, e) in entries.enumerated() { index[e.name] = i }
    return SafeTensorsHeader(
      headerByteCount: headerLength, dataByteCount: dataByteCount, metadata: metadata,
      entries: entries, indexByName: index)
  }

  private static func parseMetadata(_ value: JSONValue, path: String) throws(SafeTensorsError)
    -> [String: String]
  {
    switch value {
    case .null:
      return [:]
    case .object(let pairs):
      var map: [String: String] = [:]
      for member in pairs {
        let (k, v) = (member.key, member.value)
        guard case .string(let s) = v else {
          throw .invalidMetadata(path: path, reason: "value of \"\(k)\" is \(v.kindName), not a string")
        }
        guard map.updateValue(s, forKey: k) == nil else {
          throw .invalidMetadata(path: path, reason: "key \"\(k)\" appears more than once")
        }
      }
      return map
    default:
      throw .invalidMetadata(path: path, reason: "found \(value.kindName), not an object")
    }
  }

  private static func parseEntry(_ key: String, _ value: JSONValue, path: String)
    throws(SafeTensorsError) -> Entry
  {
    guard case .object(let fields) = value else {
      throw .invalidEntry(path: path, key: key, reason: "expected an object, found \(value.kindName)")
    }
    func field(_ name: String) throws(SafeTensorsError) -> JSONValue {
      let matches = fields.filter { $0.key == name }
      guard let first = matches.first else {
        throw .invalidEntry(path: path, key: key, reason: "missing field \"\(name)\"")
      }
      guard matches.count == 1 else {
        throw .invalidEntry(path: path, key: key, reason: "field \"\(name)\" appears more than once")
      }
      return first.value
    }

    guard case .string(let dtypeName) = try field("dtype") else {
      throw .invalidEntry(path: path, key: key, reason: "field \"dtype\" must be a string")
    }
    guard let type = SafeTensorsElementType(rawValue: dtypeName) else {
      throw .unknownDType(path: path, key: key, dtype: dtypeName)
    }

    guard case .array(let dims) = try field("shape") else {
      throw .invalidEntry(path: path, key: key, reason: "field \"shape\" must be an array")
    }
    let shapeText =
      "[" + dims.map { if case .number(let t) = $0 { t } else { "?" } }.joined(separator: ", ") + "]"
    var shape: [Int] = []
    for (i, d) in dims.enumerated() {
      switch d.nonNegativeInteger {
      case .value(let v): shape.append(v)
      case .negative:
        throw .invalidShape(path: path, key: key, reason: "dimension \(i) is negative in \(shapeText)")
      case .tooLarge: throw .shapeOverflow(path: path, key: key, shape: shapeText)
      case .notAnInteger:
        throw .invalidShape(path: path, key: key, reason: "dimension \(i) is \(d.kindName), not an integer")
      }
    }

    guard case .array(let offsets) = try field("data_offsets"), offsets.count == 2 else {
      throw .invalidEntry(
        path: path, key: key, reason: "field \"data_offsets\" must be an array [start, end]")
    }
    var bounds: [Int] = []
    for (i, o) in offsets.enumerated() {
      let name = i == 0 ? "start" : "end"
      switch o.nonNegativeInteger {
      case .value(let v): bounds.append(v)
      case .negative: throw .offsetsOutOfRange(path: path, key: key, reason: "\(name) is negative")
      case .tooLarge:
        throw .offsetsOutOfRange(path: path, key: key, reason: "\(name) does not fit in 64 bits")
      case .notAnInteger:
        throw .invalidEntry(
          path: path, key: key, reason: "data_offsets \(name) is \(o.kindName), not an integer")
      }
    }
    guard bounds[0] <= bounds[1] else {
      throw .offsetsOutOfRange(path: path, key: key, reason: "end \(bounds[1]) is before start \(bounds[0])")
    }

    guard let bits = bitCount(of: type, shape: shape) else {
      throw .shapeOverflow(path: path, key: key, shape: shapeText)
    }
    guard bits % 8 == 0 else {
      throw .fractionalByteSize(path: path, key: key, dtype: dtypeName, shape: shape)
    }
    let actual = bounds[1] - bounds[0]
    guard bits / 8 == actual else {
      throw .sizeMismatch(
        path: path, key: key, dtype: dtypeName, shape: shape, expectedByteCount: bits / 8,
        actualByteCount: actual)
    }
    return Entry(name: key, elementType: type, shape: shape, dataOffsets: bounds[0]..<bounds[1])
  }

  /// Total bits of a tensor of `type` and `shape`, or nil if that overflows `Int`.
  static func bitCount(of type: SafeTensorsElementType, shape: [Int]) -> Int? {
    var count = 1
    for d in shape {
      let (p, o) = count.multipliedReportingOverflow(by: d)
      if o { return nil }
      count = p
    }
    let (bits, o) = count.multipliedReportingOverflow(by: type.bitSize)
    return o ? nil : bits
  }

  /// Sorts by offsets and checks the entries tile `0..<end` exactly; returns `end`.
  private static func checkLayout(_ entries: inout [Entry], path: String) throws(SafeTensorsError) -> Int {
    entries.sort {
      ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name)
        < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name)
    }
    var end = 0
    var previous: String?
    for e in entries {
      let start = e.dataOffsets.lowerBound
      if start < end, let previous {
        throw .overlappingTensors(
          path: path, key: e.name, previousKey: previous, start: start, previousEnd: end)
      }
      if start > end {
        throw .gapBetweenTensors(
          path: path, key: e.name, previousKey: previous, start: start, expectedStart: end)
      }
      end = e.dataOffsets.upperBound
      previous = e.name
    }
    return end
  }
}
