import FaceAnalysis
import Foundation
import Imaging
import TestSupport
import Testing
import Weights

/// `FaceAnalyzer.analyze` against insightface 0.7.3 `FaceAnalysis.get` (allowed_modules detection +
/// recognition, onnxruntime CPU) on the tiny packs of gen_face.py. Faces, order and count exactly;
/// boxes and keypoints ≤ 2e-3 px (graph outputs agree to 1e-4 relative, scaled by stride/det_scale);
/// scores ≤ 1e-4. The aligned crop is warped bit for bit like OpenCV 4.x for a given matrix
/// (ImageOpsParityTests); the matrix itself agrees with scikit-image's float32 estimate to ~1e-7
/// relative, which moves a few crop pixels by one level, and the tiny random recogniser amplifies
/// that: embeddings are compared by cosine similarity ≥ 0.999, and exactly (≤ 1e-4 · max |e|) on
/// insightface's own crops in ONNXParityTests.
@Suite struct FaceAnalyzerParityTests {
  static let images = ["a": "img_a.png", "b": "img_b.jpg", "c": "img_c_gray.png", "d": "img_d_16bit.png"]

  static func cases() -> [(String, String, Int)] {
    var out: [(String, String, Int)] = []
    for pack in ["tiny_buffalo_l", "tiny_antelopev2"] {
      for image in ["a", "b", "c", "d"] {
        for size in [640, 320] { out.append((pack, image, size)) }
      }
    }
    return out
  }

  /// The aligned 112² crop of the first face (from our keypoints and transform) against
  /// insightface's, made with OpenCV 4.x: with insightface's own matrix it is identical byte for
  /// byte; with ours (double vs scikit-image's float32) at most 0.1 % of the bytes move by ≤ 2.
  @Test(arguments: ["a", "b"])
  func alignedCropMatchesInsightfaceBitForBit(_ imageKey: String) throws {
    let reference = try Fixtures.archive("face/e2e.safetensors")
    let analyzer = try FaceAnalyzer(models: Fixtures.url("face/packs/tiny_buffalo_l").path)
    let image = try Image(contentsOfFile: Fixtures.url("face/\(Self.images[imageKey]!)").path)
    let face = try #require(try analyzer.analyze(image).first)
    var expected = try FaceFixtures.image(reference, "tiny_buffalo_l/\(imageKey)/det640/crop112_cv4_face0")
    expected.withUnsafeMutablePixels { p in for i in stride(from: 0, to: p.count, by: 3) { p.swapAt(i, i + 2) } }
    let m = FaceFixtures.mismatch(face.alignedCrop.pixels, expected.pixels)
    #expect(m.count <= expected.pixels.count / 1000 && m.max <= 2, "\(imageKey): \(m.count) bytes differ (max \(m.max))")
    let theirs = AffineTransform(Array(try FaceFixtures.doubles(reference, "tiny_buffalo_l/\(imageKey)/det640/M112")[0..<6]))
    let rgb = image.convertedToRGB()
    let exact = AffineWarp.warp(rgb, theirs, width: 112, height: 112)
    #expect(FaceFixtures.mismatch(exact.pixels, expected.pixels).count == 0, "\(imageKey): warp with insightface's matrix")
  }

  @Test(arguments: cases())
  func facesMatchInsightface(_ pack: String, _ imageKey: String, _ size: Int) throws {
    let reference = try Fixtures.archive("face/e2e.safetensors")
    let prefix = "\(pack)/\(imageKey)/det\(size)"
    guard reference.header.entry("\(prefix)/bbox") != nil else { return }  // case not generated
    let analyzer = try FaceAnalyzer(models: Fixtures.url("face/packs/\(pack)").path)
    let image = try Image(contentsOfFile: Fixtures.url("face/\(Self.images[imageKey]!)").path)
    let faces = try analyzer.analyze(image, options: FaceAnalysisOptions(detectionSize: size))
    let boxes = try reference.tensor("\(prefix)/bbox").toFloat32().scalars()
    let scores = try reference.tensor("\(prefix)/det_score").toFloat32().scalars()
    let kps = try reference.tensor("\(prefix)/kps").toFloat32().scalars()
    // Embeddings of OpenCV-4.x crops are stored for buffalo_l at 640 (the other groups hold 5.0's).
    let hasCV4 = reference.header.entry("\(prefix)/embedding_cv4") != nil
    let embedding = try reference.tensor("\(prefix)/\(hasCV4 ? "embedding_cv4" : "embedding")").toFloat32().scalars()
    #expect(faces.count == scores.count, "\(prefix): \(faces.count) faces, insightface \(scores.count)")
    guard faces.count == scores.count else { return }
    let width = embedding.count / max(scores.count, 1)
    let scale = max(1, embedding.map(abs).max() ?? 0)
    for (i, face) in faces.enumerated() {
      #expect(abs(face.score - scores[i]) <= 1e-4, "\(prefix) face \(i) score")
      for j in 0..<4 { #expect(abs(face.box[j] - boxes[i * 4 + j]) <= 2e-3, "\(prefix) face \(i) box[\(j)] \(face.box[j]) vs \(boxes[i * 4 + j])") }
      for j in 0..<5 {
        #expect(abs(face.keypoints[j].x - kps[i * 10 + 2 * j]) <= 2e-3, "\(prefix) face \(i) kps \(j)")
        #expect(abs(face.keypoints[j].y - kps[i * 10 + 2 * j + 1]) <= 2e-3, "\(prefix) face \(i) kps \(j)")
      }
      let e = Array(embedding[(i * width)..<((i + 1) * width)])
      #expect(face.embedding.count == width)
      if hasCV4 {
        let cosine = zip(face.normedEmbedding, l2Normalized(e)).map { $0 * $1 }.reduce(0, +)
        #expect(cosine >= 0.999, "\(prefix) face \(i) embedding cosine \(cosine)")
      }
      _ = scale
    }
  }
}
