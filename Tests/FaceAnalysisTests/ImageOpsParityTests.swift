import FaceAnalysis
import Foundation
import Imaging
import TestSupport
import Testing
import Weights

/// Reads `[H, W, 3]` uint8 tensors of the face fixtures as images.
enum FaceFixtures {
  static func image(_ file: SafeTensorsFile, _ key: String) throws -> Image {
    let shape = try #require(file.header.entry(key)?.shape)
    return try Image(width: shape[1], height: shape[0], channels: shape[2], pixels: try file.rawBytes(key))
  }

  static func doubles(_ file: SafeTensorsFile, _ key: String) throws -> [Double] {
    try file.rawBytes(key).withUnsafeBytes { raw in
      (0..<(raw.count / 8)).map { Double(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self).littleEndian) }
    }
  }

  /// How many bytes differ, and the largest difference.
  static func mismatch(_ a: [UInt8], _ b: [UInt8]) -> (count: Int, max: Int) {
    var count = 0
    var worst = 0
    for (x, y) in zip(a, b) where x != y {
      count += 1
      worst = max(worst, abs(Int(x) - Int(y)))
    }
    return (count, worst)
  }
}

/// The two OpenCV image operations insightface's face pipeline uses, bit for bit against the
/// fixtures of gen_face.py (whose NumPy models of both calls are asserted against cv2 there).
@Suite struct ImageOpsParityTests {
  /// `cv2.resize` INTER_LINEAR (identical in OpenCV 4.10–4.14 and 5.0): up, down, odd factors,
  /// a single-column source, an exact 2× reduction (area path), the identity.
  @Test func resizeMatchesOpenCVBitForBit() throws {
    let file = try Fixtures.archive("face/cv_resize.safetensors")
    for i in 0..<11 {
      let key = String(format: "case%02d", i)
      let src = try FaceFixtures.image(file, "\(key)/src")
      let dst = try FaceFixtures.image(file, "\(key)/dst")
      let ours = OpenCVResize.linear(src, width: dst.width, height: dst.height)
      let m = FaceFixtures.mismatch(ours.pixels, dst.pixels)
      #expect(m.count == 0, "\(key) \(src.width)×\(src.height) → \(dst.width)×\(dst.height): \(m.count) bytes differ (max \(m.max))")
    }
  }

  /// The detector's letterbox resize of every test image at det sizes 640, 320 (and the small
  /// canvases), sampled rows.
  @Test func letterboxResizeMatchesOpenCV() throws {
    let file = try Fixtures.archive("face/cv_resize.safetensors")
    let names = ["a": "img_a.png", "b": "img_b.jpg", "c": "img_c_gray.png", "d": "img_d_16bit.png"]
    var checked = 0
    for entry in file.header.entries where entry.name.hasPrefix("letterbox_") && entry.name.hasSuffix("/rows") {
      let key = String(entry.name.dropLast("/rows".count))
      let image = String(key.dropFirst("letterbox_".count).prefix(1))
      let source = try Image(contentsOfFile: Fixtures.url("face/\(names[image]!)").path).convertedToRGB()
      let rows = try file.int64Values("\(key)/rows").map(Int.init)
      let values = try file.rawBytes("\(key)/row_values")
      let width = values.count / rows.count / 3
      // insightface's letterbox size: the height follows from the width (or the reverse) by int().
      let size = key.split(separator: "_").last!.split(separator: "x").map { Int($0)! }
      let imRatio = Double(source.height) / Double(source.width)
      let height = imRatio > Double(size[1]) / Double(size[0]) ? size[1] : Int(Double(size[0]) * imRatio)
      #expect(width == (imRatio > Double(size[1]) / Double(size[0]) ? Int(Double(size[1]) / imRatio) : size[0]), "\(key) width")
      let ours = OpenCVResize.linear(source, width: width, height: height)
      var sampled: [UInt8] = []
      for r in rows { sampled += ours.pixels[(r * width * 3)..<((r + 1) * width * 3)] }
      // The fixtures are BGR: compare channel-swapped.
      var bgr = sampled
      for p in stride(from: 0, to: bgr.count, by: 3) { bgr.swapAt(p, p + 2) }
      let m = FaceFixtures.mismatch(bgr, values)
      #expect(m.count == 0, "\(key): \(m.count) bytes differ (max \(m.max))")
      checked += 1
    }
    #expect(checked >= 8)
  }

  /// `cv2.warpAffine` (insightface `norm_crop`) at 112, 224 and 256, from estimate_norm matrices
  /// (rotated, scaled up and down, partly outside the image), an integer translation and an exact
  /// 2× case with rounding ties: identical to OpenCV 4.x (4.10, 4.12, 4.14). OpenCV 5.0 changed
  /// the algorithm (float taps); the engine follows 4.x, what insightface users run.
  @Test func warpMatchesOpenCV4BitForBit() throws {
    let file = try Fixtures.archive("face/cv_warp.safetensors")
    var checked = 0
    for i in 0..<14 {
      let key = String(format: "case%02d", i)
      let src = try FaceFixtures.image(file, "\(key)/src")
      let m = AffineTransform(try FaceFixtures.doubles(file, "\(key)/M"))
      if file.header.entry("\(key)/dst_cv4") != nil {
        let dst = try FaceFixtures.image(file, "\(key)/dst_cv4")
        let ours = AffineWarp.warp(src, m, width: dst.width, height: dst.height)
        let mm = FaceFixtures.mismatch(ours.pixels, dst.pixels)
        #expect(mm.count == 0, "\(key): \(mm.count) bytes differ (max \(mm.max))")
      } else {
        let rows = try file.int64Values("\(key)/rows").map(Int.init)
        let values = try file.rawBytes("\(key)/row_values_cv4")
        let size = values.count / rows.count / 3
        let ours = AffineWarp.warp(src, m, width: size, height: size)
        var sampled: [UInt8] = []
        for r in rows { sampled += ours.pixels[(r * size * 3)..<((r + 1) * size * 3)] }
        let mm = FaceFixtures.mismatch(sampled, values)
        #expect(mm.count == 0, "\(key): \(mm.count) bytes differ (max \(mm.max))")
      }
      checked += 1
    }
    #expect(checked == 14)
  }

  /// `estimate_norm`: our closed-form Umeyama (double) against scikit-image's matrices for the
  /// faces of the end-to-end fixtures (same keypoints), at 112, 224 and 256. scikit-image computes
  /// in the keypoints' float32 (means, the 2×2 covariance, LAPACK `sgesdd`), so the bound is float32
  /// precision of the terms: |ours − skimage| ≤ 1e-6 · max(1, |value|) for the linear part and
  /// 1e-6 · (|value| + |scale|·max |keypoint|) for the translations (float32 means of points
  /// hundreds of pixels from the origin).
  @Test func estimateNormMatchesScikitImage() throws {
    let file = try Fixtures.archive("face/e2e.safetensors")
    var checked = 0
    for entry in file.header.entries where entry.name.hasSuffix("/kps") {
      let prefix = String(entry.name.dropLast("/kps".count))
      let kps = try file.tensor("\(prefix)/kps").toFloat32().scalars()
      for size in [112, 224, 256] {
        let reference = try FaceFixtures.doubles(file, "\(prefix)/M\(size)")
        for f in 0..<(kps.count / 10) {
          let points = (0..<5).map { (kps[f * 10 + 2 * $0], kps[f * 10 + 2 * $0 + 1]) }
          let m = try FaceAlignment.estimateNorm(keypoints: points, size: size)
          let reach = Double(points.map { max(abs($0.0), abs($0.1)) }.max()!) * (m.m[0] * m.m[0] + m.m[3] * m.m[3]).squareRoot()
          for j in 0..<6 {
            let r = reference[f * 6 + j]
            let bound = j == 2 || j == 5 ? 1e-6 * (abs(r) + reach) : 1e-6 * max(1, abs(r))
            #expect(abs(m.m[j] - r) <= bound, "\(prefix) face \(f) size \(size) M[\(j)] \(m.m[j]) vs \(r)")
          }
          checked += 1
        }
      }
    }
    #expect(checked > 20)
  }

  /// What OpenCV's imread gives for the JPEG and the 16-bit PNG (insightface users load photos
  /// with it): our decoders give the same pixels (16-bit samples keep their high byte).
  @Test func photoDecodingMatchesOpenCV() throws {
    let file = try Fixtures.archive("face/e2e.safetensors")
    for (key, name) in [("b", "img_b.jpg"), ("d", "img_d_16bit.png")] {
      let ours = try Image(contentsOfFile: Fixtures.url("face/\(name)").path).convertedToRGB()
      var bgr = try FaceFixtures.image(file, "\(key)/decoded")
      bgr.withUnsafeMutablePixels { p in for i in stride(from: 0, to: p.count, by: 3) { p.swapAt(i, i + 2) } }
      let m = FaceFixtures.mismatch(ours.pixels, bgr.pixels)
      #expect(ours.width == bgr.width && ours.height == bgr.height && m.count == 0, "\(name): \(m.count) bytes differ (max \(m.max))")
    }
  }
}
