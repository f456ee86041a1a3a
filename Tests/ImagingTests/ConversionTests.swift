import Imaging
import Testing

/// Mode conversions equal Pillow's `convert`, and RGB for CLIP equals transformers' `convert_to_rgb`.
@Suite struct ConversionTests {
  @Test("conversion equals Pillow / transformers", arguments: ImagingFixtures.labels("convert"))
  func conversionEqualsReference(label: String) throws {
    let golden = try ImagingFixtures.entry("convert", label)
    let source = try ImagingFixtures.image(try #require(golden.string("source")))
    let out: Image
    switch golden.string("kind") {
    case "pillow":
      let target = try #require(PixelFormat.allCases.first { $0.pillowMode == golden.string("format") })
      out = source.converted(to: target)
    default:  // transformers_convert_to_rgb
      out = source.compositedOnWhiteToRGB()
    }
    try expectPixels(out, equal: golden, label)
  }

  /// Pins the convention transformers 5.23 uses before CLIP preprocessing: RGBA is composited onto
  /// **white** (not black, not alpha-dropped), with Pillow's integer `alpha_composite` rounding.
  @Test func rgbaIsCompositedOntoWhiteForCLIP() throws {
    let pixels: [UInt8] = [
      0, 0, 0, 0,  // transparent black → white
      10, 200, 30, 255,  // opaque → unchanged
      0, 0, 0, 128,  // half-transparent black → mid grey
      255, 0, 0, 64,  // quarter red over white
      37, 99, 201, 1,  // almost transparent
    ]
    let image = try Image(width: 5, height: 1, format: .rgba, pixels: pixels)
    let rgb = image.compositedOnWhiteToRGB()
    #expect(rgb.format == .rgb)
    #expect(Array(rgb[0, 0]) == [255, 255, 255])
    #expect(Array(rgb[1, 0]) == [10, 200, 30])
    #expect(Array(rgb[2, 0]) == [127, 127, 127])
    #expect(Array(rgb[3, 0]) == [255, 191, 191])
    #expect(Array(rgb[4, 0]) == [254, 254, 255])
    // Pillow's convert("RGB") (VaeImageProcessor's do_convert_rgb) drops alpha instead.
    #expect(Array(image.convertedToRGB()[0, 0]) == [0, 0, 0])
    #expect(Array(image.convertedToRGB()[2, 0]) == [0, 0, 0])
    // Gray + alpha follows the same rule.
    let la = try Image(width: 2, height: 1, format: .grayAlpha, pixels: [0, 0, 100, 255])
    #expect(la.compositedOnWhiteToRGB().pixels == [255, 255, 255, 100, 100, 100])
  }

  @Test func grayConversionUsesPillowLuma() throws {
    let image = try Image(width: 3, height: 1, format: .rgb, pixels: [255, 0, 0, 0, 255, 0, 0, 0, 255])
    // (r*19595 + g*38470 + b*7471 + 0x8000) >> 16
    #expect(image.converted(to: .gray).pixels == [76, 150, 29])
  }
}
