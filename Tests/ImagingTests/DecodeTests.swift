import Foundation
import Imaging
import Testing

/// Decoding PNG/JPEG equals Pillow 13's decode (in this decoder's L/LA/RGB/RGBA representation).
@Suite struct DecodeTests {
  @Test("decode equals Pillow exactly", arguments: ImagingFixtures.labels("decode"))
  func decodeEqualsPillow(label: String) throws {
    let golden = try ImagingFixtures.entry("decode", label)
    let file = try #require(golden.string("file"))
    let decoded = try ImageCodec.decode(contentsOfFile: ImagingFixtures.path(file))
    #expect(decoded.image.format.pillowMode == golden.string("format"), "\(file): format")
    #expect(decoded.image.width == golden.int("width") && decoded.image.height == golden.int("height"))
    try expectPixels(decoded.image, equal: golden, file)
    #expect(decoded.fileFormat == (file.hasSuffix(".jpg") ? .jpeg : .png))
  }

  @Test func textChunksWrittenByPillowAreRead() throws {
    let golden = try ImagingFixtures.entry("decode", "decode_text_chunks_png")
    let expected = try #require(golden.object("text") as? [String: String])
    let decoded = try ImageCodec.decode(contentsOfFile: ImagingFixtures.path("text_chunks.png"))
    #expect(decoded.text(forKey: "parameters") == expected["parameters"])
    #expect(decoded.text(forKey: "Comment") == expected["Comment"])  // iTXt (not Latin-1)
  }

  @Test func transparencyChunkBecomesAlpha() throws {
    for file in ["palette_trns_37x23.png", "rgb_trns_37x23.png", "gray_trns_37x23.png"] {
      let decoded = try ImageCodec.decode(contentsOfFile: ImagingFixtures.path(file))
      #expect(decoded.alphaFromTransparency, "\(file)")
      #expect(decoded.image.format.hasAlpha, "\(file)")
    }
    let plain = try ImageCodec.decode(contentsOfFile: ImagingFixtures.path("rgba_37x23.png"))
    #expect(!plain.alphaFromTransparency)
  }

  @Test func formatIsDetectedFromMagicBytesNotExtension() throws {
    let jpeg = try ImagingFixtures.bytes("jpeg_rgb_64x48.jpg")
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("imaging-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let disguised = directory.appendingPathComponent("photo.png").path
    try Data(jpeg).write(to: URL(fileURLWithPath: disguised))
    let decoded = try ImageCodec.decode(contentsOfFile: disguised)
    #expect(decoded.fileFormat == .jpeg)
    #expect(decoded.image == (try ImagingFixtures.image("jpeg_rgb_64x48.jpg")))
  }
}

/// Bad input gives a typed `ImageIOError` naming the file, never a crash or exit().
@Suite struct DecodeErrorTests {
  func expectError(
    _ bytes: [UInt8], source: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ matches: (ImageIOError) -> Bool
  ) {
    do {
      let decoded = try ImageCodec.decode(bytes, source: source)
      Issue.record("\(source): decoded \(decoded.image.width)x\(decoded.image.height), expected an error", sourceLocation: sourceLocation)
    } catch {
      #expect(matches(error), "\(source): unexpected \(error)", sourceLocation: sourceLocation)
      #expect(error.path == source, sourceLocation: sourceLocation)
      #expect(error.description.contains(source), sourceLocation: sourceLocation)
    }
  }

  @Test func textFileWithPNGExtension() throws {
    let path = ImagingFixtures.path("not_a_png.png")
    #expect(throws: ImageIOError.unknownFormat(path: path)) { try Image(contentsOfFile: path) }
  }

  @Test func missingFile() {
    let path = ImagingFixtures.path("does_not_exist.png")
    do {
      _ = try Image(contentsOfFile: path)
      Issue.record("expected an error")
    } catch {
      guard case .unreadable(let p, let reason) = error else {
        Issue.record("unexpected \(error)")
        return
      }
      #expect(p == path && reason.contains("No such file"))
    }
  }

  @Test("truncated PNG", arguments: [
    "rgb_37x23.png", "interlaced_rgb_37x23.png", "rgb16_37x23.png", "palette_trns_37x23.png",
  ])
  func truncatedPNG(file: String) throws {
    let bytes = try ImagingFixtures.bytes(file)
    for keep in [9, 20, 40, bytes.count / 2, bytes.count - 30] {
      expectError(Array(bytes.prefix(keep)), source: "\(file)[..<\(keep)]") {
        if case .truncated(_, "PNG") = $0 { return true }
        if case .corruptPNG = $0 { return true }
        return false
      }
    }
    // Cut inside the image data: must be reported as truncated.
    expectError(Array(bytes.prefix(bytes.count / 2)), source: file) {
      if case .truncated(_, "PNG") = $0 { return true }
      return false
    }
    // Pillow stops reading at the end of the image data, so a file missing only its IEND chunk and
    // the last IDAT CRC still decodes (to the same pixels); so does this decoder.
    let full = try ImageCodec.decode(bytes).image
    #expect(try ImageCodec.decode(Array(bytes.dropLast(16)), source: file).image == full)
  }

  @Test func corruptPNG() throws {
    var bytes = try ImagingFixtures.bytes("rgb_37x23.png")
    // Flip bytes in the middle of the IDAT payload: CRC mismatch / zlib error.
    for i in stride(from: bytes.count / 2, to: bytes.count / 2 + 16, by: 1) { bytes[i] ^= 0x5A }
    expectError(bytes, source: "corrupt.png") {
      if case .corruptPNG = $0 { return true }
      return false
    }
    // A broken IHDR (zero width).
    var header = try ImagingFixtures.bytes("rgb_37x23.png")
    header[16...19] = [0, 0, 0, 0]
    expectError(header, source: "zero-width.png") {
      if case .corruptPNG = $0 { return true }
      return false
    }
    expectError(Array(PNGSignature.bytes), source: "signature-only.png") {
      if case .truncated = $0 { return true }
      return false
    }
  }

  @Test("truncated JPEG", arguments: ["jpeg_rgb_64x48.jpg", "jpeg_progressive_37x23.jpg", "jpeg_gray_37x23.jpg"])
  func truncatedJPEG(file: String) throws {
    let bytes = try ImagingFixtures.bytes(file)
    for keep in [3, 30, bytes.count / 3, bytes.count - 40] {
      expectError(Array(bytes.prefix(keep)), source: "\(file)[..<\(keep)]") {
        if case .truncated(_, "JPEG") = $0 { return true }
        if case .corruptJPEG = $0 { return true }
        return false
      }
    }
    expectError(Array(bytes.prefix(bytes.count * 2 / 3)), source: file) {
      if case .truncated(_, "JPEG") = $0 { return true }
      return false
    }
  }

  @Test func corruptJPEG() throws {
    var bytes = try ImagingFixtures.bytes("jpeg_rgb_64x48.jpg")
    // Destroy the SOF/DHT area right after the header: libjpeg must fail via error_exit.
    for i in 20..<200 { bytes[i] = 0xFF }
    expectError(bytes, source: "corrupt.jpg") {
      if case .corruptJPEG = $0 { return true }
      if case .truncated(_, "JPEG") = $0 { return true }
      return false
    }
    expectError([0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x02], source: "header-only.jpg") {
      if case .truncated(_, "JPEG") = $0 { return true }
      if case .corruptJPEG = $0 { return true }
      return false
    }
  }
}

enum PNGSignature {
  static let bytes: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
}
