import FaceAnalysis
import Foundation
import Hub
import IPAdapter
import Imaging
@testable import Pipelines
import Models
import TensorCore
import TestSupport
import Testing
import Weights

/// InstantID against the InstantID repository's own `StableDiffusionXLInstantIDPipeline` (run by
/// tools/reference/gen_instantid.py with diffusers 0.42.1) on the tiny SDXL model, a tiny
/// InstantID folder (Resampler over 24-d embeddings with 6 queries, IdentityNet = the tiny SDXL
/// ControlNet) and 4 Euler steps at 64×48 with guidance 5.
/// - `given` / `window`: the embedding and keypoints given (no detector), the keypoints drawn on
///   64×48 and 80×60 canvases; final latents relative error ≤ 1e-4, the PNG within 1/255 on
///   ≥ 99 % of its values (as every SDXL pipeline case).
/// - `photo`: end to end from a photo through the native face analysis (the tiny 24-d pack), which
///   reproduces insightface's boxes and keypoints to 2e-3 px and its embeddings to cosine ≥ 0.999
///   (from insightface's keypoints the aligned crop is identical; from ours a few bytes can move by
///   a level): the keypoint image must be identical; with
///   insightface's embedding and our keypoints the latents are within 1e-4 and the PNG within
///   1/255 as above; all native, the embedding's difference (cosine 0.99917 on this random 24-d
///   recogniser) moves the latents by 3.0 % (bound 5e-2).
@Suite struct InstantIDParityTests {
  struct Case: Decodable {
    var prompt: String
    var negative_prompt: String
    var num_inference_steps: Int
    var guidance_scale: Float
    var width: Int
    var height: Int
    var ip_adapter_scale: Float
    var controlnet_conditioning_scale: Scales
    var control_guidance_start: Fractions?
    var control_guidance_end: Fractions?
    var extra_control: String?
    var init_image: String?
    var mask_image: String?
    var strength: Double?
    var lora: String?
    var lora_scale: Float?
    var single_file: Bool?
    var box: [Float]?
    var kps: [[Float]]
    var canvas: [Int]
    var photo: String?
  }

  /// One value, or one per ControlNet (IdentityNet first).
  struct Scales: Decodable {
    var values: [Float]
    init(from decoder: Decoder) throws {
      let c = try decoder.singleValueContainer()
      if let list = try? c.decode([Float].self) { values = list } else { values = [try c.decode(Float.self)] }
    }
  }

  struct Fractions: Decodable {
    var values: [Double]
    init(from decoder: Decoder) throws {
      let c = try decoder.singleValueContainer()
      if let list = try? c.decode([Double].self) { values = list } else { values = [try c.decode(Double.self)] }
    }
  }

  static let folder = Fixtures.url("instantid/pipeline")
  static let cases: [String: Case] = {
    guard let data = try? Data(contentsOf: folder.appendingPathComponent("cases.json")) else { return [:] }
    return (try? JSONDecoder().decode([String: Case].self, from: data)) ?? [:]
  }()
  static let pipeline = try! StableDiffusionPipeline(folder: Fixtures.url("tiny-sdxl"))
  static let instantID = HubReference.local(Fixtures.url("instantid/tiny-instantid").path)
  /// InstantID files (fp16) made for the SDXL single-file fixture's own UNet.
  static let instantIDSingleFile = HubReference.local(Fixtures.url("instantid/tiny-instantid-single-file").path)

  static func request(_ c: Case, face: InstantIDFace) throws -> GenerationRequest {
    var p = GenerationParameters(prompt: c.prompt)
    p.negativePrompt = c.negative_prompt
    p.steps = c.num_inference_steps
    p.guidanceScale = c.guidance_scale
    p.width = c.width
    p.height = c.height
    p.seed = 0
    if let file = c.init_image {
      // Image-to-image: the output has the init image's size.
      p.initImage = try Image(contentsOfFile: Fixtures.url(file).path)
      p.strength = c.strength
      if let mask = c.mask_image { p.mask = try Image(contentsOfFile: Fixtures.url(mask).path) }
      (p.width, p.height) = (nil, nil)
    }
    var spec = try InstantIDSpec(folder: c.single_file == true ? instantIDSingleFile : instantID, face: face)
    spec.ipScale = c.ip_adapter_scale
    spec.identityNetScale = c.controlnet_conditioning_scale.values[0]
    spec.identityNetStart = c.control_guidance_start?.values[0] ?? 0
    spec.identityNetEnd = c.control_guidance_end?.values[0] ?? 1
    spec.enhanceFaceRegion = c.box != nil
    var request = GenerationRequest(parameters: p)
    request.instantID = spec
    if let extra = c.extra_control {
      var net = ControlNetSpec(
        model: .local(Fixtures.url("tiny-sdxl-controlnet").path), image: try Image(contentsOfFile: Fixtures.url(extra).path),
        scale: c.controlnet_conditioning_scale.values[1])
      net.start = c.control_guidance_start?.values[1] ?? 0
      net.end = c.control_guidance_end?.values[1] ?? 1
      request.controlNets = [net]
    }
    return request
  }

  func check(_ name: String, _ result: GenerationResult, latentTolerance: Float) throws {
    let golden = try SafeTensorsFile(path: Self.folder.appendingPathComponent("\(name).safetensors").path)
    let expected = try golden.tensor("latents")
    #expect(result.latents.shape == expected.shape)
    let error = Compare.relativeError(result.latents, expected)
    #expect(error <= latentTolerance, "\(name): latents relative error \(error)")
    let png = try Image(contentsOfFile: Self.folder.appendingPathComponent("\(name).png").path)
    #expect(Compare.closeFraction(result.image, png) >= 0.99, "\(name)")
  }

  /// The `given`-style face of a case.
  static func face(_ c: Case, golden: SafeTensorsFile) throws -> InstantIDFace {
    InstantIDFace.given(
      embedding: try golden.tensor("embedding").scalars(), keypoints: c.kps.map { SIMD2($0[0], $0[1]) },
      canvasWidth: c.canvas[0], canvasHeight: c.canvas[1], faceBox: c.box.map { SIMD4($0[0], $0[1], $0[2], $0[3]) })
  }

  /// `given` and `window`; `multi` adds a second ControlNet (its own image, scale and window),
  /// which reads the text while IdentityNet reads the face tokens — against the `_full` pipeline
  /// the official multi-ControlNet app runs; `img2img` against
  /// `StableDiffusionXLInstantIDImg2ImgPipeline` (strength 0.6, the init image's size);
  /// `enhance` / `enhance-multi`: the apps' `enhance_face_region` (`control_mask`) in the `_full`
  /// pipeline (the adapter's attention and IdentityNet's residuals masked), alone and with a
  /// second ControlNet (unmasked); `inpaint`: inpainting with the base UNet (strength 0.9, the init
  /// image's size), against diffusers' `StableDiffusionXLControlNetInpaintPipeline` given the
  /// repository's attention processors, face tokens and IdentityNet call (it has no inpainting
  /// pipeline of its own).
  @Test(arguments: ["given", "window", "multi", "img2img", "enhance", "enhance-multi", "inpaint"])
  func givenEmbeddingAndKeypointsMatchTheReferencePipeline(_ name: String) async throws {
    let c = try #require(Self.cases[name])
    let golden = try SafeTensorsFile(path: Self.folder.appendingPathComponent("\(name).safetensors").path)
    let embedding = try golden.tensor("embedding").scalars()
    let face = InstantIDFace.given(
      embedding: embedding, keypoints: c.kps.map { SIMD2($0[0], $0[1]) }, canvasWidth: c.canvas[0], canvasHeight: c.canvas[1],
      faceBox: c.box.map { SIMD4($0[0], $0[1], $0[2], $0[3]) })
    let result = try await Self.pipeline.generate(try Self.request(c, face: face))
    try check(name, result, latentTolerance: 1e-4)
    #expect(result.parametersText.contains("IdentityNet (\(c.controlnet_conditioning_scale.values[0] == 0.8 ? "0.8" : "1.1"))"))
    if c.box != nil {
      // The mask changes the result (else the case would prove nothing).
      var plain = try Self.request(c, face: face)
      plain.instantID?.enhanceFaceRegion = false
      let unmasked = try await Self.pipeline.generate(plain)
      #expect(Compare.relativeError(unmasked.latents, result.latents) > 1e-3)
    }
  }

  /// A kohya SDXL LoRA fused at 0.8 (`applyLoRAs`, on a pipeline of its own) against the reference
  /// pipeline with the same file fused by diffusers.
  @Test func withAFusedLoRAMatchesTheReferencePipeline() async throws {
    let c = try #require(Self.cases["lora"])
    let golden = try SafeTensorsFile(path: Self.folder.appendingPathComponent("lora.safetensors").path)
    let pipeline = try StableDiffusionPipeline(folder: Fixtures.url("tiny-sdxl"))
    let report = try pipeline.applyLoRAs(files: [(Fixtures.url(try #require(c.lora)).path, try #require(c.lora_scale))])
    #expect(report.totalFused > 0 && report.totalUnmatched == 0)
    let result = try await pipeline.generate(try Self.request(c, face: try Self.face(c, golden: golden)))
    try check("lora", result, latentTolerance: 1e-4)
    #expect(result.parametersText.contains("sdxl-kohya"), "\(result.parametersText)")
  }

  /// An SDXL single file (`sd_xl_base_1.0.safetensors` layout, its own small UNet) with InstantID
  /// files made for it, against the reference class built from what diffusers' `from_single_file`
  /// reads from the same file.
  @Test func fromASingleFileCheckpointMatchesTheReferencePipeline() async throws {
    let c = try #require(Self.cases["single-file"])
    let golden = try SafeTensorsFile(path: Self.folder.appendingPathComponent("single-file.safetensors").path)
    let pipeline = try SDXLSingleFileTests.load()
    let result = try await pipeline.generate(try Self.request(c, face: try Self.face(c, golden: golden)))
    try check("single-file", result, latentTolerance: 1e-4)
  }

  @Test func photoThroughTheNativeFaceAnalysisMatchesTheReferencePipeline() async throws {
    let c = try #require(Self.cases["photo"])
    let photo = try Image(contentsOfFile: Fixtures.url(try #require(c.photo)).path)
    let analyzer = try FaceAnalyzer(models: Fixtures.url("face/packs/tiny_faceid24").path)
    let face = InstantIDFace.photo(photo, analyzer: analyzer)
    let prepared = try face.prepare()
    let golden = try SafeTensorsFile(path: Self.folder.appendingPathComponent("photo.safetensors").path)
    #expect(prepared.keypointImage.pixels == [UInt8](try golden.rawBytes("control")), "the keypoint image differs from draw_kps")
    let reference = try golden.tensor("embedding").scalars()
    let ours = prepared.embedding.scalars()
    let dot: Float = zip(ours, reference).map { $0 * $1 }.reduce(0, +)
    let normOurs: Float = ours.map { $0 * $0 }.reduce(0, +).squareRoot()
    let normReference: Float = reference.map { $0 * $0 }.reduce(0, +).squareRoot()
    let cosine = dot / (normOurs * normReference)
    #expect(cosine >= 0.999, "embedding cosine \(cosine)")
    // Everything but the embedding exactly: insightface's embedding with the keypoints we found.
    let exact = InstantIDFace.given(
      embedding: reference, keypoints: prepared.keypoints, canvasWidth: photo.width, canvasHeight: photo.height)
    try check("photo", try await Self.pipeline.generate(try Self.request(c, face: exact)), latentTolerance: 1e-4)
    // All native: the embedding's small difference (cosine 0.99917 here) moves the latents by ~3 %.
    let native = try await Self.pipeline.generate(try Self.request(c, face: face))
    let golden2 = try golden.tensor("latents")
    let error = Compare.relativeError(native.latents, golden2)
    #expect(error <= 5e-2, "all-native latents relative error \(error)")
  }
}

/// What InstantID refuses, each with its typed error before any denoising.
@Suite struct InstantIDRefusalTests {
  static let face = InstantIDFace.given(
    embedding: [Float](repeating: 0.5, count: 24),
    keypoints: [SIMD2(22, 16), SIMD2(41, 16), SIMD2(32, 25), SIMD2(24, 35), SIMD2(40, 34)], canvasWidth: 64, canvasHeight: 48)

  static func request(_ face: InstantIDFace = face, identityNet: String? = nil) throws -> GenerationRequest {
    var p = GenerationParameters(prompt: "a portrait")
    (p.width, p.height, p.steps) = (64, 48, 1)
    var spec = try InstantIDSpec(folder: InstantIDParityTests.instantID, face: face)
    if let identityNet { spec.identityNet = .local(Fixtures.url(identityNet).path) }
    var request = GenerationRequest(parameters: p)
    request.instantID = spec
    return request
  }

  @Test func anSD15ModelIsRefused() async throws {
    let sd15 = try StableDiffusionPipeline(folder: Fixtures.url("tiny-sd15"))
    await #expect {
      _ = try await sd15.generate(try Self.request())
    } throws: { error in
      guard case PipelineError.invalidArgument(let name, let reason) = error else { return false }
      return name == "InstantID" && reason.contains("not an SDXL model")
    }
  }

  @Test func anIdentityNetThatIsNotSDXLIsRefused() async throws {
    await #expect(throws: ControlNetError.crossAttentionDimMismatch(controlNet: 20, unet: 50)) {
      _ = try await InstantIDParityTests.pipeline.generate(try Self.request(identityNet: "tiny-controlnet"))
    }
  }

  @Test func aFaceEmbeddingOfTheWrongSizeIsRefused() async throws {
    let wrong = InstantIDFace.given(
      embedding: [Float](repeating: 0.5, count: 512), keypoints: [SIMD2(1, 1), SIMD2(5, 1), SIMD2(3, 3), SIMD2(2, 5), SIMD2(4, 5)],
      canvasWidth: 64, canvasHeight: 48)
    await #expect {
      _ = try await InstantIDParityTests.pipeline.generate(try Self.request(wrong))
    } throws: { error in
      guard case IPAdapterError.badEmbeds(_, let reason) = error else { return false }
      return reason.contains("[faces, 24]")
    }
  }

  @Test func aPhotoWithoutAFaceIsRefusedByName() async throws {
    let analyzer = try FaceAnalyzer(models: Fixtures.url("face/packs/tiny_faceid24").path)
    let blank = Image(width: 96, height: 80, format: .rgb, fill: 0)
    await #expect {
      _ = try await InstantIDParityTests.pipeline.generate(try Self.request(.photo(blank, analyzer: analyzer)))
    } throws: { error in
      guard case PipelineError.invalidArgument(_, let reason) = error else { return false }
      return reason.contains("no face found in the face photo")
    }
  }

  @Test func readmeOutputSizeFollowsResizeImg() {
    // resize_img: short side 1024, long side 1280, multiples of 64.
    #expect(StableDiffusionPipeline.instantIDReadmeSize(width: 640, height: 480) == (1280, 960))
    #expect(StableDiffusionPipeline.instantIDReadmeSize(width: 500, height: 500) == (1280, 1280))
    #expect(StableDiffusionPipeline.instantIDReadmeSize(width: 200, height: 150) == (1280, 960))
    #expect(StableDiffusionPipeline.instantIDReadmeSize(width: 720, height: 1280) == (704, 1280))
  }
}

/// InstantID on the other paths of the one generation loop, and the face choices.
@Suite struct InstantIDCompositionTests {
  /// The face adapter's per-layer scales and step window reach it: scales of 0 everywhere are
  /// exactly λ = 0, 0.8 everywhere exactly `ipScale` 0.8; a window from half the steps lies
  /// between the two.
  @Test func faceAdapterLayerScalesAndWindowReachTheAdapter() async throws {
    func latents(_ edit: (inout InstantIDSpec) throws -> Void) async throws -> [Float] {
      var request = try InstantIDRefusalTests.request()
      (request.parameters.steps, request.parameters.seed) = (4, 7)
      try edit(&request.instantID!)
      return try await InstantIDParityTests.pipeline.generate(request).latents.scalars()
    }
    let plain = try await latents { $0.ipScale = 0.8 }
    let off = try await latents { $0.ipScale = 0 }
    #expect(plain != off)
    #expect(try await latents { $0.layerScales = .blocks(try IPAdapterBlockScales(json: "0")) } == off)
    #expect(try await latents { $0.layerScales = .blocks(try IPAdapterBlockScales(json: "0.8")) } == plain)
    let late = try await latents { $0.adapterWindow = try IPAdapterStepWindow(start: 0.5, end: 1) }
    #expect(late != plain && late != off)
  }

  @Test func imageToImageRunsWithTheFaceAndIdentityNet() async throws {
    var request = try InstantIDRefusalTests.request()
    request.parameters.initImage = try Image(contentsOfFile: Fixtures.url("images/init-64.png").path)
    request.parameters.strength = 0.6
    (request.parameters.width, request.parameters.height) = (nil, nil)
    request.parameters.steps = 3
    let result = try await InstantIDParityTests.pipeline.generate(request)
    #expect(result.image.width == 64 && result.image.height == 64)  // the init image's size, not resize_img's
    #expect(try result.latents.scalars().allSatisfy(\.isFinite))
    #expect(result.parametersText.contains("IdentityNet"))
  }

  @Test func aPosePhotoGivesTheKeypointsAndTheCanvas() throws {
    let analyzer = try FaceAnalyzer(models: Fixtures.url("face/packs/tiny_faceid24").path)
    let photo = try Image(contentsOfFile: Fixtures.url("face/img_a.png").path)
    let pose = try Image(contentsOfFile: Fixtures.url("face/img_b.jpg").path)
    let prepared = try InstantIDFace.photo(photo, analyzer: analyzer, pose: pose).prepare()
    let alone = try InstantIDFace.photo(photo, analyzer: analyzer).prepare()
    let poseAlone = try InstantIDFace.photo(pose, analyzer: analyzer).prepare()
    #expect(prepared.embedding.scalars() == alone.embedding.scalars())  // the identity stays the photo's
    #expect(prepared.keypoints == poseAlone.keypoints)
    #expect(prepared.keypointImage.width == pose.width && prepared.keypointImage.height == pose.height)
  }

  @Test func faceIndexCountsFromTheLargest() throws {
    let analyzer = try FaceAnalyzer(models: Fixtures.url("face/packs/tiny_faceid24").path)
    let photo = try Image(contentsOfFile: Fixtures.url("face/img_a.png").path)
    let faces = try analyzer.analyze(photo)
    try #require(faces.count == 2)
    func area(_ b: [Float]) -> Float { (b[2] - b[0]) * (b[3] - b[1]) }
    let bySize = faces.sorted { area($0.box) > area($1.box) }
    #expect(try InstantIDFace.photo(photo, analyzer: analyzer).prepare().keypoints == bySize[0].keypoints)
    #expect(try InstantIDFace.photo(photo, analyzer: analyzer, faceIndex: 1).prepare().keypoints == bySize[1].keypoints)
    #expect(throws: PipelineError.self) { try InstantIDFace.photo(photo, analyzer: analyzer, faceIndex: 2).prepare() }
  }
}

/// The region mask of an image prompt is exclusive with its per-image masks.
@Suite struct ImagePromptRegionMaskTests {
  @Test func regionMaskAndPerImageMasksTogetherAreRefused() async throws {
    var spec = ImagePromptSpec(adapter: .local(Fixtures.url("instantid/tiny-instantid/ip-adapter.bin").path), scale: 0.8)
    spec.faceEmbeddings = try Tensor(shape: [1, 24], floats: [Float](repeating: 0.5, count: 24))
    spec.masks = [Image(width: 64, height: 64, format: .gray, fill: 255)]
    spec.regionMask = Tensor.zeros([64, 64])
    var p = GenerationParameters(prompt: "a portrait")
    (p.width, p.height, p.steps) = (64, 64, 1)
    var request = GenerationRequest(parameters: p)
    request.imagePrompts = [spec]
    await #expect {
      _ = try await InstantIDParityTests.pipeline.generate(request)
    } throws: { error in
      guard case IPAdapterError.badInput(let reason) = error else { return false }
      return reason.contains("not both")
    }
  }
}
