import Foundation
import Imaging

/// A 2×3 affine map `[a b c; d e f]` (x' = a·x + b·y + c, y' = d·x + e·y + f), in Double.
public struct AffineTransform: Sendable, Equatable, CustomStringConvertible {
  public var m: [Double]

  public init(_ m: [Double]) {
    precondition(m.count == 6)
    self.m = m
  }

  public func apply(_ p: (Double, Double)) -> (Double, Double) {
    (m[0] * p.0 + m[1] * p.1 + m[2], m[3] * p.0 + m[4] * p.1 + m[5])
  }

  /// The inverse map, computed as OpenCV's `invertAffineTransform` / `warpAffine` do.
  public var inverted: AffineTransform {
    var d = m[0] * m[4] - m[1] * m[3]
    d = d != 0 ? 1 / d : 0
    let a11 = m[4] * d
    let a22 = m[0] * d
    let a12 = -m[1] * d
    let a21 = -m[3] * d
    let b1 = -a11 * m[2] - a12 * m[5]
    let b2 = -a21 * m[2] - a22 * m[5]
    return AffineTransform([a11, a12, b1, a21, a22, b2])
  }

  public var description: String { "[\(m[0]) \(m[1]) \(m[2]); \(m[3]) \(m[4]) \(m[5])]" }
}

/// insightface's face alignment (`insightface.utils.face_align`): the ArcFace 5-point template,
/// the similarity transform onto it, and the crop.
///
/// matches: insightface 0.7.3 `estimate_norm` / `norm_crop` (scikit-image `SimilarityTransform.estimate`,
/// `cv2.warpAffine` with INTER_LINEAR and a zero border).
public enum FaceAlignment {
  /// Landmark positions in a 112×112 ArcFace crop, in keypoint order (left eye, right eye, nose,
  /// left mouth corner, right mouth corner; "left" as seen in the image).
  public static let arcfaceTemplate: [(Float, Float)] = [
    (38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041),
  ]

  public enum AlignmentError: Error, CustomStringConvertible, Equatable {
    case unsupportedSize(Int)
    case degenerateKeypoints

    public var description: String {
      switch self {
      case .unsupportedSize(let s): "face crop size \(s) is not supported: it must be a multiple of 112 or of 128 (e.g. 112, 224, 256), at most 1024"
      case .degenerateKeypoints: "the face keypoints coincide: no alignment is possible"
      }
    }
  }

  /// The template scaled for a crop of `size` (multiples of 112: scaled; of 128: scaled by
  /// size/128 and shifted right by 8·size/128, as insightface does).
  public static func template(size: Int) throws(AlignmentError) -> [(Float, Float)] {
    guard size > 0, size <= 1024, size % 112 == 0 || size % 128 == 0 else { throw .unsupportedSize(size) }
    // float32 arithmetic, as insightface (template float32 × Python float → float32 under NumPy 2).
    let (ratio, dx): (Float, Float) =
      size % 112 == 0 ? (Float(Double(size) / 112), 0) : (Float(Double(size) / 128), Float(8 * (Double(size) / 128)))
    return arcfaceTemplate.map { ($0.0 * ratio + dx, $0.1 * ratio) }
  }

  /// The least-squares similarity transform (rotation, uniform scale, translation) mapping
  /// `source` points onto `destination` points (Umeyama, as scikit-image estimates it).
  public static func similarity(from source: [(Double, Double)], to destination: [(Double, Double)]) throws(AlignmentError) -> AffineTransform {
    precondition(source.count == destination.count && !source.isEmpty)
    let n = Double(source.count)
    let sx = source.reduce(0) { $0 + $1.0 } / n
    let sy = source.reduce(0) { $0 + $1.1 } / n
    let dx = destination.reduce(0) { $0 + $1.0 } / n
    let dy = destination.reduce(0) { $0 + $1.1 } / n
    var norm = 0.0
    var a = 0.0
    var b = 0.0
    for (p, q) in zip(source, destination) {
      let (ax, ay) = (p.0 - sx, p.1 - sy)
      let (bx, by) = (q.0 - dx, q.1 - dy)
      norm += ax * ax + ay * ay
      a += ax * bx + ay * by
      b += ax * by - ay * bx
    }
    guard norm > 0, norm.isFinite else { throw .degenerateKeypoints }
    let alpha = a / norm
    let beta = b / norm
    return AffineTransform([alpha, -beta, dx - (alpha * sx - beta * sy), beta, alpha, dy - (beta * sx + alpha * sy)])
  }

  /// insightface `estimate_norm(kps, size)`: the transform from image keypoints to the template.
  public static func estimateNorm(keypoints: [(Float, Float)], size: Int) throws(AlignmentError) -> AffineTransform {
    precondition(keypoints.count == 5)
    let dst = try template(size: size)
    return try similarity(
      from: keypoints.map { (Double($0.0), Double($0.1)) }, to: dst.map { (Double($0.0), Double($0.1)) })
  }

  /// insightface `norm_crop`: the `size`×`size` aligned face crop (channel order as given).
  public static func normCrop(_ image: Image, keypoints: [(Float, Float)], size: Int) throws(AlignmentError) -> Image {
    let m = try estimateNorm(keypoints: keypoints, size: size)
    return AffineWarp.warp(image, m, width: size, height: size)
  }
}
