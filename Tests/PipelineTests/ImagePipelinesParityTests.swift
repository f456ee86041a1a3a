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

/// Image-to-image, inpainting (9- and 4-channel UNets) and ControlNet (single, double, guess mode
/// with a window), each also with an IP-Adapter, against diffusers
/// (`tools/reference/gen_sd15_pipelines.py` → `Fixtures/goldens/pipelines/`).
/// Pass criteria as text-to-image: PNG within 1/255 on ≥ 99 % of values; final latents relative
/// error ≤ 1e-4.
@Suite struct ImagePipelinesParityTests {
  struct Case: Decodable {
    var images: [String: String]?
    var controls: [String]?
    var strength: Double?
    var mask_blur: Double?
    var num_inference_steps: Int
    var guidance_scale: Float
    var eta: Float?
    var scheduler: String
    var width: Int?
    var height: Int?
    var resize_to: [Int]?
    var model: String?
    var controlnet_conditioning_scale: ScaleList?
    var guess_mode: Bool?
    var control_guidance_start: Double?
    var control_guidance_end: Double?
    var ip_adapter: IPCase?
  }

  struct IPCase: Decodable {
    var file: String
    var scale: Float
    var image: String
  }

  enum ScaleList: Decodable {
    case one(Float), many([Float])
    init(from decoder: Decoder) throws {
      let c = try decoder.singleValueContainer()
      if let v = try? c.decode(Float.self) { self = .one(v) } else { self = .many(try c.decode([Float].self)) }
    }
    var values: [Float] {
      switch self {
      case .one(let v): [v]
      case .many(let v): v
      }
    }
  }

  static let goldens = Fixtures.url("goldens/pipelines")
  static let cases: [String: Case] = {
    let data = try! Data(contentsOf: goldens.appendingPathComponent("cases.json"))
    return try! JSONDecoder().decode([String: Case].self, from: data)
  }()

  static func image(_ name: String) throws -> Image { try Image(contentsOfFile: Fixtures.url("images/\(name)").path) }

  func run(_ name: String) throws {
    let c = try #require(Self.cases[name], "no golden case \(name)")
    let pipe = try StableDiffusionPipeline(folder: Fixtures.url(c.model ?? "tiny-sd15"))
    var p = GenerationParameters(prompt: "a red cube")
    p.negativePrompt = "blurry, low quality"
    p.steps = c.num_inference_steps
    p.guidanceScale = c.guidance_scale
    p.seed = 0
    p.scheduler = try SchedulerKind(cliName: c.scheduler)
    p.eta = c.eta
    p.width = c.width ?? c.resize_to?[0]
    p.height = c.height ?? c.resize_to?[1]
    p.strength = c.strength
    if let file = c.images?["image"] { p.initImage = try Self.image(file) }
    if let file = c.images?["mask_image"] { p.mask = try Self.image(file) }
    p.maskBlur = c.mask_blur ?? 0
    var prompts: [ImagePrompt] = []
    if let ip = c.ip_adapter {
      let adapter = try IPAdapter(path: Fixtures.url("tiny-ip-adapter/models/\(ip.file)").path, unet: pipe.unet)
      let encoder = try ImagePromptEncoder(
        folder: Fixtures.url("tiny-ip-adapter/models/image_encoder"), processorConfig: pipe.featureExtractorConfig)
      let embeds = try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [try Self.image(ip.image)])
      prompts.append(ImagePrompt(adapter: adapter, embeds: embeds, scale: ip.scale))
    }
    var units: [ControlNetUnit] = []
    if let controls = c.controls {
      let folders = ["tiny-controlnet", "tiny-controlnet-b"]
      let scales = c.controlnet_conditioning_scale?.values ?? [1]
      for (i, file) in controls.enumerated() {
        let model = try ModelLoader.controlNet(Fixtures.url(folders[i]))
        units.append(
          ControlNetUnit(
            model: model, name: folders[i], image: try Self.image(file), scale: scales.count == 1 ? scales[0] : scales[i],
            guessMode: c.guess_mode ?? false, start: c.control_guidance_start ?? 0, end: c.control_guidance_end ?? 1))
      }
    }
    let result = try pipe.generate(p, imagePrompts: prompts, controlNets: units)
    let reference = try SafeTensorsFile(path: Self.goldens.appendingPathComponent("\(name).safetensors").path)
    let expected = try reference.tensor("latents")
    #expect(result.latents.shape == expected.shape)
    #expect(Compare.relativeError(result.latents, expected) <= 1e-4)
    let png = try Image(contentsOfFile: Self.goldens.appendingPathComponent("\(name).png").path)
    #expect(result.image.width == png.width && result.image.height == png.height)
    #expect(Compare.closeFraction(result.image, png) >= 0.99)
  }

  @Test(arguments: [
    "img2img-ddim-0.5", "img2img-ddim-0.8", "img2img-euler-0.5", "img2img-euler-0.8", "img2img-euler-a-resized",
    "img2img-pndm-ip",
  ])
  func imageToImageMatchesDiffusers(name: String) throws { try run(name) }

  @Test(arguments: [
    "inpaint9-ddim-1.0", "inpaint9-ddim-0.6", "inpaint4-euler-1.0", "inpaint4-pndm-0.75", "inpaint4-ddim-mask-resized", "inpaint4-ddim-mask-blur",
    "inpaint9-ddim-ip",
  ])
  func inpaintingMatchesDiffusers(name: String) throws { try run(name) }

  @Test(arguments: ["controlnet-single", "controlnet-double", "controlnet-guess-window", "controlnet-single-ip"])
  func controlNetMatchesDiffusers(name: String) throws { try run(name) }

  /// Few-step sampling as LCM-LoRA / TCD-LoRA users run it: `LCMScheduler` at guidance 1 (one UNet
  /// batch) with an IP-Adapter, `TCDScheduler` with eta 0.3 (seeded re-noising every step),
  /// LCM image-to-image at guidance 1.5.
  @Test(arguments: ["lcm-ip-guidance1", "tcd-eta0.3-guidance1", "img2img-lcm-0.6"])
  func fewStepSamplingMatchesDiffusers(name: String) throws { try run(name) }

  /// `eta` is TCD's: any other scheduler refuses a non-zero one, and TCD one outside [0, 1].
  @Test func etaIsRefusedWhereItDoesNotApply() throws {
    let pipe = try StableDiffusionPipeline(folder: Fixtures.url("tiny-sd15"))
    var p = GenerationParameters(prompt: "a red cube")
    (p.steps, p.width, p.height) = (2, 64, 64)
    for (kind, eta) in [(SchedulerKind.ddim, Float(0.3)), (.lcm, 0.5), (.tcd, 1.5), (.tcd, -0.1)] {
      p.scheduler = kind
      p.eta = eta
      #expect(throws: SchedulerError.self, "\(kind) eta \(eta)") { _ = try pipe.generate(p) }
    }
  }
}
