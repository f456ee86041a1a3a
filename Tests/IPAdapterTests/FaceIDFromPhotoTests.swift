import FaceAnalysis
import Foundation
import Hub
import IPAdapter
import Imaging
import Pipelines
import TensorCore
import Testing
import TestSupport
import Weights

/// FaceID straight from a photo (`ImagePromptSpec.facePhotos` + `faceAnalyzer`): the native face
/// analysis of `img_a.png` with a tiny insightface-style pack whose recogniser gives 24-d
/// embeddings (the tiny FaceID adapters' width), then the adapters' projections — against
/// insightface 0.7.3 + the official tencent-ailab classes (`gen_face.py --only-faceid24`; the
/// `_cv4` references use OpenCV 4.x crops, which the engine reproduces). Tolerance: tokens
/// relative error ≤ 1e-4 (face graphs ≤ 1e-4 against onnxruntime, then the projection).
@Suite struct FaceIDFromPhotoTests {
  static let pack = Fixtures.url("face/packs/tiny_faceid24").path
  static func photo() throws -> Image { try Image(contentsOfFile: Fixtures.url("face/img_a.png").path) }
  static func reference() throws -> SafeTensorsFile { try Fixtures.archive("face/faceid_e2e.safetensors") }

  func encode(_ adapter: String, encoder: Bool = false) async throws -> ImagePromptEmbeds {
    var spec = ImagePromptSpec(adapter: .local(Fixtures.url("faceid/\(adapter)").path))
    spec.facePhotos = [try Self.photo()]
    spec.faceAnalyzer = try FaceAnalyzer(models: Self.pack)
    if encoder { spec.imageEncoder = .local(IPFixtures.encoderURL.path) }
    return try await ImagePromptBuilder().encode(spec).embeds
  }

  @Test func faceIDTokensFromAPhotoMatchTheReference() async throws {
    let embeds = try await encode("ip-adapter-faceid_sd15.bin")
    let r = try Self.reference()
    #expect(Compare.relativeError(embeds.conditional, try r.tensor("faceid_tokens_cv4")) <= 1e-4)
    #expect(Compare.relativeError(embeds.unconditional, try r.tensor("faceid_uncond_tokens")) <= 1e-5)
  }

  @Test func faceIDPlusTokensUseTheAlignedCropOfThePhoto() async throws {
    let embeds = try await encode("ip-adapter-faceid-plus_sd15.bin", encoder: true)
    let r = try Self.reference()
    #expect(Compare.relativeError(embeds.conditional, try r.tensor("faceid_plus_tokens_cv4")) <= 1e-4)
    #expect(Compare.relativeError(embeds.unconditional, try r.tensor("faceid_plus_uncond_tokens")) <= 1e-4)
  }

  /// The crop FaceID-Plus reads: insightface `norm_crop(img, kps, 224)` with OpenCV 4.x, in RGB.
  @Test func faceIDPlusCropIsInsightfaceNormCrop() throws {
    let analyzer = try FaceAnalyzer(models: Self.pack)
    let photo = try Self.photo()
    let face = try #require(try analyzer.analyze(photo).first)
    let crop = try FaceAnalyzer.alignedCrop(of: face, in: photo, size: 224)
    let r = try Self.reference()
    let expected = try r.rawBytes("crop224_face0")
    var differing = 0
    var worst = 0
    for (a, b) in zip(crop.pixels, expected) where a != b {
      differing += 1
      worst = max(worst, abs(Int(a) - Int(b)))
    }
    // From our detector's keypoints (≤ 2e-3 px from onnxruntime's) ≤ 0.1 % may move by ≤ 2 (measured:
    // identical); from insightface's keypoints the crop is identical (FaceAnalysisTests).
    #expect(crop.pixels.count == expected.count && differing <= expected.count / 1000 && worst <= 2, "\(differing) bytes differ (max \(worst))")
  }

  @Test func aPhotoWithoutAFaceIsNamed() async throws {
    var spec = ImagePromptSpec(adapter: .local(Fixtures.url("faceid/ip-adapter-faceid_sd15.bin").path))
    spec.facePhotos = [Image(width: 64, height: 48, format: .rgb, fill: 128)]
    spec.faceAnalyzer = try FaceAnalyzer(models: Self.pack)
    await #expect {
      _ = try await ImagePromptBuilder().encode(spec)
    } throws: { error in
      guard case PipelineError.invalidArgument(let name, let reason) = error else { return false }
      return name.hasSuffix("facePhotos[0]") && reason.contains("no face")
    }
  }

  @Test func photosWithoutAnAnalyzerOrWithEmbeddingsAreRefused() async throws {
    var spec = ImagePromptSpec(adapter: .local(Fixtures.url("faceid/ip-adapter-faceid_sd15.bin").path))
    spec.facePhotos = [try Self.photo()]
    await #expect(throws: PipelineError.self) { _ = try await ImagePromptBuilder().encode(spec) }
    spec.faceAnalyzer = try FaceAnalyzer(models: Self.pack)
    spec.faceEmbeddings = Tensor.zeros([1, 24])
    await #expect(throws: PipelineError.self) { _ = try await ImagePromptBuilder().encode(spec) }
  }
}
