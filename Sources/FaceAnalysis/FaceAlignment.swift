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
  /// `source` points onto `destination` points: Umeyama's method exactly as scikit-image 0.26's
  /// `SimilarityTransform.estimate` computes it on float32 points under NumPy 2, so that the matrix
  /// (and the `warpAffine` crop made with it) is identical bit for bit:
  /// - means, centred points, their variances and the 2×2 covariance in float32, in NumPy's order
  ///   (row after row; the covariance as OpenBLAS's fused multiply-add chain, then ÷ n);
  /// - the SVD in double (NumPy's `linalg` computes in double) rounded to float32, as NumPy returns
  ///   it for float32 input; `d = diag(1, sign det A)`; rank from the singular values as scikit-image;
  /// - rotation `U·diag(d)·V`, `scale = float32(1 / Σ var) · (S·d)` and the translation in double.
  ///
  /// The covariance order is proven for 5 points (insightface's case); more points give the same
  /// transform to float32 precision.
  public static func similarity(from source: [(Float, Float)], to destination: [(Float, Float)]) throws(AlignmentError) -> AffineTransform {
    precondition(source.count == destination.count && !source.isEmpty)
    let count = source.count
    let n = Float(count)
    func mean(_ p: [(Float, Float)]) -> (Float, Float) {
      var s = p[0]
      for q in p.dropFirst() { s = (s.0 + q.0, s.1 + q.1) }
      return (s.0 / n, s.1 / n)
    }
    let sm = mean(source)
    let dm = mean(destination)
    let sd = source.map { ($0.0 - sm.0, $0.1 - sm.1) }
    let dd = destination.map { ($0.0 - dm.0, $0.1 - dm.1) }
    // A = dd^T · sd / n: A[i][j] = Σ_k dd[k][i] · sd[k][j], one fused multiply-add per k.
    var a = [[Float]](repeating: [0, 0], count: 2)
    for i in 0..<2 {
      for j in 0..<2 {
        var acc: Float = 0
        for k in 0..<count {
          let x = i == 0 ? dd[k].0 : dd[k].1
          let y = j == 0 ? sd[k].0 : sd[k].1
          acc = acc.addingProduct(x, y)
        }
        a[i][j] = acc / n
      }
    }
    guard a.allSatisfy({ $0.allSatisfy(\.isFinite) }) else { throw .degenerateKeypoints }
    let (a00, a01, a10, a11) = (Double(a[0][0]), Double(a[0][1]), Double(a[1][0]), Double(a[1][1]))
    var d: (Double, Double) = (1, 1)
    if a00 * a11 - a01 * a10 < 0 { d.1 = -1 }  // products of float32 values: exact in double
    let svd = Self.singularValueDecomposition(a00, a01, a10, a11)
    let u = svd.u.map { Double(Float($0)) }
    let s = svd.s.map { Double(Float($0)) }
    let v = svd.vt.map { Double(Float($0)) }
    // rank as numpy's matrix_rank: singular values above max(S) · max(shape) · eps(double).
    let tolerance = max(s[0], s[1]) * 2 * Double.ulpOfOne
    let rank = s.filter { $0 > tolerance }.count
    guard rank > 0 else { throw .degenerateKeypoints }
    var rotationD = d
    if rank == 1 {
      let detU = u[0] * u[3] - u[1] * u[2]
      let detV = v[0] * v[3] - v[1] * v[2]
      rotationD = detU * detV > 0 ? (1, 1) : (d.0, -1)
    }
    // U · diag(d) · V: every product of two float32 values is exact in double, one rounding per sum.
    let l = [
      u[0] * rotationD.0 * v[0] + u[1] * rotationD.1 * v[2], u[0] * rotationD.0 * v[1] + u[1] * rotationD.1 * v[3],
      u[2] * rotationD.0 * v[0] + u[3] * rotationD.1 * v[2], u[2] * rotationD.0 * v[1] + u[3] * rotationD.1 * v[3],
    ]
    // src_demean.var(axis=0).sum() in float32 (the mean recomputed from the centred points).
    func variance(_ x: [Float]) -> Float {
      var m = x[0]
      for v in x.dropFirst() { m += v }
      m /= n
      var acc: Float = 0
      for (k, v) in x.enumerated() {
        let c = v - m
        acc = k == 0 ? c * c : acc + c * c
      }
      return acc / n
    }
    let inverse = Float(1) / (variance(sd.map(\.0)) + variance(sd.map(\.1)))
    let scale = Double(inverse) * (s[0] * d.0 + s[1] * d.1)
    guard scale.isFinite else { throw .degenerateKeypoints }
    // dst_mean − scale · (L · src_mean): the matrix-vector product as a multiply-add on the second term.
    let t0 = Double(dm.0) - scale * (l[1] * Double(sm.1)).addingProduct(l[0], Double(sm.0))
    let t1 = Double(dm.1) - scale * (l[3] * Double(sm.1)).addingProduct(l[2], Double(sm.0))
    return AffineTransform([l[0] * scale, l[1] * scale, t0, l[2] * scale, l[3] * scale, t1])
  }

  /// The SVD `A = U · diag(s) · Vᵀ` of the 2×2 matrix `[a b; c d]` in closed form (two rotations),
  /// singular values descending and non-negative; `u` and `vt` row-major.
  static func singularValueDecomposition(_ a: Double, _ b: Double, _ c: Double, _ d: Double) -> (u: [Double], s: [Double], vt: [Double]) {
    let e = (a + d) / 2
    let f = (a - d) / 2
    let g = (c + b) / 2
    let h = (c - b) / 2
    let q = hypot(e, h)
    let r = hypot(f, g)
    let a1 = atan2(g, f)
    let a2 = atan2(h, e)
    let theta = (a2 - a1) / 2
    let phi = (a2 + a1) / 2
    var vt = [cos(theta), -sin(theta), sin(theta), cos(theta)]
    var second = q - r
    if second < 0 {
      second = -second
      vt[2] = -vt[2]
      vt[3] = -vt[3]
    }
    return ([cos(phi), -sin(phi), sin(phi), cos(phi)], [q + r, second], vt)
  }

  /// insightface `estimate_norm(kps, size)`: the transform from image keypoints to the template.
  public static func estimateNorm(keypoints: [(Float, Float)], size: Int) throws(AlignmentError) -> AffineTransform {
    precondition(keypoints.count == 5)
    return try similarity(from: keypoints, to: try template(size: size))
  }

  /// insightface `norm_crop`: the `size`×`size` aligned face crop (channel order as given).
  public static func normCrop(_ image: Image, keypoints: [(Float, Float)], size: Int) throws(AlignmentError) -> Image {
    let m = try estimateNorm(keypoints: keypoints, size: size)
    return AffineWarp.warp(image, m, width: size, height: size)
  }
}
