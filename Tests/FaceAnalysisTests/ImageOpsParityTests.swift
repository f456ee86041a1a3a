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

  /// `estimate_norm`: our Umeyama against scikit-image's matrices, **bit for bit**: for the faces of
  /// the end-to-end fixtures at 112, 224 and 256, and for 76 keypoint sets of alignment.safetensors
  /// (any rotation, mirrored faces, eye distances of ~3 to ~1500 px, up to 6000 px from the origin,
  /// collinear points) at 112, 128, 224, 256 and 384.
  ///
  /// Collinear points (sets 72–74: no face; the covariance has rank 1) are the exception: the
  /// singular vector of the zero singular value is arbitrary, LAPACK's and our closed form pick
  /// different ones, so there the matrices agree to float32 precision of the terms
  /// (≤ 1e-6 · (|value| + scale · max |keypoint|); measured ≤ 4e-8 relative).
  @Test func estimateNormMatchesScikitImageBitForBit() throws {
    let collinear = 72...74
    func check(_ kps: [Float], _ reference: [Double], size: Int, _ what: String, collinearSets: ClosedRange<Int>? = nil) throws -> Int {
      var checked = 0
      for f in 0..<(kps.count / 10) {
        let points = (0..<5).map { (kps[f * 10 + 2 * $0], kps[f * 10 + 2 * $0 + 1]) }
        let m = try FaceAlignment.estimateNorm(keypoints: points, size: size)
        let r = Array(reference[(f * 6)..<(f * 6 + 6)])
        if collinearSets?.contains(f) == true {
          let reach = Double(points.map { max(abs($0.0), abs($0.1)) }.max()!) * (r[0] * r[0] + r[3] * r[3]).squareRoot()
          for j in 0..<6 {
            #expect(abs(m.m[j] - r[j]) <= 1e-6 * (abs(r[j]) + reach), "\(what) collinear set \(f) size \(size) M[\(j)] \(m.m[j]) vs \(r[j])")
          }
        } else {
          #expect(m.m.map(\.bitPattern) == r.map(\.bitPattern), "\(what) set \(f) size \(size): \(m) vs \(r)")
        }
        checked += 1
      }
      return checked
    }
    let e2e = try Fixtures.archive("face/e2e.safetensors")
    var faces = 0
    for entry in e2e.header.entries where entry.name.hasSuffix("/kps") {
      let prefix = String(entry.name.dropLast("/kps".count))
      let kps = try e2e.tensor("\(prefix)/kps").toFloat32().scalars()
      for size in [112, 224, 256] {
        faces += try check(kps, try FaceFixtures.doubles(e2e, "\(prefix)/M\(size)"), size: size, prefix)
      }
    }
    #expect(faces > 20)
    let sets = try Fixtures.archive("face/alignment.safetensors")
    let kps = try sets.tensor("kps").toFloat32().scalars()
    var random = 0
    for size in [112, 128, 224, 256, 384] {
      random += try check(kps, try FaceFixtures.doubles(sets, "M\(size)"), size: size, "alignment", collinearSets: collinear)
    }
    #expect(random == 76 * 5)
  }

  /// insightface `norm_crop` from insightface's own keypoints (the e2e fixtures' first det640 face
  /// of img_a and img_b at 112²): our matrix and warp give its OpenCV-4.x crop byte for byte.
  @Test func normCropFromInsightfaceKeypointsIsIdentical() throws {
    let e2e = try Fixtures.archive("face/e2e.safetensors")
    for (key, file) in [("a", "img_a.png"), ("b", "img_b.jpg")] {
      let prefix = "tiny_buffalo_l/\(key)/det640"
      let kps = try e2e.tensor("\(prefix)/kps").toFloat32().scalars()
      let points = (0..<5).map { (kps[2 * $0], kps[2 * $0 + 1]) }
      let image = try Image(contentsOfFile: Fixtures.url("face/\(file)").path).convertedToRGB()
      let ours = try FaceAlignment.normCrop(image, keypoints: points, size: 112)
      var expected = try FaceFixtures.image(e2e, "\(prefix)/crop112_cv4_face0")
      expected.withUnsafeMutablePixels { p in for i in stride(from: 0, to: p.count, by: 3) { p.swapAt(i, i + 2) } }
      let m = FaceFixtures.mismatch(ours.pixels, expected.pixels)
      #expect(m.count == 0, "\(key): \(m.count) bytes differ (max \(m.max))")
    }
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
