/// A parsed JSON value. Numbers keep their source text so integers are never rounded through
/// Double; objects keep their pairs in file order so duplicate keys can be detected.
indirect enum JSONValue {
  case object([JSONMember])
  case array([JSONValue])
  case string(String)
  case number(String)
  case bool(Bool)
  case null

  /// The JSON type name, for error messages.
  var kindName: String {
    switch self {
    case .object: "an object"
    case .array: "an array"
    case .string: "a string"
    case .number(let text): "the number \(text)"
    case .bool(let b): "\(b)"
    case .null: "null"
    }
  }
}

/// One `"key": value` pair of a JSON object.
struct JSONMember {
  var key: String
  var value: JSONValue
}

/// Where and why JSON text is malformed.
struct JSONSyntaxError: Error {
  var offset: Int
  var message: String
}

/// A strict RFC 8259 parser over UTF-8 bytes (already validated as UTF-8 by the caller), as
/// strict as serde_json: no trailing commas, no comments, no control characters in strings, no
/// lone surrogates, only whitespace after the value. Nesting depth is capped (serde_json's 128)
/// so hostile input cannot exhaust the stack.
struct JSONParser {
  static let maximumDepth = 128
  private let bytes: UnsafeRawBufferPointer
  private var position = 0
  private var depth = 0

  private init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

  static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONSyntaxError) -> JSONValue {
    var parser = JSONParser(bytes)
    parser.skipWhitespace()
    let value = try parser.parseValue()
    parser.skipWhitespace()
    guard parser.position == bytes.count else { throw parser.fail("trailing characters after the value") }
    return value
  }

  private func fail(_ message: String) -> JSONSyntaxError {
    JSONSyntaxError(offset: position, message: message)
  }

  private var current: UInt8? { position < bytes.count ? bytes[position] : nil }

  private mutating func skipWhitespace() {
    while let c = current, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { position += 1 }
  }

  private mutating func expect(_ c: UInt8) throws(JSONSyntaxError) {
    guard current == c else {
      throw fail(current == nil ? "unexpected end of input" : "expected '\(Character(Unicode.Scalar(c)))'")
    }
    position += 1
  }

  private mutating func parseValue() throws(JSONSyntaxError) -> JSONValue {
    guard let c = current else { throw fail("unexpected end of input") }
    switch c {
    case UInt8(ascii: "{"): return try parseObject()
    case UInt8(ascii: "["): return try parseArray()
    case UInt8(ascii: "\""): return .string(try parseString())
    case UInt8(ascii: "t"):
      try parseLiteral("true")
      return .bool(true)
    case UInt8(ascii: "f"):
      try parseLiteral("false")
      return .bool(false)
    case UInt8(ascii: "n"):
      try parseLiteral("null")
      return .null
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
    default: throw fail("unexpected character")
    }
  }

  private mutating func enter() throws(JSONSyntaxError) {
    depth += 1
    guard depth <= Self.maximumDepth else { throw fail("nesting deeper than \(Self.maximumDepth) levels") }
  }

  private mutating func parseObject() throws(JSONSyntaxError) -> JSONValue {
    try enter()
    position += 1
    var pairs: [JSONMember] = []
    skipWhitespace()
    if current == UInt8(ascii: "}") {
      position += 1
      depth -= 1
      return .object(pairs)
    }
    while true {
      skipWhitespace()
      guard current == UInt8(ascii: "\"") else { throw fail("expected a string key") }
      let key = try parseString()
      skipWhitespace()
      try expect(UInt8(ascii: ":"))
      skipWhitespace()
      pairs.append(JSONMember(key: key, value: try parseValue()))
      skipWhitespace()
      if current == UInt8(ascii: ",") {
        position += 1
        continue
      }
      try expect(UInt8(ascii: "}"))
      depth -= 1
      return .object(pairs)
    }
  }

  private mutating func parseArray() throws(JSONSyntaxError) -> JSONValue {
    try enter()
    position += 1
    var items: [JSONValue] = []
    skipWhitespace()
    if current == UInt8(ascii: "]") {
      position += 1
      depth -= 1
      return .array(items)
    }
    while true {
      skipWhitespace()
      items.append(try parseValue())
      skipWhitespace()
      if current == UInt8(ascii: ",") {
        position += 1
        continue
      }
      try expect(UInt8(ascii: "]"))
      depth -= 1
      return .array(items)
    }
  }

  private mutating func parseLiteral(_ word: StaticString) throws(JSONSyntaxError) {
    let count = word.utf8CodeUnitCount
    guard bytes.count - position >= count else { throw fail("invalid literal") }
    for i in 0..<count where bytes[position + i] != word.utf8Start[i] { throw fail("invalid literal") }
    position += count
  }

  /// Validates the JSON number grammar and returns the number's text.
  private mutating func parseNumber() throws(JSONSyntaxError) -> String {
    let start = position
    func isDigit(_ c: UInt8?) -> Bool { c.map { $0 >= 0x30 && $0 <= 0x39 } ?? false }
    if current == UInt8(ascii: "-") { position += 1 }
    if current == UInt8(ascii: "0") {
      position += 1
      if isDigit(current) { throw fail("leading zero in number") }
    } else {
      guard isDigit(current) else { throw fail("invalid number") }
      while isDigit(current) { position += 1 }
    }
    if current == UInt8(ascii: ".") {
      position += 1
      guard isDigit(current) else { throw fail("invalid number: digit expected after '.'") }
      while isDigit(current) { position += 1 }
    }
    if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
      position += 1
      if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
      guard isDigit(current) else { throw fail("invalid number: digit expected in exponent") }
      while isDigit(current) { position += 1 }
    }
    return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
  }

  private mutating func parseString() throws(JSONSyntaxError) -> String {
    position += 1  // opening quote
    var out: [UInt8] = []
    while true {
      guard let c = current else { throw fail("unterminated string") }
      switch c {
      case UInt8(ascii: "\""):
        position += 1
        return String(decoding: out, as: UTF8.self)
      case UInt8(ascii: "\\"):
        position += 1
        try parseEscape(into: &out)
      case 0x00..<0x20:
        throw fail("control character in string")
      default:
        out.append(c)
        position += 1
      }
    }
  }

  private mutating func parseEscape(into out: inout [UInt8]) throws(JSONSyntaxError) {
    guard let c = current else { throw fail("unterminated escape") }
    position += 1
    switch c {
    case UInt8(ascii: "\""): out.append(0x22)
    case UInt8(ascii: "\\"): out.append(0x5C)
    case UInt8(ascii: "/"): out.append(0x2F)
    case UInt8(ascii: "b"): out.append(0x08)
    case UInt8(ascii: "f"): out.append(0x0C)
    case UInt8(ascii: "n"): out.append(0x0A)
    case UInt8(ascii: "r"): out.append(0x0D)
    case UInt8(ascii: "t"): out.append(0x09)
    case UInt8(ascii: "u"):
      var code = try parseHex4()
      if (0xD800..<0xDC00).contains(code) {
        guard current == UInt8(ascii: "\\") else { throw fail("lone leading surrogate in \\u escape") }
        position += 1
        guard current == UInt8(ascii: "u") else { throw fail("lone leading surrogate in \\u escape") }
        position += 1
        let low = try parseHex4()
        guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid trailing surrogate in \\u escape") }
        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
      } else if (0xDC00..<0xE000).contains(code) {
        throw fail("lone trailing surrogate in \\u escape")
      }
      guard let scalar = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
      out.append(contentsOf: Array(String(Character(scalar)).utf8))
    default:
      throw fail("invalid escape character")
    }
  }

  private mutating func parseHex4() throws(JSONSyntaxError) -> UInt32 {
    var value: UInt32 = 0
    for _ in 0..<4 {
      guard let c = current else { throw fail("unterminated \\u escape") }
      let digit: UInt8
      switch c {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
      default: throw fail("invalid hex digit in \\u escape")
      }
      value = value << 4 | UInt32(digit)
      position += 1
    }
    return value
  }
}

/// The result of reading a JSON number as a non-negative `Int`.
enum JSONInteger: Equatable {
  case value(Int)
  case negative
  case tooLarge
  case notAnInteger
}

extension JSONValue {
  /// Interprets the value as a JSON integer without fraction or exponent (serde's `usize` rule).
  var nonNegativeInteger: JSONInteger {
    guard case .number(let text) = self else { return .notAnInteger }
    var digits = Substring(text)
    let negative = digits.first == "-"
    if negative { digits = digits.dropFirst() }
    guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else {
      return .notAnInteger
    }
    if negative { return .negative }  // serde reads even "-0" as a float, never a usize
    var value = 0
    for d in digits.utf8 {
      let (m, o1) = value.multipliedReportingOverflow(by: 10)
      let (s, o2) = m.addingReportingOverflow(Int(d - 0x30))
      if o1 || o2 { return .tooLarge }
      value = s
    }
    return .value(value)
  }
}

/// JSON text exactly as serde_json's compact serializer writes it (the reference writer).
enum JSONText {
  /// A quoted string: `"` `\` and control characters escaped (\b \f \n \r \t, else \u00xx in
  /// lowercase hex); everything else, including `/`, DEL and non-ASCII, verbatim UTF-8.
  static func quoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\u{08}": out += "\\b"
      case "\u{0C}": out += "\\f"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case "\u{00}"..."\u{1F}":
        let hex = String(scalar.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}

/// Finds the first invalid UTF-8 sequence; nil when all bytes are valid.
func firstInvalidUTF8Offset(_ bytes: UnsafeRawBufferPointer) -> Int? {
  var parser = Unicode.UTF8.ForwardParser()
  var iterator = bytes.makeIterator()
  var offset = 0
  while true {
    switch parser.parseScalar(from: &iterator) {
    case .valid(let encoded): offset += encoded.count
    case .emptyInput: return nil
    case .error: return offset
    }
  }
}
