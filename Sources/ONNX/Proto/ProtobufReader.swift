/// A bounds-checked reader of the protocol-buffers wire format over a byte buffer.
///
/// Only what the ONNX messages need: varints, 32/64-bit fixed values, length-delimited fields
/// (sub-messages, strings, bytes, packed repeated scalars), and skipping of anything else. Every
/// length and tag is checked against the bytes that remain; a malformed buffer throws
/// `ProtobufError` — it never reads outside the buffer, loops forever or allocates from a length
/// it has not checked. Groups (wire types 3/4, deprecated) are refused.
///
/// matches: the protobuf encoding spec (https://protobuf.dev/programming-guides/encoding/).
struct ProtobufReader {
  enum WireType: UInt8 {
    case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5
  }

  /// One field: its number, wire type, and for length-delimited fields the byte range.
  struct Field {
    let number: Int
    let wireType: WireType
    /// Varint or fixed value (for the scalar wire types).
    let value: UInt64
    /// Range inside the reader's buffer (length-delimited only).
    let range: Range<Int>
  }

  let bytes: UnsafeRawBufferPointer
  /// Absolute offset of the next byte to read.
  private(set) var position: Int
  let end: Int

  init(_ bytes: UnsafeRawBufferPointer, range: Range<Int>? = nil) {
    self.bytes = bytes
    let r = range ?? 0..<bytes.count
    precondition(r.lowerBound >= 0 && r.upperBound <= bytes.count)
    self.position = r.lowerBound
    self.end = r.upperBound
  }

  var isAtEnd: Bool { position >= end }

  mutating func readVarint() throws(ProtobufError) -> UInt64 {
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      guard position < end else { throw .truncated(at: position) }
      let byte = bytes[position]
      position += 1
      if shift == 63 && byte > 1 { throw .malformedVarint(at: position - 1) }
      result |= UInt64(byte & 0x7f) << shift
      if byte & 0x80 == 0 { return result }
      shift += 7
      if shift > 63 { throw .malformedVarint(at: position - 1) }
    }
  }

  private mutating func readFixed(_ size: Int) throws(ProtobufError) -> UInt64 {
    guard end - position >= size else { throw .truncated(at: position) }
    var v: UInt64 = 0
    for i in 0..<size { v |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
    position += size
    return v
  }

  /// The next field, or nil at the end of the message.
  mutating func nextField() throws(ProtobufError) -> Field? {
    guard !isAtEnd else { return nil }
    let start = position
    let key = try readVarint()
    let number = key >> 3
    guard number >= 1, number <= 536_870_911 else { throw .invalidFieldNumber(at: start) }
    guard let wireType = WireType(rawValue: UInt8(key & 7)) else {
      throw .unsupportedWireType(Int(key & 7), at: start)
    }
    switch wireType {
    case .varint:
      return Field(number: Int(number), wireType: wireType, value: try readVarint(), range: 0..<0)
    case .fixed64:
      return Field(number: Int(number), wireType: wireType, value: try readFixed(8), range: 0..<0)
    case .fixed32:
      return Field(number: Int(number), wireType: wireType, value: try readFixed(4), range: 0..<0)
    case .lengthDelimited:
      let length = try readVarint()
      guard length <= UInt64(end - position) else { throw .truncated(at: position) }
      let range = position..<(position + Int(length))
      position = range.upperBound
      return Field(number: Int(number), wireType: wireType, value: 0, range: range)
    }
  }

  /// A reader over a length-delimited field's bytes.
  func subReader(_ field: Field) -> ProtobufReader { ProtobufReader(bytes, range: field.range) }

  /// The field's bytes as UTF-8 text (invalid sequences are repaired, never trusted as paths).
  func string(_ field: Field) -> String {
    String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.range]), as: UTF8.self)
  }

  /// Integers of a repeated int field, packed or not (appends to `values`).
  /// `limit` bounds how many values one field may add.
  func appendInts(_ field: Field, to values: inout [Int64], limit: Int) throws(ProtobufError) {
    switch field.wireType {
    case .varint:
      guard values.count < limit else { throw .tooManyValues(limit: limit) }
      values.append(Int64(bitPattern: field.value))
    case .lengthDelimited:
      var sub = subReader(field)
      while !sub.isAtEnd {
        guard values.count < limit else { throw .tooManyValues(limit: limit) }
        values.append(Int64(bitPattern: try sub.readVarint()))
      }
    default:
      throw .unexpectedWireType(field: field.number)
    }
  }

  /// Floats of a repeated float field, packed or not.
  func appendFloats(_ field: Field, to values: inout [Float], limit: Int) throws(ProtobufError) {
    switch field.wireType {
    case .fixed32:
      guard values.count < limit else { throw .tooManyValues(limit: limit) }
      values.append(Float(bitPattern: UInt32(truncatingIfNeeded: field.value)))
    case .lengthDelimited:
      let n = field.range.count
      guard n % 4 == 0 else { throw .truncated(at: field.range.upperBound) }
      guard values.count + n / 4 <= limit else { throw .tooManyValues(limit: limit) }
      values.reserveCapacity(values.count + n / 4)
      var p = field.range.lowerBound
      while p < field.range.upperBound {
        var bits: UInt32 = 0
        for i in 0..<4 { bits |= UInt32(bytes[p + i]) << (8 * UInt32(i)) }
        values.append(Float(bitPattern: bits))
        p += 4
      }
    default:
      throw .unexpectedWireType(field: field.number)
    }
  }

  /// Doubles of a repeated double field, packed or not.
  func appendDoubles(_ field: Field, to values: inout [Double], limit: Int) throws(ProtobufError) {
    switch field.wireType {
    case .fixed64:
      guard values.count < limit else { throw .tooManyValues(limit: limit) }
      values.append(Double(bitPattern: field.value))
    case .lengthDelimited:
      let n = field.range.count
      guard n % 8 == 0 else { throw .truncated(at: field.range.upperBound) }
      guard values.count + n / 8 <= limit else { throw .tooManyValues(limit: limit) }
      var p = field.range.lowerBound
      while p < field.range.upperBound {
        var bits: UInt64 = 0
        for i in 0..<8 { bits |= UInt64(bytes[p + i]) << (8 * UInt64(i)) }
        values.append(Double(bitPattern: bits))
        p += 8
      }
    default:
      throw .unexpectedWireType(field: field.number)
    }
  }
}

/// A protocol-buffers message that does not follow the wire format.
public enum ProtobufError: Error, Equatable, CustomStringConvertible {
  case truncated(at: Int)
  case malformedVarint(at: Int)
  case invalidFieldNumber(at: Int)
  case unsupportedWireType(Int, at: Int)
  case unexpectedWireType(field: Int)
  case tooManyValues(limit: Int)

  public var description: String {
    switch self {
    case .truncated(let at): "the data ends inside a field (byte \(at)): the file is truncated or not protobuf"
    case .malformedVarint(let at): "malformed varint at byte \(at)"
    case .invalidFieldNumber(let at): "invalid field number at byte \(at)"
    case .unsupportedWireType(let t, let at): "wire type \(t) at byte \(at) is not supported (groups or garbage)"
    case .unexpectedWireType(let field): "field \(field) has the wrong wire type"
    case .tooManyValues(let limit): "a repeated field holds more than \(limit) values"
    }
  }
}
