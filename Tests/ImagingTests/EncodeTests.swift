import Foundation
import Imaging
import Testing

/// PNG encoding with text chunks, atomic writes, and typed errors for unwritable paths.
@Suite struct EncodeTests {
  let directory: URL

  init() throws {
    directory = FileManager.default.temporaryDirectory.appendingPathComponent("imaging-encode-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  }

  func cleanup() { try? FileManager.default.removeItem(at: directory) }

  @Test("encode → decode round trip", arguments: PixelFormat.allCases)
  func roundTrip(format: PixelFormat) throws {
    defer { cleanup() }
    let source = try ImagingFixtures.image("rgba_37x23.png").converted(to: format)
    let path = directory.appendingPathComponent("out-\(format).png").path
    try source.writePNG(to: path)
    let decoded = try ImageCodec.decode(contentsOfFile: path)
    #expect(decoded.image == source)
    #expect(decoded.fileFormat == .png)
  }

  @Test func textChunksAreWrittenAndReadBack() throws {
    defer { cleanup() }
    let image = try ImagingFixtures.image("rgb_37x23.png")
    let parameters = "a cat, best quality\nNegative prompt: blurry\nSteps: 30, Sampler: DDIM, CFG scale: 7.5, Seed: 1234, Size: 512x512"
    let text = [
      PNGTextChunk(key: "parameters", value: parameters),
      PNGTextChunk(key: "Software", value: "IPAdapterEngine"),
      PNGTextChunk(key: "prompt-utf8", value: "猫 — café"),
    ]
    let path = directory.appendingPathComponent("params.png").path
    try ImageCodec.writePNG(image, to: path, text: text)
    let decoded = try ImageCodec.decode(contentsOfFile: path)
    #expect(decoded.image == image)
    #expect(decoded.text == text)
    #expect(decoded.text(forKey: "parameters") == parameters)
    // The A1111-style entry is a real tEXt chunk (Latin-1 value), found in the raw bytes.
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    #expect(containsChunk(bytes, type: "tEXt", payloadPrefix: Array("parameters\0a cat".utf8)))
    #expect(containsChunk(bytes, type: "iTXt", payloadPrefix: Array("prompt-utf8\0".utf8)))
  }

  @Test func invalidTextKeyIsATypedError() throws {
    defer { cleanup() }
    let image = Image(width: 2, height: 2, format: .rgb)
    let path = directory.appendingPathComponent("bad-key.png").path
    #expect(throws: ImageIOError.self) {
      try ImageCodec.writePNG(image, to: path, text: [PNGTextChunk(key: "", value: "x")])
    }
    #expect(!FileManager.default.fileExists(atPath: path))
  }

  @Test func writeIsAtomicAndLeavesNoTemporaryFiles() throws {
    defer { cleanup() }
    let path = directory.appendingPathComponent("atomic.png").path
    let first = try ImagingFixtures.image("rgb_37x23.png")
    let second = try ImagingFixtures.image("gray_37x23.png")
    try first.writePNG(to: path)
    try second.writePNG(to: path)  // replaces the file in one rename
    #expect(try Image(contentsOfFile: path) == second)
    let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
    #expect(names == ["atomic.png"], "left behind: \(names)")
  }

  @Test func unwritableDirectoryIsATypedError() throws {
    defer { cleanup() }
    let image = Image(width: 4, height: 3, format: .rgb, fill: 7)
    let missing = directory.appendingPathComponent("no/such/dir/out.png").path
    do {
      try image.writePNG(to: missing)
      Issue.record("expected an error")
    } catch {
      guard case .unwritable(let path, _) = error else {
        Issue.record("unexpected \(error)")
        return
      }
      #expect(path == missing)
      #expect(error.description.contains(missing))
    }
    // A read-only directory (skipped when running as root, which ignores permissions).
    let readOnly = directory.appendingPathComponent("ro")
    try FileManager.default.createDirectory(at: readOnly, withIntermediateDirectories: true)
    try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: readOnly.path)
    defer { try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: readOnly.path) }
    if geteuid() != 0 {
      let target = readOnly.appendingPathComponent("out.png").path
      #expect(throws: ImageIOError.self) { try image.writePNG(to: target) }
      #expect(try FileManager.default.contentsOfDirectory(atPath: readOnly.path).isEmpty)
    }
    // A path whose parent is a regular file.
    let file = directory.appendingPathComponent("plain.txt")
    try Data("x".utf8).write(to: file)
    #expect(throws: ImageIOError.self) { try image.writePNG(to: file.path + "/out.png") }
  }

  /// Whether `bytes` holds a chunk of `type` whose data starts with `payloadPrefix`.
  func containsChunk(_ bytes: [UInt8], type: String, payloadPrefix: [UInt8]) -> Bool {
    var offset = 8
    while offset + 8 <= bytes.count {
      let length = bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
      let kind = String(decoding: bytes[offset + 4..<offset + 8], as: UTF8.self)
      let data = offset + 8
      if kind == type && data + payloadPrefix.count <= bytes.count
        && Array(bytes[data..<data + payloadPrefix.count]) == payloadPrefix
      {
        return true
      }
      offset = data + length + 4
    }
    return false
  }
}
