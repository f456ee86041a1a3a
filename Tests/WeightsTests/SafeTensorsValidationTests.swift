import Foundation
import Testing
import TestSupport

@testable import Weights

/// Malformed files, each built in a temp dir, each rejected with its specific typed error.
@Suite("SafeTensorsFile header validation")
struct SafeTensorsValidationTests {
  let dir: TempDirectory

  init() throws { dir = try TempDirectory() }

  /// The error opening `path` throws (nil, and a recorded issue, if it opens).
  func openError(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) -> SafeTensorsError? {
    do {
      _ = try SafeTensorsFile(path: path)
      Issue.record("\(path) opened but should not have", sourceLocation: sourceLocation)
      return nil
    } catch {
      #expect(error.description.contains(path), "message must name the file", sourceLocation: sourceLocation)
      return error
    }
  }

  /// Builds a file from a header and data, opens it, returns the error.
  func reject(
    _ header: String, data: [UInt8] = [], length: UInt64? = nil, pad: Bool = true,
    sourceLocation: SourceLocation = #_sourceLocation
  ) throws -> (SafeTensorsError?, String) {
    let path = try dir.safetensors(
      "bad-\(UUID().uuidString).safetensors", header: header, data: data, length: length, pad: pad)
    return (openError(path, sourceLocation: sourceLocation), path)
  }

  func entry(_ name: String, _ dtype: String = "F32", _ shape: String, _ offsets: String) -> String {
    #""\#(name)":{"dtype":"\#(dtype)","shape":\#(shape),"data_offsets":\#(offsets)}"#
  }

  @Test("file shorter than the 8-byte length prefix")
  func fileTooSmall() throws {
    for size in [0, 5] {
      let path = try dir.write("tiny\(size)", [UInt8](repeating: 1, count: size))
      #expect(openError(path) == .fileTooSmall(path: path, byteCount: size))
    }
  }

  @Test("data section shorter than the offsets declare (truncated file)")
  func truncatedData() throws {
    let (error, path) = try reject(
      "{" + entry("w", "F32", "[4]", "[0,16]") + "}", data: [UInt8](repeating: 0, count: 10))
    #expect(error == .dataTruncated(path: path, declaredByteCount: 16, availableByteCount: 10))
  }

  @Test("a tensor's end offset far beyond the data section")
  func offsetPastEnd() throws {
    let (error, path) = try reject("{" + entry("w", "U8", "[1000]", "[0,1000]") + "}", data: [1, 2, 3, 4])
    #expect(error == .dataTruncated(path: path, declaredByteCount: 1000, availableByteCount: 4))
  }

  @Test("bytes after the last tensor")
  func trailingBytes() throws {
    let (error, path) = try reject("{" + entry("w", "F32", "[1]", "[0,4]") + "}", data: [0, 0, 0, 0, 9])
    #expect(error == .trailingData(path: path, declaredByteCount: 4, availableByteCount: 5))
  }

  @Test("header length past end of file")
  func headerPastEOF() throws {
    let (error, path) = try reject("{}", length: 1000)
    #expect(error == .headerPastEndOfFile(path: path, headerByteCount: 1000, fileByteCount: 16))
  }

  @Test(
    "huge header lengths are rejected before anything is allocated",
    arguments: [UInt64(1) << 63, UInt64.max, 100_000_001])
  func headerTooLarge(length: UInt64) throws {
    let (error, path) = try reject("{}", length: length)
    #expect(error == .headerTooLarge(path: path, headerByteCount: length, limit: 100_000_000))
  }

  @Test("offsets negative, beyond 64 bits, or reversed")
  func offsetsOutOfRange() throws {
    for offsets in ["[-4,0]", "[0,18446744073709551616]", "[8,4]", "[0,-0]"] {
      let (error, path) = try reject("{" + entry("w", "U8", "[4]", offsets) + "}", data: [0, 0, 0, 0])
      guard case .offsetsOutOfRange(let p, let key, _) = error else {
        Issue.record("\(offsets): \(String(describing: error))")
        continue
      }
      #expect(p == path && key == "w")
    }
  }

  @Test("overlapping offsets")
  func overlap() throws {
    let header = "{" + entry("a", "F32", "[2]", "[0,8]") + "," + entry("b", "F32", "[2]", "[4,12]") + "}"
    let (error, path) = try reject(header, data: [UInt8](repeating: 0, count: 12))
    #expect(error == .overlappingTensors(path: path, key: "b", previousKey: "a", start: 4, previousEnd: 8))
  }

  @Test("gap between tensors, and a first tensor not at 0")
  func gap() throws {
    let header = "{" + entry("b", "F32", "[2]", "[12,20]") + "," + entry("a", "F32", "[2]", "[0,8]") + "}"
    let (error, path) = try reject(header, data: [UInt8](repeating: 0, count: 20))
    #expect(error == .gapBetweenTensors(path: path, key: "b", previousKey: "a", start: 12, expectedStart: 8))
    let (error2, path2) = try reject(
      "{" + entry("a", "F32", "[1]", "[4,8]") + "}", data: [UInt8](repeating: 0, count: 8))
    #expect(error2 == .gapBetweenTensors(path: path2, key: "a", previousKey: nil, start: 4, expectedStart: 0))
  }

  @Test("unknown dtype")
  func unknownDType() throws {
    let (error, path) = try reject(
      "{" + entry("w", "F128", "[1]", "[0,16]") + "}", data: [UInt8](repeating: 0, count: 16))
    #expect(error == .unknownDType(path: path, key: "w", dtype: "F128"))
    #expect(error?.description.contains("F128") == true)
  }

  @Test("shape and data_offsets disagree on the byte size")
  func sizeMismatch() throws {
    let (error, path) = try reject(
      "{" + entry("w", "F32", "[3]", "[0,8]") + "}", data: [UInt8](repeating: 0, count: 8))
    #expect(
      error
        == .sizeMismatch(
          path: path, key: "w", dtype: "F32", shape: [3], expectedByteCount: 12, actualByteCount: 8))
    let (error2, path2) = try reject("{" + entry("w", "BF16", "[2,2]", "[0,4]") + "}", data: [0, 0, 0, 0])
    #expect(
      error2
        == .sizeMismatch(
          path: path2, key: "w", dtype: "BF16", shape: [2, 2], expectedByteCount: 8, actualByteCount: 4))
  }

  @Test("negative and non-integer shapes")
  func invalidShape() throws {
    for shape in ["[-1,2]", "[-0]", "[2.5]", "[4.0]", "[1e2]", "[\"3\"]"] {
      let (error, path) = try reject(
        "{" + entry("w", "F32", shape, "[0,8]") + "}", data: [UInt8](repeating: 0, count: 8))
      guard case .invalidShape(let p, let key, _) = error else {
        Issue.record("\(shape): \(String(describing: error))")
        continue
      }
      #expect(p == path && key == "w")
    }
  }

  @Test("shapes whose size overflows")
  func shapeOverflow() throws {
    for shape in [
      "[4294967296,4294967296]", "[9223372036854775808]", "[2305843009213693952, 2]",
      "[99999999999999999999999]",
    ] {
      let (error, path) = try reject(
        "{" + entry("w", "F32", shape, "[0,8]") + "}", data: [UInt8](repeating: 0, count: 8))
      guard case .shapeOverflow(let p, let key, _) = error else {
        Issue.record("\(shape): \(String(describing: error))")
        continue
      }
      #expect(p == path && key == "w")
    }
  }

  @Test("sub-byte dtypes must fill whole bytes")
  func fractionalBytes() throws {
    let (error, path) = try reject("{" + entry("w", "F4", "[3]", "[0,2]") + "}", data: [0, 0])
    #expect(error == .fractionalByteSize(path: path, key: "w", dtype: "F4", shape: [3]))
  }

  @Test(
    "invalid JSON",
    arguments: [
      #"{"a": "#, #"{"a":1,}"#, #"{} x"#, "", #"{'a':1}"#, "{\"a\u{1}\":1}", #"{"a":"\ud800"}"#, #"{"a":01}"#,
      String(repeating: "[", count: 100_000),
    ])
  func invalidJSON(header: String) throws {
    let (error, path) = try reject(header)
    guard case .invalidJSON(let p, _, _) = error else {
      Issue.record("\(header.prefix(20)): \(String(describing: error))")
      return
    }
    #expect(p == path)
  }

  @Test("header not valid UTF-8")
  func notUTF8() throws {
    var bytes = littleEndian(8) + Array(#"{"é":1}"#.utf8)
    bytes[11] = 0xFF  // second byte of "é": the sequence starting at file offset 10 is invalid
    let path = try dir.write("utf8.safetensors", bytes)
    #expect(openError(path) == .headerNotUTF8(path: path, byteOffset: 10))
  }

  @Test("header is JSON but not an object", arguments: ["[1,2]", #""str""#, "null", "42"])
  func notObject(header: String) throws {
    let (error, path) = try reject(header)
    guard case .headerNotObject(let p, _) = error else {
      Issue.record("\(header): \(String(describing: error))")
      return
    }
    #expect(p == path)
  }

  @Test(
    "__metadata__ not a string→string map",
    arguments: [
      #"{"__metadata__":{"a":1}}"#, #"{"__metadata__":["a"]}"#, #"{"__metadata__":{"a":{"b":"c"}}}"#,
      #"{"__metadata__":"x"}"#,
    ])
  func invalidMetadata(header: String) throws {
    let (error, path) = try reject(header)
    guard case .invalidMetadata(let p, _) = error else {
      Issue.record("\(header): \(String(describing: error))")
      return
    }
    #expect(p == path)
  }

  @Test("null __metadata__ is accepted, as by the reference")
  func nullMetadata() throws {
    let path = try dir.safetensors("null.safetensors", header: #"{"__metadata__":null}"#)
    #expect(try SafeTensorsFile(path: path).metadata.isEmpty)
  }

  @Test("malformed entries name the key and field")
  func invalidEntries() throws {
    let cases: [(String, String)] = [
      (#"{"w":[1]}"#, "an object"),
      (#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, "\"dtype\""),
      (#"{"w":{"dtype":"F32","data_offsets":[0,4]}}"#, "\"shape\""),
      (#"{"w":{"dtype":"F32","shape":[1]}}"#, "\"data_offsets\""),
      (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#, "data_offsets"),
      (#"{"w":{"dtype":3,"shape":[1],"data_offsets":[0,4]}}"#, "\"dtype\""),
      (#"{"w":{"dtype":"F32","shape":1,"data_offsets":[0,4]}}"#, "\"shape\""),
    ]
    for (header, field) in cases {
      let (error, path) = try reject(header, data: [0, 0, 0, 0])
      guard case .invalidEntry(let p, let key, let reason) = error else {
        Issue.record("\(header): \(String(describing: error))")
        continue
      }
      #expect(p == path && key == "w")
      #expect(reason.contains(field), "\(reason)")
    }
  }

  @Test("duplicate keys are rejected")
  func duplicates() throws {
    let e = entry("w", "F32", "[1]", "[0,4]")
    let (error, path) = try reject("{" + e + "," + e + "}", data: [0, 0, 0, 0])
    #expect(error == .duplicateKey(path: path, key: "w"))
  }

  @Test("unknown extra fields in an entry are ignored, as by the reference")
  func extraFields() throws {
    let header = #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"note":{"x":[1]}}}"#
    let path = try dir.safetensors(
      "extra.safetensors", header: header, data: littleEndian(0x4020_0000)[0..<4].map { $0 })
    #expect(try SafeTensorsFile(path: path).tensor("w").scalars() == [2.5])
  }

  @Test("missing files, directories and FIFOs give io / notARegularFile errors (no hang)")
  func fileSystemErrors() throws {
    let missing = dir.path("missing.safetensors")
    guard case .io(let p, let op, _) = openError(missing) else {
      Issue.record("expected .io")
      return
    }
    #expect(p == missing && op == "open")
    #expect(openError(dir.url.path) == .notARegularFile(path: dir.url.path))
    let fifo = dir.path("pipe.safetensors")
    #expect(mkfifo(fifo, 0o600) == 0)
    #expect(openError(fifo) == .notARegularFile(path: fifo))
  }

  @Test("no crash on any truncation or byte corruption of a valid file (seeded, reproducible)", arguments: [1, 2, 3] as [UInt64])
  func fuzz(seed: UInt64) throws {
    let golden = try Fixtures.bytes("mixed.safetensors")
    func check(_ bytes: [UInt8]) {
      _ = bytes.withUnsafeBytes { try? SafeTensorsHeader.parse(file: $0, path: "<fuzz>") }
    }
    for n in 0...golden.count { check(Array(golden.prefix(n))) }
    var rng = SeededGenerator(seed: seed)
    for _ in 0..<3000 {
      var b = golden
      for _ in 0..<Int.random(in: 1...4, using: &rng) {
        let i = Int.random(in: 0..<min(b.count, 8 + 300), using: &rng)
        b[i] = UInt8.random(in: 0...255, using: &rng)
      }
      check(b)
    }
    // Hostile lengths and random garbage.
    for _ in 0..<500 {
      check((0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }
  }
}
