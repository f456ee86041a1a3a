import Foundation
import Imaging
import Testing

/// `Image.gaussianBlurred` against Pillow 13 `ImageFilter.GaussianBlur`
/// (`tools/reference/gen_blur_fixtures.py` → `Tests/Fixtures/blur/`): an inpainting mask and the
/// L/LA/RGB/RGBA test images, radii 0.5 … 33 (larger than the image) and separate x/y radii.
/// Criterion: every byte equal — the blur reproduces Pillow's fixed-point arithmetic, so any
/// difference is a bug, not rounding.
@Suite struct GaussianBlurTests {
  static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/blur")

  struct Case: Sendable, CustomTestStringConvertible {
    let source, mode, golden: String
    let x, y: Double
    var testDescription: String { golden }
  }

  static func cases() -> [Case] {
    guard let data = try? Data(contentsOf: directory.appendingPathComponent("cases.json")),
      let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      let list = root["cases"] as? [[String: Any]]
    else { return [] }
    return list.compactMap { c in
      guard let source = c["source"] as? String, let mode = c["mode"] as? String, let golden = c["golden"] as? String
      else { return nil }
      if let r = c["radius"] as? Double { return Case(source: source, mode: mode, golden: golden, x: r, y: r) }
      guard let xy = c["radius"] as? [Double], xy.count == 2 else { return nil }
      return Case(source: source, mode: mode, golden: golden, x: xy[0], y: xy[1])
    }
  }

  static func load(_ name: String) throws -> Image {
    try Image(contentsOfFile: directory.appendingPathComponent(name).path)
  }

  @Test func fixturesArePresent() {
    #expect(Self.cases().count == 45)
  }

  @Test(arguments: cases())
  func matchesPillowByteForByte(_ c: Case) throws {
    let source = try Self.load(c.source)
    #expect(source.format.pillowMode == c.mode)
    let blurred = source.gaussianBlurred(xRadius: c.x, yRadius: c.y)
    let golden = try Self.load(c.golden)
    #expect(blurred.width == golden.width && blurred.height == golden.height && blurred.format == golden.format)
    let wrong = zip(blurred.pixels, golden.pixels).filter { $0 != $1 }.count
    #expect(wrong == 0, "\(wrong) of \(golden.pixels.count) samples differ")
    #expect(blurred.pixels != source.pixels, "the case must change the image")
  }

  @Test func zeroRadiusReturnsTheImageUnchanged() throws {
    let source = try Self.load("mask_41x29.png")
    #expect(source.gaussianBlurred(radius: 0) == source)
    #expect(VaeImageProcessor.blur(source, blurFactor: 0) == source)
  }

  @Test func blurKeepsAConstantImageConstantAndOnePixelImagesWork() {
    let flat = Image(width: 7, height: 5, format: .rgb, fill: 200)
    #expect(flat.gaussianBlurred(radius: 3).pixels.allSatisfy { $0 == 200 })
    let dot = Image(width: 1, height: 1, format: .gray, fill: 77)
    #expect(dot.gaussianBlurred(radius: 10).pixels == [77])
    let empty = Image(width: 0, height: 3, format: .gray)
    #expect(empty.gaussianBlurred(radius: 2) == empty)
  }
}
