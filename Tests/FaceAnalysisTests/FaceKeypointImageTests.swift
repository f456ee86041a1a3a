import FaceAnalysis
import Foundation
import Imaging
import TestSupport
import Testing

/// InstantID's keypoint control image against the InstantID repository's own `draw_kps` (run by
/// tools/reference/gen_instantid.py with OpenCV 5.0; the same cases checked there against 4.12):
/// faces in frame, near a corner, partly and wholly outside the canvas, a 17×13 canvas, coincident
/// points, vertical and negative-angle limbs and random poses. Pixel for pixel.
@Suite struct FaceKeypointImageTests {
  struct Case: Decodable {
    var file: String
    var width: Int
    var height: Int
    var kps: [[Float]]
  }

  struct Listing: Decodable { var cases: [Case] }

  static let cases: [Case] = {
    let url = Fixtures.url("instantid/kps/cases.json")
    guard let data = try? Data(contentsOf: url), let listing = try? JSONDecoder().decode(Listing.self, from: data) else {
      return []
    }
    return listing.cases
  }()

  @Test func everyCaseIsListed() {
    #expect(Self.cases.count == 16)
  }

  @Test(arguments: 0..<16)
  func keypointImageIsDrawKpsPixelForPixel(_ index: Int) throws {
    try #require(index < Self.cases.count)
    let c = Self.cases[index]
    let expected = try Image(contentsOfFile: Fixtures.url("instantid/kps/\(c.file)").path)
    let drawn = try FaceKeypointImage.draw(keypoints: c.kps.map { (x: $0[0], y: $0[1]) }, width: c.width, height: c.height)
    #expect(drawn.width == expected.width && drawn.height == expected.height && drawn.format == .rgb)
    let differing = zip(drawn.pixels, expected.pixels).filter { $0 != $1 }.count
    #expect(differing == 0, "\(c.file): \(differing) of \(expected.pixels.count) samples differ")
  }

  /// Keypoints anywhere within the accepted ±10⁶ pixels (far outside a small canvas, huge limbs):
  /// every drawing clips, nothing traps, and whatever lands on the canvas uses InstantID's colours.
  @Test func keypointsAnywhereDrawWithoutTrapping() throws {
    var rng = SystemRandomNumberGenerator()
    let allowed: Set<[UInt8]> = Set(FaceKeypointImage.colors + FaceKeypointImage.colors.map { $0.map { UInt8(Double($0) * 0.6) } } + [[0, 0, 0]])
    for trial in 0..<200 {
      let scale: Float = trial % 2 == 0 ? 1e6 : 60
      let points = (0..<5).map { _ in (x: Float.random(in: -scale...scale, using: &rng), y: Float.random(in: -scale...scale, using: &rng)) }
      let image = try FaceKeypointImage.draw(keypoints: points, width: 32, height: 24)
      for p in stride(from: 0, to: image.pixels.count, by: 3) {
        #expect(allowed.contains(Array(image.pixels[p..<(p + 3)])))
      }
    }
  }

  @Test func badKeypointsAreRefused() {
    let five: [(x: Float, y: Float)] = [(1, 1), (5, 1), (3, 3), (2, 5), (4, 5)]
    #expect(throws: FaceAnalysisError.self) { try FaceKeypointImage.draw(keypoints: Array(five.prefix(4)), width: 8, height: 8) }
    #expect(throws: FaceAnalysisError.self) { try FaceKeypointImage.draw(keypoints: five + [(1, 1)], width: 8, height: 8) }
    var nan = five
    nan[2].x = .nan
    #expect(throws: FaceAnalysisError.self) { try FaceKeypointImage.draw(keypoints: nan, width: 8, height: 8) }
    var far = five
    far[0].y = 3e7
    #expect(throws: FaceAnalysisError.self) { try FaceKeypointImage.draw(keypoints: far, width: 8, height: 8) }
    #expect(throws: FaceAnalysisError.self) { try FaceKeypointImage.draw(keypoints: five, width: 0, height: 8) }
    #expect(throws: FaceAnalysisError.self) { try FaceKeypointImage.draw(keypoints: five, width: 8, height: 100_000) }
  }
}
