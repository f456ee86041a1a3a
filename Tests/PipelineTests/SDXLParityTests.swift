import Foundation
import IPAdapter
import Imaging
import Models
import Pipelines
import Schedulers
import TensorCore
import Testing
import TestSupport
import Weights

/// SDXL against diffusers 0.42.1 on the tiny SDXL pipeline (`tools/reference/gen_sdxl.py` →
/// `Fixtures/tiny-sdxl`, `Fixtures/goldens/sdxl*`): two text encoders of different widths (20 and
/// 30, projection 14), an SDXL-shaped UNet (DownBlock2D first, 1/2/3 transformer layers per
/// block, linear projections, text_time embedding of width 8) and a 64×48 output.
/// Tolerances as SD1.5: modules and final latents relative error ≤ 1e-4; PNG within 1/255 on ≥ 99 %.
@Suite struct SDXLParityTests {
  static let folder = Fixtures.url("tiny-sdxl")
  static let goldens = Fixtures.url("goldens/sdxl")
  static let modules = try! Fixtures.archive("goldens/sdxl-modules.safetensors")

  struct Case: Decodable {
    var num_inference_steps: Int
    var guidance_scale: Float?
    var scheduler: String?
    var width: Int?
    var height: Int?
    var negative_prompt: String?
    var prompt_2: String?
    var negative_prompt_2: String?
    var original_size: [Int]?
    var target_size: [Int]?
    var crops_coords_top_left: [Int]?
    var negative_original_size: [Int]?
    var negative_target_size: [Int]?
    var negative_crops_coords_top_left: [Int]?
    var guidance_rescale: Float?
    var clip_skip: Int?
    var denoising_end: Double?
    var image: String?
    var strength: Double?
    var ip_adapter_image: String?
    var ip_adapter: IPCase?
    var model: String?
    var mask_image: String?
    var aesthetic_score: Float?
    var negative_aesthetic_score: Float?
    var denoising_start: Double?
    var handoff: String?
    var controlnet_conditioning_scale: Float?
    var guess_mode: Bool?
    var control_guidance_start: Double?
    var control_guidance_end: Double?
  }

  struct IPCase: Decodable {
    var file: String
    /// A number, or a diffusers block dictionary (decoded as nil; the test gives the preset).
    var scale: Float?
    var encoder: String

    enum CodingKeys: CodingKey { case file, scale, encoder }
    init(from decoder: Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      file = try c.decode(String.self, forKey: .file)
      encoder = try c.decode(String.self, forKey: .encoder)
      scale = try? c.decode(Float.self, forKey: .scale)
    }
  }

  static let cases: [String: Case] = {
    let data = try! Data(contentsOf: goldens.appendingPathComponent("cases.json"))
    return try! JSONDecoder().decode([String: Case].self, from: data)
  }()

  static let pipeline = try! StableDiffusionPipeline(folder: folder)

  static func size(_ v: [Int]?) -> PixelSize? { v.map { PixelSize(width: $0[1], height: $0[0]) } }  // diffusers: (h, w)
  static func crop(_ v: [Int]?) -> CropOffset? { v.map { CropOffset(top: $0[0], left: $0[1]) } }
  static func image(_ name: String) throws -> Image { try Image(contentsOfFile: Fixtures.url("images/\(name)").path) }

  static func parameters(_ c: Case) throws -> GenerationParameters {
    var p = GenerationParameters(prompt: "a red cube")
    p.negativePrompt = c.negative_prompt
    p.prompt2 = c.prompt_2
    p.negativePrompt2 = c.negative_prompt_2
    p.steps = c.num_inference_steps
    p.guidanceScale = c.guidance_scale
    p.seed = 0
    p.scheduler = try c.scheduler.map { try SchedulerKind(cliName: $0) }
    p.width = c.width
    p.height = c.height
    p.originalSize = size(c.original_size)
    p.targetSize = size(c.target_size)
    p.cropTopLeft = crop(c.crops_coords_top_left)
    p.negativeOriginalSize = size(c.negative_original_size)
    p.negativeTargetSize = size(c.negative_target_size)
    p.negativeCropTopLeft = crop(c.negative_crops_coords_top_left)
    p.guidanceRescale = c.guidance_rescale ?? 0
    p.clipSkip = c.clip_skip ?? 0
    p.denoisingEnd = c.denoising_end
    p.strength = c.strength
    if let file = c.image { p.initImage = try image(file) }
    if let file = c.mask_image { p.mask = try image(file) }
    p.aestheticScore = c.aesthetic_score
    p.negativeAestheticScore = c.negative_aesthetic_score
    p.denoisingStart = c.denoising_start
    if let handoff = c.handoff {
      p.initLatents = try SafeTensorsFile(path: goldens.appendingPathComponent("handoff-\(handoff).safetensors").path)
        .tensor("latents").toFloat32()
    }
    return p
  }

  static let pipelines = PipelineCache()

  /// Pipelines other than tiny-sdxl, loaded once per folder.
  final class PipelineCache: @unchecked Sendable {
    private var loaded: [String: StableDiffusionPipeline] = [:]
    private let lock = NSLock()
    func callAsFunction(_ name: String) throws -> StableDiffusionPipeline {
      try lock.withLock {
        if let p = loaded[name] { return p }
        let p = try StableDiffusionPipeline(folder: Fixtures.url(name))
        loaded[name] = p
        return p
      }
    }
  }

  func run(_ name: String, layerScales: IPAdapterLayerScales? = nil) throws {
    let c = try #require(Self.cases[name], "no golden case \(name)")
    let pipe = try c.model.map { $0 == "tiny-sdxl" ? Self.pipeline : try Self.pipelines($0) } ?? Self.pipeline
    try run(name, c, pipe: pipe, layerScales: layerScales)
  }

  func run(_ name: String, _ c: Case, pipe: StableDiffusionPipeline, layerScales: IPAdapterLayerScales?) throws {
    var prompts: [ImagePrompt] = []
    if let ip = c.ip_adapter {
      let root = Fixtures.url("tiny-ip-adapter")
      let adapter = try IPAdapter(path: root.appendingPathComponent(ip.file).path, unet: pipe.unet)
      let encoderFolder = ip.encoder.contains("/")
        ? root.appendingPathComponent(ip.encoder) : root.appendingPathComponent("sdxl_models/\(ip.encoder)")
      let encoder = try ImagePromptEncoder(folder: encoderFolder, processorConfig: nil)
      let embeds = try ImagePrompt.embeds(
        adapter: adapter, encoder: encoder, images: [try Self.image(try #require(c.ip_adapter_image))])
      var prompt = ImagePrompt(adapter: adapter, embeds: embeds, scale: ip.scale ?? 1)
      prompt.layerScales = layerScales
      prompts.append(prompt)
    }
    var units: [ControlNetUnit] = []
    if c.controlnet_conditioning_scale != nil, let control = c.image {
      units.append(
        ControlNetUnit(
          model: try ModelLoader.controlNet(Fixtures.url("tiny-sdxl-controlnet")), name: "tiny-sdxl-controlnet",
          image: try Self.image(control), scale: c.controlnet_conditioning_scale ?? 1, guessMode: c.guess_mode ?? false,
          start: c.control_guidance_start ?? 0, end: c.control_guidance_end ?? 1))
    }
    var p = try Self.parameters(c)
    if !units.isEmpty { p.initImage = nil }  // diffusers' `image` is the control image there
    let result = try pipe.generate(p, imagePrompts: prompts, controlNets: units)
    let expected = try SafeTensorsFile(path: Self.goldens.appendingPathComponent("\(name).safetensors").path)
      .tensor("latents")
    #expect(result.latents.shape == expected.shape)
    #expect(Compare.relativeError(result.latents, expected) <= 1e-4, "\(name)")
    let png = try Image(contentsOfFile: Self.goldens.appendingPathComponent("\(name).png").path)
    #expect(result.image.width == png.width && result.image.height == png.height)
    #expect(Compare.closeFraction(result.image, png) >= 0.99, "\(name)")
  }

  @Test func secondTextEncoderMatchesTransformersWithProjection() throws {
    // Own instances: the shared pipeline may be generating on another test's thread.
    let encoder = try ModelLoader.textEncoder(Self.folder.appendingPathComponent("text_encoder_2"), withProjection: true)
    let ids = try Self.modules.int64Values("te2.ids").map { Int($0) }
    let out = try encoder([ids], keepHiddenStates: true)
    let embeds = try encoder.textEmbeds(lastHiddenState: out.lastHiddenState, ids: [ids])
    #expect(Compare.relativeError(embeds, try Self.modules.tensor("te2.text_embeds")) <= 1e-4)
    #expect(Compare.relativeError(out.lastHiddenState, try Self.modules.tensor("te2.last_hidden_state")) <= 1e-4)
    let penultimate = out.hiddenStates[out.hiddenStates.count - 2]
    #expect(Compare.relativeError(penultimate, try Self.modules.tensor("te2.hidden_states_-2")) <= 1e-4)
  }

  @Test(arguments: ["basic", "prompt2", "zeros", "empty-negative", "clip-skip"])
  func promptEncodingMatchesEncodePrompt(name: String) throws {
    var p = GenerationParameters(prompt: "a red cube")
    p.guidanceScale = 5
    switch name {
    case "basic": p.negativePrompt = "blurry, low quality"
    case "prompt2":
      p.negativePrompt = "blurry, low quality"
      p.prompt2 = "a blue sphere"
      p.negativePrompt2 = "ugly"
    case "zeros": break
    case "empty-negative": p.negativePrompt = ""
    default:
      p.negativePrompt = "blurry, low quality"
      p.clipSkip = 1
    }
    let text = try Self.pipeline.encodeText(for: p)
    let m = Self.modules
    let embeds = try Ops.concatRows([
      try m.tensor("encode.\(name).negative_prompt_embeds"), try m.tensor("encode.\(name).prompt_embeds"),
    ])
    let pooled = try Ops.concatRows([try m.tensor("encode.\(name).negative_pooled"), try m.tensor("encode.\(name).pooled")])
    #expect(text.embeddings.shape == [2, 77, 50])
    #expect(Compare.relativeError(text.embeddings, embeds) <= 1e-4)
    #expect(Compare.relativeError(try #require(text.pooled), pooled) <= 1e-4)
    if name == "zeros" {
      #expect(text.embeddings.slice(rows: 0..<1).scalars().allSatisfy { $0 == 0 })
      #expect(try #require(text.pooled).slice(rows: 0..<1).scalars().allSatisfy { $0 == 0 })
    }
  }

  @Test func unetWithTextTimeEmbeddingMatchesDiffusers() throws {
    let m = Self.modules
    let unet = try ModelLoader.unet(Self.folder.appendingPathComponent("unet"))
    let timeIds = try m.tensor("unet.time_ids").scalars()
    let conditioning = try unet.makeConditioning(
      encoderHiddenStates: try m.tensor("unet.context"),
      textTime: TextTimeConditions(
        textEmbeds: try m.tensor("unet.text_embeds"), timeIds: [Array(timeIds[0..<6]), Array(timeIds[6..<12])]))
    let out = try unet(try m.tensor("unet.sample").nhwc(), timestep: 500, conditioning: conditioning)
    let error = Compare.relativeError(try out.nchw(), try m.tensor("unet.out_t500"))
    #expect(error <= 1e-4, "relative error \(error)")
  }

  @Test(arguments: ["t2i-default", "t2i-ddim", "t2i-pndm", "t2i-euler-a", "t2i-dpmpp-2m", "t2i-dpmpp-2m-karras"])
  func textToImageMatchesDiffusersWithEverySampler(name: String) throws { try run(name) }

  @Test(arguments: [
    "t2i-prompt2", "t2i-force-zeros", "t2i-empty-negative", "t2i-micro", "t2i-micro-positive-only", "t2i-rescale",
    "t2i-clip-skip", "t2i-default-size", "t2i-denoising-end",
  ])
  func textToImageOptionsMatchDiffusers(name: String) throws { try run(name) }

  @Test(arguments: ["img2img-default-0.6", "img2img-ddim-0.3"])
  func imageToImageMatchesDiffusers(name: String) throws { try run(name) }

  @Test(arguments: ["ip-ip-adapter_sdxl", "ip-ip-adapter_sdxl_vit-h", "ip-ip-adapter-plus_sdxl_vit-h", "img2img-ip-plus"])
  func imagePromptsMatchDiffusers(name: String) throws { try run(name) }
}

/// Loading the files SDXL users have: `variant: "fp16"` picks `*.fp16.safetensors` over the plain
/// files (diffusers' `variant="fp16"`), and SDXL folders missing a component are refused by name.
@Suite struct SDXLLoadingTests {
  /// A copy of tiny-sdxl (symlinks) whose UNet folder has a damaged plain file and the real
  /// weights as the `fp16` variant.
  static func variantFolder() throws -> URL {
    let fm = FileManager.default
    let src = SDXLParityTests.folder
    let copy = try Fixtures.linkedCopy(of: "tiny-sdxl", excluding: ["unet"])
    try fm.createDirectory(at: copy.appendingPathComponent("unet"), withIntermediateDirectories: true)
    try fm.copyItem(at: src.appendingPathComponent("unet/config.json"), to: copy.appendingPathComponent("unet/config.json"))
    try fm.copyItem(
      at: src.appendingPathComponent("unet/diffusion_pytorch_model.safetensors"),
      to: copy.appendingPathComponent("unet/diffusion_pytorch_model.fp16.safetensors"))
    try Data("not a safetensors file".utf8).write(to: copy.appendingPathComponent("unet/diffusion_pytorch_model.safetensors"))
    return copy
  }

  @Test func fp16VariantIsPreferredOverThePlainFiles() throws {
    let folder = try Self.variantFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    #expect(throws: (any Error).self) { try StableDiffusionPipeline(folder: folder) }
    #expect(throws: ModelFileError.badVariant("../fp16")) { try StableDiffusionPipeline(folder: folder, variant: "../fp16") }
    let pipe = try StableDiffusionPipeline(folder: folder, variant: "fp16")
    var p = try SDXLParityTests.parameters(try #require(SDXLParityTests.cases["t2i-default"]))
    p.steps = 4
    let result = try pipe.generate(p)
    let expected = try SafeTensorsFile(path: SDXLParityTests.goldens.appendingPathComponent("t2i-default.safetensors").path)
      .tensor("latents")
    #expect(Compare.relativeError(result.latents, expected) <= 1e-4)
  }

  @Test(arguments: ["tokenizer_2", "text_encoder_2"])
  func missingSecondEncoderComponentIsNamed(component: String) throws {
    let copy = try Fixtures.linkedCopy(of: "tiny-sdxl", excluding: [component])
    defer { try? FileManager.default.removeItem(at: copy) }
    #expect(throws: PipelineError.missingComponent(folder: copy.path, component: component)) {
      try StableDiffusionPipeline(folder: copy)
    }
  }

  @Test func sdxlOptionsOnAnSD15ModelAreRefused() throws {
    let pipe = try StableDiffusionPipeline(folder: Fixtures.url("tiny-sd15"))
    var p = GenerationParameters(prompt: "x")
    p.steps = 1
    p.originalSize = PixelSize(width: 64, height: 64)
    #expect(throws: PipelineError.invalidArgument(name: "original size", reason: "is an SDXL option; tiny-sd15 is not an SDXL model")) {
      try pipe.generate(p)
    }
  }
}
