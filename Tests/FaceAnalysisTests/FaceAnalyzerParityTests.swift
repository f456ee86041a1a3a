import FaceAnalysis
import Foundation
import Imaging
import ONNX
import TestSupport
import Testing
import Weights

/// `FaceAnalyzer.analyze` against insightface 0.7.3 `FaceAnalysis.get` (allowed_modules detection +
/// recognition, onnxruntime CPU) on the tiny packs of gen_face.py. Faces, order and count exactly;
/// boxes and keypoints ≤ 2e-3 px (graph outputs agree to 1e-4 relative, scaled by stride/det_scale);
/// scores ≤ 1e-4. From the same keypoints, the alignment matrix and the aligned crop are
/// insightface's bit for bit (ImageOpsParityTests); from our detector's keypoints (≤ 2e-3 px from
/// onnxruntime's: the convolutions add in another order) a few crop pixels can move by a level, and
/// the tiny random recogniser amplifies that: embeddings are compared by cosine similarity ≥ 0.999,
/// and exactly (≤ 1e-4 · max |e|) on insightface's own crops in ONNXParityTests.
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

  /// The aligned 112² crop of the first face, end to end (our detection, keypoints, transform and
  /// warp) against insightface's, made with OpenCV 4.x. From insightface's keypoints it is identical
  /// (ImageOpsParityTests.normCropFromInsightfaceKeypointsIsIdentical); from ours, which differ by
  /// up to 2e-3 px, at most 0.1 % of the bytes may move by ≤ 2 (measured: img_a identical, img_b 3
  /// bytes). With insightface's own matrix the warp is identical byte for byte.
  @Test(arguments: ["a", "b"])
  func alignedCropFromOurDetectionMatchesInsightface(_ imageKey: String) throws {
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
    // Where the crop is identical (img_a), so is the embedding, to the recogniser's parity bound.
    if m.count == 0 {
      let e = try reference.tensor("tiny_buffalo_l/\(imageKey)/det640/embedding_cv4").toFloat32().scalars()
      let row = Array(e[0..<face.embedding.count])
      let scale = row.map(abs).max() ?? 1
      let worst = zip(face.embedding, row).map { abs($0 - $1) }.max() ?? .infinity
      #expect(worst <= 1e-4 * scale, "\(imageKey): embedding differs by \(worst) (max |e| \(scale))")
    }
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

/// Photos of any size are analysed at the detection size: a 4096×3072 photo costs one letterbox
/// resize (two source rows per output row), not a full-size copy per stage.
@Suite struct FaceAnalyzerInputTests {
  @Test func largePhotoIsAnalysedAtDetectionSize() throws {
    let analyzer = try FaceAnalyzer(models: Fixtures.url("face/packs/tiny_buffalo_l").path)
    var photo = Image(width: 4096, height: 3072, format: .rgb, fill: 0)
    photo.withUnsafeMutablePixels { p in for i in 0..<p.count { p[i] = UInt8(truncatingIfNeeded: (i / 3) % 4096 / 16) } }
    let faces = try analyzer.analyze(photo, options: FaceAnalysisOptions(detectionSize: 320))
    for face in faces {
      #expect(face.embedding.count == 512 && face.alignedCrop.width == 112)
    }
  }

  @Test func grayAndAlphaPhotosAreConvertedToRGB() throws {
    let analyzer = try FaceAnalyzer(models: Fixtures.url("face/packs/tiny_buffalo_l").path)
    let rgb = try Image(contentsOfFile: Fixtures.url("face/img_a.png").path)
    let rgba = rgb.converted(to: .rgba)
    let a = try analyzer.analyze(rgb)
    let b = try analyzer.analyze(rgba)
    #expect(a.count == b.count && zip(a, b).allSatisfy { $0.box == $1.box && $0.embedding == $1.embedding })
  }

  @Test func invalidDetectionSizeIsNamed() throws {
    let analyzer = try FaceAnalyzer(models: Fixtures.url("face/packs/tiny_buffalo_l").path)
    let rgb = try Image(contentsOfFile: Fixtures.url("face/img_a.png").path)
    #expect(throws: FaceAnalysisError.self) { _ = try analyzer.analyze(rgb, options: FaceAnalysisOptions(detectionSize: 100)) }
  }

  @Test func alignmentRefusesUnsupportedSizesAndCoincidentKeypoints() throws {
    let points = [(Float(10), Float(10)), (20, 10), (15, 15), (11, 20), (19, 20)]
    #expect(throws: FaceAlignment.AlignmentError.unsupportedSize(100)) { _ = try FaceAlignment.estimateNorm(keypoints: points, size: 100) }
    let same = [(Float, Float)](repeating: (5, 5), count: 5)
    #expect(throws: FaceAlignment.AlignmentError.degenerateKeypoints) { _ = try FaceAlignment.estimateNorm(keypoints: same, size: 112) }
  }
}

/// insightface's routing of a pack's files (`model_zoo.get_model`): landmark (192²), gender/age
/// (96²) and swapper graphs are never taken for the recogniser, whatever their file names sort as.
@Suite struct FaceModelRoutingTests {
  /// A minimal ONNX model: `Identity` from one input of `shape` to `outputs` outputs.
  static func model(inputs: [[Int]], outputs: Int) -> [UInt8] {
    func varint(_ v: Int) -> [UInt8] {
      var v = UInt64(v)
      var out: [UInt8] = []
      repeat {
        let b = UInt8(v & 0x7f)
        v >>= 7
        out.append(v == 0 ? b : b | 0x80)
      } while v != 0
      return out
    }
    func field(_ n: Int, _ bytes: [UInt8]) -> [UInt8] { varint(n << 3 | 2) + varint(bytes.count) + bytes }
    func string(_ n: Int, _ s: String) -> [UInt8] { field(n, Array(s.utf8)) }
    func valueInfo(_ name: String, _ shape: [Int]) -> [UInt8] {
      let dims = shape.flatMap { field(1, varint(1 << 3) + varint($0)) }
      let tensorType = varint(1 << 3) + varint(1) + field(2, dims)
      return string(1, name) + field(2, field(1, tensorType))
    }
    var graph: [UInt8] = []
    for o in 0..<outputs {
      graph += field(1, string(1, "x0") + string(2, "y\(o)") + string(3, "n\(o)") + string(4, "Identity"))
    }
    graph += string(2, "g")
    for (i, s) in inputs.enumerated() { graph += field(11, valueInfo("x\(i)", s)) }
    for o in 0..<outputs { graph += field(12, valueInfo("y\(o)", inputs[0])) }
    return varint(1 << 3) + varint(7) + field(8, field(2, varint(2 << 3) + varint(11))) + field(7, graph)
  }

  @Test func rolesFollowInsightface() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("roles-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let cases: [(String, [[Int]], Int, FaceModelRole)] = [
      ("1k3d68.onnx", [[1, 3, 192, 192]], 1, .landmarks), ("genderage.onnx", [[1, 3, 96, 96]], 1, .attributes),
      ("inswapper_128.onnx", [[1, 3, 128, 128], [1, 512]], 1, .swapper), ("w600k_r50.onnx", [[1, 3, 112, 112]], 1, .recognizer),
      ("det.onnx", [[1, 3, 640, 640]], 9, .detector), ("other.onnx", [[1, 3, 100, 50]], 1, .unknown),
    ]
    for (name, inputs, outputs, role) in cases {
      let path = folder.appendingPathComponent(name).path
      try Data(Self.model(inputs: inputs, outputs: outputs)).write(to: URL(fileURLWithPath: path))
      #expect(FaceModelRole(try ONNXSignature(contentsOf: path)) == role, "\(name)")
    }
  }

  /// A whole buffalo_l-like folder: the landmark graph sorts first but the real recogniser is used.
  @Test func landmarkGraphsAreNotTakenForTheRecognizer() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("pack-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let pack = Fixtures.url("face/packs/tiny_buffalo_l")
    for f in ["det_10g.onnx", "w600k_r50.onnx"] {
      try FileManager.default.copyItem(at: pack.appendingPathComponent(f), to: folder.appendingPathComponent(f))
    }
    try Data(Self.model(inputs: [[1, 3, 192, 192]], outputs: 1)).write(to: folder.appendingPathComponent("1k3d68.onnx"))
    try Data(Self.model(inputs: [[1, 3, 96, 96]], outputs: 1)).write(to: folder.appendingPathComponent("genderage.onnx"))
    let analyzer = try FaceAnalyzer(models: folder.path)
    #expect(analyzer.recognizer.session.file.hasSuffix("w600k_r50.onnx"))
    #expect(analyzer.recognizer.inputSize == 112)
  }
}
