import Foundation
import Imaging
import TensorCore
import Testing

/// Images from strangers: every size read from a header or derived from an aspect ratio is checked
/// against `ImageLimits` before anything is allocated.
@Suite struct HostileImageTests {
  /// CRC-32 (ISO-HDLC, as PNG uses), to re-seal a patched chunk.
  static func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes {
      crc ^= UInt32(b)
      for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
  }

  /// A real PNG whose IHDR claims `width × height` (CRC fixed, so libpng accepts the header).
  static func pngClaiming(width: UInt32, height: UInt32) throws -> [UInt8] {
    var png = try ImagingFixtures.bytes("rgb_37x23.png")
    // Signature (8) + IHDR length (4) + "IHDR" (4): width at 16, height at 20, CRC at 29.
    for (offset, value) in [(16, width), (20, height)] {
      for i in 0..<4 { png[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(3 - i))) }
    }
    let crc = crc32(png[12..<29])
    for i in 0..<4 { png[29 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(3 - i))) }
    return png
  }

  /// The progressive fixture with its SOF2 frame size patched to `width × height`.
  static func progressiveJPEGClaiming(width: Int, height: Int) throws -> [UInt8] {
    var jpeg = try ImagingFixtures.bytes("jpeg_progressive_37x23.jpg")
    let sof = try #require(segments(jpeg).first { $0.marker == 0xC2 })
    // FFC2, length (2), precision (1), height (2), width (2).
    jpeg[sof.start + 5] = UInt8(height >> 8)
    jpeg[sof.start + 6] = UInt8(height & 0xFF)
    jpeg[sof.start + 7] = UInt8(width >> 8)
    jpeg[sof.start + 8] = UInt8(width & 0xFF)
    return jpeg
  }

  /// The JPEG's marker segments: marker byte, start offset (of 0xFF) and end (after the segment, and
  /// for SOS after its entropy-coded data).
  static func segments(_ jpeg: [UInt8]) -> [(marker: UInt8, start: Int, end: Int)] {
    var out: [(UInt8, Int, Int)] = []
    var i = 2  // after SOI
    while i + 4 <= jpeg.count, jpeg[i] == 0xFF {
      let marker = jpeg[i + 1]
      if marker == 0xD9 { break }
      var end = i + 2 + (Int(jpeg[i + 2]) << 8 | Int(jpeg[i + 3]))
      if marker == 0xDA {  // entropy-coded data runs to the next marker other than FF00 / RSTn
        while end + 1 < jpeg.count, !(jpeg[end] == 0xFF && jpeg[end + 1] != 0 && !(0xD0...0xD7).contains(jpeg[end + 1])) {
          end += 1
        }
      }
      out.append((marker, i, end))
      i = end
    }
    return out
  }

  @Test("a PNG header claiming 100,000² pixels is refused from the header, before any allocation")
  func hugePNGHeader() throws {
    let png = try Self.pngClaiming(width: 100_000, height: 100_000)
    #expect(throws: ImageIOError.tooLarge(path: "huge.png", width: 100_000, height: 100_000, limit: ImageLimits.default.maxInputPixels)) {
      try ImageCodec.decode(png, source: "huge.png")
    }
    // A lower budget refuses a normal image too; the real one decodes at the default.
    let small = ImageLimits(maxInputPixels: 100)
    #expect(throws: ImageIOError.tooLarge(path: "rgb", width: 37, height: 23, limit: 100)) {
      try ImageCodec.decode(try ImagingFixtures.bytes("rgb_37x23.png"), source: "rgb", limits: small)
    }
    #expect(try ImageCodec.decode(try ImagingFixtures.bytes("rgb_37x23.png")).image.width == 37)
  }

  @Test("a progressive JPEG header claiming 65,500² pixels is refused before libjpeg allocates its buffers")
  func hugeProgressiveJPEGHeader() throws {
    let jpeg = try Self.progressiveJPEGClaiming(width: 65_500, height: 65_500)
    #expect(throws: ImageIOError.tooLarge(path: "big.jpg", width: 65_500, height: 65_500, limit: ImageLimits.default.maxInputPixels)) {
      try ImageCodec.decode(jpeg, source: "big.jpg")
    }
  }

  @Test("a small JPEG declaring more pixels than its bytes can code is refused before decoding (libjpeg would fill in the rest)")
  func declaredSizeBeyondWhatTheDataCanHold() throws {
    // ~1 KB of data claiming 4000×3000 (12 M pixels, inside the pixel budget): libjpeg would decode
    // the whole frame, inventing what is missing after the early end-of-image marker.
    let jpeg = try Self.progressiveJPEGClaiming(width: 4000, height: 3000)
    #expect(jpeg.count < 8_000)
    let error = #expect(throws: ImageIOError.self) { try ImageCodec.decode(jpeg, source: "bomb.jpg") }
    guard case .corruptJPEG(let path, let message)? = error else {
      Issue.record("expected corruptJPEG, got \(String(describing: error))")
      return
    }
    #expect(path == "bomb.jpg")
    #expect(message.contains("4000x3000 pixels is more than \(jpeg.count) bytes of JPEG data can hold"))
    // Up to 2^20 pixels are always allowed, and the real files decode.
    let small = try Self.progressiveJPEGClaiming(width: 1024, height: 1024)
    do {
      _ = try ImageCodec.decode(small, source: "small.jpg")
    } catch {
      #expect(!String(describing: error).contains("can hold"), "\(error)")
    }
    #expect(try ImageCodec.decode(try ImagingFixtures.bytes("jpeg_progressive_37x23.jpg")).image.width == 37)
  }

  @Test("a progressive JPEG that repeats one scan 2,000 times is refused after 1,000 scans")
  func tooManyScans() throws {
    let jpeg = try ImagingFixtures.bytes("jpeg_progressive_37x23.jpg")
    let segments = Self.segments(jpeg)
    let scans = segments.filter { $0.marker == 0xDA }
    #expect(scans.count >= 2)
    let repeated = try #require(scans.last)
    let scan = Array(jpeg[repeated.start..<repeated.end])
    var hostile = Array(jpeg[..<repeated.end])
    for _ in 0..<2_000 { hostile += scan }
    hostile += [0xFF, 0xD9]
    let error = #expect(throws: ImageIOError.self) { try ImageCodec.decode(hostile, source: "scans.jpg") }
    guard case .corruptJPEG(_, let message)? = error else {
      Issue.record("expected corruptJPEG, got \(String(describing: error))")
      return
    }
    #expect(message.contains("more than 1000 progressive scans"))
    // The fixture itself (a handful of scans) still decodes.
    #expect(try ImageCodec.decode(jpeg).image.width == 37)
  }

  @Test("an image file larger than maxInputFileBytes is refused before it is read")
  func hugeFile() throws {
    let path = ImagingFixtures.path("rgb_300x200.png")
    let limits = ImageLimits(maxInputFileBytes: 100)
    let error = #expect(throws: ImageIOError.self) { try Image(contentsOfFile: path, limits: limits) }
    guard case .unsupported(let p, let reason)? = error else {
      Issue.record("\(String(describing: error))")
      return
    }
    #expect(p == path)
    #expect(reason.contains("100-byte limit"))
  }

  @Test("a 1×999,999 image prompt is refused by the CLIP resize (224 × 223,999,776) instead of allocating 150 GB")
  func extremeAspectImagePrompt() throws {
    let sliver = Image(width: 1, height: 999_999, format: .gray, fill: 128)
    let processor = CLIPImageProcessor()
    #expect(throws: ImageIOError.tooLarge(
      path: "the CLIP resize of a 1×999999 image prompt", width: 224, height: 223_999_776, limit: ImageLimits.default.maxPixels)
    ) {
      try processor.preprocess(sliver)
    }
    // An ordinary panorama is fine.
    let panorama = Image(width: 2000, height: 300, format: .rgb, fill: 10)
    #expect(try processor.preprocess(panorama).shape == [1, 224, 224, 3])
  }

  @Test("fill and crop resizes of extreme aspect ratios are bounded (no zero side, no huge intermediate)")
  func extremeAspectVAEResize() throws {
    let processor = VaeImageProcessor()
    let tall = Image(width: 1, height: 200_000, format: .rgb, fill: 1)
    #expect(throws: ImageIOError.self) { try processor.resize(tall, height: 512, width: 512, mode: .crop) }  // 512 × 102,400,000
    #expect(throws: ImageIOError.self) { try processor.resize(tall, height: 512, width: 512, mode: .fill) }  // 0 × 512
    #expect(throws: ImageIOError.self) { try processor.preprocess(tall, height: 8, width: 0) }
    #expect(try processor.resize(Image(width: 60, height: 40, format: .rgb), height: 32, width: 32, mode: .fill).width == 32)
  }

  @Test("preprocessing no images is an error, not a trap")
  func emptyBatches() {
    #expect(throws: ImageIOError.self) { try CLIPImageProcessor().preprocess([Image]()) }
    #expect(throws: ImageIOError.self) { try VaeImageProcessor().preprocess([Image]()) }
  }

  @Test("a preprocessor config with a zero std or an absurd size is refused when decoded")
  func hostileProcessorConfig() throws {
    for json in [#"{"image_std": [0.5, 0, 0.5]}"#, #"{"size": {"shortest_edge": 100000000}}"#, #"{"crop_size": -3}"#] {
      #expect(throws: (any Error).self, "\(json)") {
        try JSONDecoder().decode(CLIPImageProcessor.self, from: Data(json.utf8))
      }
    }
  }
}

extension HostileImageTests {
  @Test("a 156-byte PNG whose iTXt chunk declares 1.9 GB is refused without libpng allocating it (fuzz regression)")
  func hugeTextChunk() throws {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("Fuzz/Regressions/png/itxt-chunk-length-1.9GB.png")
    let bytes = [UInt8](try Data(contentsOf: url))
    #expect(bytes.count == 156)
    #expect(throws: ImageIOError.self) { try ImageCodec.decode(bytes, source: "itxt.png") }
  }

  @Test("an iTXt chunk declaring 1.1 GB after a text chunk with a bad CRC is refused (libpng only warns about its length)")
  func hugeTextChunkAfterBenignError() throws {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("Fuzz/Regressions/png/itxt-length-after-text-chunk-1.1GB.png")
    let bytes = [UInt8](try Data(contentsOf: url))
    #expect(bytes.count == 181)
    #expect(throws: ImageIOError.self) { try ImageCodec.decode(bytes, source: "itxt.png") }
  }

  @Test("a tiny PNG declaring more pixels than its deflate data could hold is refused before its buffer is allocated")
  func declaredSizeBeyondDeflateRatio() throws {
    // 37×23 RGB file (a few hundred bytes) claiming 2000×2000 (12 MB raw, inside the pixel budget).
    let png = try Self.pngClaiming(width: 2000, height: 2000)
    let error = #expect(throws: ImageIOError.self) { try ImageCodec.decode(png, source: "claim.png") }
    guard case .corruptPNG(_, let message)? = error else {
      Issue.record("\(String(describing: error))")
      return
    }
    #expect(message.contains("compressed bytes"))
    // A real, highly compressible image still decodes.
    let flat = try ImageCodec.encodePNG(Image(width: 1500, height: 1500, format: .rgb, fill: 7), compressionLevel: 9)
    #expect(flat.count < 20_000)
    #expect(try ImageCodec.decode(flat).image.width == 1500)
  }
}
