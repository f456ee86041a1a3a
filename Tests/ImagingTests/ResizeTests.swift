import Foundation
import Imaging
import Testing

/// `Image.resized` is **bit-exact** with Pillow 13 `Image.resize` for every filter (NEAREST, BOX,
/// BILINEAR, HAMMING, BICUBIC, LANCZOS), up- and downsampling, one-pass cases, fractional and
/// zero-size boxes, alpha (premultiplied) images and `reducing_gap`.
@Suite struct ResizeTests {
  @Test("resize is bit-exact with Pillow", arguments: ImagingFixtures.labels("resize"))
  func resizeBitExact(label: String) throws {
    let golden = try ImagingFixtures.entry("resize", label)
    let sourceName = try #require(golden.string("source"))
    let source = try ImagingFixtures.image(sourceName)
    let filterValue = try #require(golden.int("filter"))
    let filter = try #require(Resampling(rawValue: filterValue))
    let box = golden.doubles("box").map { ResizeBox(left: $0[0], top: $0[1], right: $0[2], bottom: $0[3]) }
    let width = try #require(golden.int("width")), height = try #require(golden.int("height"))
    let out = source.resized(
      width: width, height: height,
      filter: filter, box: box, reducingGap: golden.double("reducing_gap"))
    #expect(out.format.pillowMode == golden.string("format"))
    try expectPixels(out, equal: golden, label)
  }

  @Test func sameSizeIsACopy() throws {
    let image = try ImagingFixtures.image("rgb_37x23.png")
    #expect(image.resized(width: 37, height: 23, filter: .lanczos) == image)
  }

  @Test func cropMatchesPillowZeroPadding() throws {
    let image = try ImagingFixtures.image("rgba_37x23.png")
    let crop = image.cropped(left: -2, top: 20, right: 3, bottom: 25)
    #expect(crop.width == 5 && crop.height == 5)
    #expect(Array(crop[0, 0]) == [0, 0, 0, 0])  // outside: zero, alpha included
    #expect(Array(crop[2, 0]) == Array(image[0, 20]))
  }

  /// A 1024x1024 RGB downscale must take milliseconds, not seconds (release-mode target).
  @Test func resizeIsFast() {
    var pixels = [UInt8](repeating: 0, count: 1024 * 1024 * 3)
    for i in pixels.indices { pixels[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
    let image = try! Image(width: 1024, height: 1024, format: .rgb, pixels: pixels)
    let clock = ContinuousClock()
    var out = image
    let elapsed = clock.measure {
      out = image.resized(width: 512, height: 512, filter: .bicubic)
    }
    let up = clock.measure { _ = out.resized(width: 1024, height: 1024, filter: .lanczos) }
    #expect(out.width == 512)
    #expect(elapsed < .milliseconds(250), "1024² → 512² bicubic took \(elapsed)")
    #expect(up < .milliseconds(400), "512² → 1024² lanczos took \(up)")
  }
}
