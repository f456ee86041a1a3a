import Foundation
import Imaging

/// The control image of InstantID's IdentityNet: the five facial keypoints (insightface order:
/// left eye, right eye, nose, left mouth corner, right mouth corner) drawn on black — four limbs
/// from each point to the nose as filled ellipses (4 px half-width) at 60 % brightness, then a
/// filled circle of radius 10 on each point.
///
/// matches: InstantID `pipeline_stable_diffusion_xl_instantid.py` `draw_kps` with its default
/// colours, run on insightface's float32 keypoints: `length`, `np.mean` and `length / 2` in
/// float32, the angle through `math.atan2`/`math.degrees` in float64, every `int()` a truncation
/// toward zero, `cv2.ellipse2Poly(…, delta=1)` + `cv2.fillConvexPoly` on a float64 canvas, the
/// `× 0.6` and `astype(uint8)` (255 → 153), `cv2.circle(…, 10, color, -1)` — pixel for pixel
/// (OpenCV's drawing through ``RasterCanvas``).
public enum FaceKeypointImage {
  /// InstantID's `color_list`: one RGB colour per keypoint.
  public static let colors: [[UInt8]] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255]]
  /// The limbs, as keypoint pairs (`limbSeq`); each takes the colour of its first point.
  static let limbs = [(0, 2), (1, 2), (3, 2), (4, 2)]

  /// Draws `keypoints` (five `(x, y)` pixel positions; outside the image is fine) on a black RGB
  /// image of `width` × `height`.
  /// - Throws: ``FaceAnalysisError/invalidOption(name:reason:)`` for a count other than five, a
  ///   coordinate that is not finite or beyond ±10⁶ pixels, or an empty or oversized canvas.
  public static func draw(keypoints: [(x: Float, y: Float)], width: Int, height: Int) throws -> Image {
    guard keypoints.count == 5 else {
      throw FaceAnalysisError.invalidOption(name: "keypoints", reason: "\(keypoints.count) points given; InstantID draws 5 (eyes, nose, mouth corners)")
    }
    guard keypoints.allSatisfy({ $0.x.isFinite && $0.y.isFinite && abs($0.x) <= 1e6 && abs($0.y) <= 1e6 }) else {
      throw FaceAnalysisError.invalidOption(name: "keypoints", reason: "a coordinate is not finite or beyond ±1e6 pixels")
    }
    guard (1...16384).contains(width), (1...16384).contains(height) else {
      throw FaceAnalysisError.invalidOption(name: "keypoint image size", reason: "\(width)×\(height) is outside 1…16384")
    }
    var canvas = RasterCanvas(Image(width: width, height: height, format: .rgb))
    for (a, b) in limbs {
      let (p, q) = (keypoints[a], keypoints[b])
      let (dx, dy) = (p.x - q.x, p.y - q.y)
      // numpy float32 scalars: `** 0.5` is the C library's powf, which is not always sqrtf.
      let length = powf(dx * dx + dy * dy, 0.5)
      let angle = atan2(Double(dy), Double(dx)) * (180 / Double.pi)  // math.degrees: one product
      let center = RasterCanvas.Point(Int((p.x + q.x) / 2), Int((p.y + q.y) / 2))
      let polygon = RasterCanvas.ellipsePolygon(
        center: center, axes: (Int(length / 2), 4), angle: Int(angle), arcStart: 0, arcEnd: 360, delta: 1)
      // (× 0.6 of the float64 canvas, truncated to uint8: 255 → 153, 0 → 0.)
      canvas.fillConvexPolygon(polygon, color: colors[a].map { UInt8(Double($0) * 0.6) })
    }
    for (i, p) in keypoints.enumerated() {
      canvas.fillCircle(center: RasterCanvas.Point(Int(p.x), Int(p.y)), radius: 10, color: colors[i])
    }
    return canvas.image
  }
}
