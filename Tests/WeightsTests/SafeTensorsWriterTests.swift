import Foundation
import TensorCore
import Testing

@testable import Weights

@Suite("SafeTensorsWriter")
struct SafeTensorsWriterTests {
  /// A writer holding the fixture's tensors, built from expected.json only (not from the reader).
  static func writer(for name: String) throws -> SafeTensorsWriter {
    let exp = try #require(try Fixtures.expected()[name])
    var writer = SafeTensorsWriter(metadata: exp.metadata)
    for (key, e) in exp.tensors {
      if let dtype = DType(rawValue: e.dtype) {
        writer.add(key, makeTensor(dtype, e.shape, bytes: e.rawBytes))
      } else {
        writer.addRaw(
          key, elementType: try #require(SafeTensorsElementType(rawValue: e.dtype)), shape: e.shape,
          bytes: e.rawBytes)
      }
    }
    return writer
  }

  @Test("output is byte-identical to Python safetensors for every fixture", arguments: Fixtures.fileNames)
  func byteIdentical(name: String) throws {
    let golden = try Fixtures.bytes(name)
    let writer = try Self.writer(for: name)
    #expect(try writer.serialized() == golden)
    let dir = try TempDirectory()
    try writer.write(to: dir.path(name))
    #expect(try Fixtures.bytes(name) == golden)
    #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.path(name)))) == golden)
  }

  @Test("tensors read from a Python file write back byte-identically")
  func readThenWrite() throws {
    let file = try SafeTensorsFile(path: Fixtures.path("mixed.safetensors"))
    var writer = SafeTensorsWriter(metadata: file.metadata)
    for key in file.keys {
      let info = try #require(file.info(key))
      if info.dtype != nil {
        writer.add(key, try file.tensor(key))
      } else {
        writer.addRaw(key, elementType: .i64, shape: info.shape, bytes: try file.rawBytes(key))
      }
    }
    #expect(try writer.serialized() == Fixtures.bytes("mixed.safetensors"))
  }

  @Test("round trip write → read keeps names, shapes, dtypes, bytes and metadata")
  func roundTrip() throws {
    let dir = try TempDirectory()
    let a = try Tensor(shape: [3, 4], floats: (0..<12).map { Float($0) * 0.37 - 2 })
    let tensors: [String: Tensor] = [
      "down.0.weight": a,
      "down.0.half": a.converted(to: .float16),
      "up.bf": a.converted(to: .bfloat16).reshaped([2, 6]),
      "scalar": try Tensor(shape: [], floats: [3]),
      "nothing": Tensor.zeros([2, 0]),
    ]
    let metadata = ["format": "pt", "b": "é\"\\\n\u{1}/", "a": ""]
    let path = dir.path("round.safetensors")
    try SafeTensorsWriter.write(tensors, metadata: metadata, to: path)
    let file = try SafeTensorsFile(path: path)
    #expect(file.keys == tensors.keys.sorted())
    #expect(file.metadata == metadata)
    for (key, t) in tensors {
      let back = try file.tensor(key)
      #expect(back.dtype == t.dtype && back.shape == t.shape, "\(key)")
      #expect(bytesOf(back) == bytesOf(t), "\(key)")
    }
    #expect(try dir.contents() == ["round.safetensors"])  // no temp file left behind
  }

  @Test("metadata keys are written sorted; nil metadata is omitted, empty metadata is {}")
  func metadataFormatting() throws {
    func header(_ w: SafeTensorsWriter) throws -> String {
      let bytes = try w.serialized()
      return String(decoding: bytes[8...], as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }
    #expect(
      try header(SafeTensorsWriter(metadata: ["z": "1", "a": "2"])) == #"{"__metadata__":{"a":"2","z":"1"}}"#)
    #expect(try header(SafeTensorsWriter()) == "{}")
    #expect(try header(SafeTensorsWriter(metadata: [:])) == #"{"__metadata__":{}}"#)
    #expect(
      try header(SafeTensorsWriter(metadata: ["k": "\u{7}\t/\u{7f}"]))
        == "{\"__metadata__\":{\"k\":\"\\u0007\\t/\u{7f}\"}}")
  }

  @Test("replacing an existing file leaves mappings of the old file valid")
  func atomicReplaceUnderMapping() throws {
    let dir = try TempDirectory()
    let path = dir.path("w.safetensors")
    try SafeTensorsWriter.write(["x": try Tensor(shape: [2], floats: [1, 2])], to: path)
    let old = try SafeTensorsFile(path: path).tensor("x")
    try SafeTensorsWriter.write(["x": try Tensor(shape: [3], floats: [7, 8, 9])], to: path)
    #expect(old.scalars() == [1, 2])
    #expect(try SafeTensorsFile(path: path).tensor("x").scalars() == [7, 8, 9])
    #expect(try dir.contents() == ["w.safetensors"])
  }

  @Test("failed writes name the path and leave no file behind")
  func failedWrites() throws {
    let dir = try TempDirectory()
    let missingDir = dir.path("no/such/dir/out.safetensors")
    let error = #expect(throws: SafeTensorsError.self) {
      try SafeTensorsWriter.write(["x": Tensor.zeros([1])], to: missingDir)
    }
    guard case .io(let path, _, _) = error else {
      Issue.record("expected .io, got \(String(describing: error))")
      return
    }
    #expect(path == missingDir)
    #expect(error?.description.contains(missingDir) == true)

    let target = dir.path("bad.safetensors")
    #expect(throws: SafeTensorsError.reservedTensorName(path: target, key: "__metadata__")) {
      try SafeTensorsWriter.write(["__metadata__": Tensor.zeros([1])], to: target)
    }
    var raw = SafeTensorsWriter()
    raw.addRaw("ids", elementType: .i64, shape: [3], bytes: [0, 0, 0])
    #expect(
      throws: SafeTensorsError.sizeMismatch(
        path: target, key: "ids", dtype: "I64", shape: [3], expectedByteCount: 24, actualByteCount: 3)
    ) { try raw.write(to: target) }
    var negative = SafeTensorsWriter()
    negative.addRaw("n", elementType: .u8, shape: [-1], bytes: [])
    #expect(throws: SafeTensorsError.self) { try negative.write(to: target) }
    #expect(try dir.contents().isEmpty)
  }
}

@Suite("SafeTensors at checkpoint scale")
struct SafeTensorsScaleTests {
  @Test("20 000 tensors (≈ 2 MB header) write and read back")
  func manyTensors() throws {
    let dir = try TempDirectory()
    var writer = SafeTensorsWriter(metadata: ["format": "pt"])
    for i in 0..<20_000 {
      writer.add("down_blocks.\(i / 100).attentions.\(i % 100).to_q.weight", Tensor.full([2], Float(i)))
    }
    let path = dir.path("big.safetensors")
    try writer.write(to: path)
    let clock = ContinuousClock()
    let start = clock.now
    let file = try SafeTensorsFile(path: path)
    let elapsed = clock.now - start
    #expect(file.keys.count == 20_000)
    #expect(try file.tensor("down_blocks.123.attentions.45.to_q.weight").scalars() == [12345, 12345])
    #expect(file.header.headerByteCount > 1_000_000)
    print("opened 20 000-tensor header (\(file.header.headerByteCount) bytes) in \(elapsed)")
  }
}
