import Foundation
import IPAdapter
import Imaging
import Models
import Pipelines
import TensorCore
import Testing
import TestSupport
import Weights

/// SDXL inpainting, the refiner, the base → refiner hand-off, ControlNet and InstantStyle block
/// presets against diffusers 0.42.1 (`tools/reference/gen_sdxl.py`): `tiny-sdxl` with its
/// 4-channel UNet, `tiny-sdxl-inpainting` (a 9-channel UNet), `tiny-sdxl-refiner` (no first text
/// encoder, 5 time ids with aesthetic scores, UNet over the second encoder's width only) and
/// `tiny-sdxl-controlnet` (a text_time ControlNet). Tolerances as SD1.5: final latents relative
/// error ≤ 1e-4; PNG within 1/255 on ≥ 99 %.
@Suite struct SDXLPipelinesParityTests {
  let parity = SDXLParityTests()

  @Test(arguments: ["inpaint-default", "inpaint-0.6-ddim", "inpaint-denoising-end"])
  func inpaintingWithTheBaseUNetMatchesDiffusers(name: String) throws { try parity.run(name) }

  @Test(arguments: ["inpaint9-default", "inpaint9-0.7-rescale"])
  func inpaintingWithANineChannelUNetMatchesDiffusers(name: String) throws { try parity.run(name) }

  @Test(arguments: ["refiner-defaults", "refiner-aesthetic"])
  func refinerWithAestheticScoresMatchesDiffusers(name: String) throws { try parity.run(name) }

  /// The base stops at `denoising_end` 0.7; its latents equal diffusers' `output_type="latent"`
  /// result, and the refiner continues from diffusers' latents at `denoising_start` 0.7.
  @Test func baseToRefinerHandOffMatchesDiffusers() throws {
    let c = try #require(SDXLParityTests.cases["handoff-refiner"])
    var base = try SDXLParityTests.parameters(c)
    base.initLatents = nil
    base.denoisingStart = nil
    base.denoisingEnd = 0.7
    let first = try SDXLParityTests.pipeline.generate(base)
    let expected = try SafeTensorsFile(path: SDXLParityTests.goldens.appendingPathComponent("handoff-base.safetensors").path)
      .tensor("latents")
    #expect(Compare.relativeError(first.latents, expected) <= 1e-4)
    try parity.run("handoff-refiner")
  }

  @Test(arguments: ["controlnet", "controlnet-guess-window", "controlnet-ip"])
  func controlNetMatchesDiffusers(name: String) throws { try parity.run(name) }

  /// A VAE config with `latents_mean`/`latents_std`: decoding and image-to-image encoding
  /// normalise per channel as diffusers' SDXL pipelines do.
  @Test(arguments: ["latent-stats-t2i", "latent-stats-img2img"])
  func vaeLatentStatisticsMatchDiffusers(name: String) throws { try parity.run(name) }

  @Test func styleBlockPresetMatchesDiffusersBlockDictionary() throws {
    try parity.run("ip-style", layerScales: .preset(.style, scale: 0.7))
  }

  @Test func styleAndCompositionPresetMatchesDiffusersBlockDictionary() throws {
    try parity.run("ip-style-and-composition", layerScales: .preset(.styleAndComposition, scale: 0.7))
  }
}

/// SDXL's VAE has `force_upcast` because fp16 activations overflow in it; bf16 compute keeps fp32
/// activations (bf16 only in the weights and products), so no upcast is needed and the image
/// stays finite and close to the fp32 one.
@Suite struct SDXLPrecisionTests {
  @Test func bf16ComputeGivesAFiniteImageNearTheFP32One() throws {
    var p = try SDXLParityTests.parameters(try #require(SDXLParityTests.cases["t2i-default"]))
    p.allowNaN = false
    let bf16 = try StableDiffusionPipeline(folder: SDXLParityTests.folder, precision: .bfloat16).generate(p)
    let fp32 = try SDXLParityTests.pipeline.generate(p)
    #expect(try bf16.latents.scalars().allSatisfy(\.isFinite))
    let error = Compare.relativeError(bf16.latents, fp32.latents)
    #expect(error < 0.05, "bf16 vs fp32 latents relative error \(error)")
    #expect(Set(bf16.image.pixels).count > 16, "the image is not blank")
  }
}

/// Refused SDXL combinations: one typed error naming the flag or file.
@Suite struct SDXLPipelineErrorTests {
  static var refiner: StableDiffusionPipeline { get throws { try SDXLParityTests.pipelines("tiny-sdxl-refiner") } }

  @Test func refinerFolderLoadsWithoutTheFirstTextEncoder() throws {
    let pipe = try Self.refiner
    #expect(pipe.tokenizer == nil && pipe.textEncoder == nil)
    #expect(pipe.isSDXL && pipe.requiresAestheticsScore)
  }

  @Test func refinerWithoutAnInitImageIsRefused() throws {
    var p = GenerationParameters(prompt: "x")
    p.steps = 2
    #expect(
      throws: PipelineError.invalidArgument(
        name: "initImage", reason: "tiny-sdxl-refiner is an SDXL refiner (image-to-image only): give an init image or init latents")
    ) { try Self.refiner.generate(p) }
  }

  @Test func promptTwoOnARefinerIsRefused() throws {
    var p = GenerationParameters(prompt: "x")
    p.initImage = try SDXLParityTests.image("init-64.png")
    p.prompt2 = "y"
    #expect(
      throws: PipelineError.invalidArgument(
        name: "prompt 2", reason: "tiny-sdxl-refiner has only one text encoder (a refiner): its prompt is the prompt")
    ) { try Self.refiner.generate(p) }
  }

  @Test func aestheticScoreOnTheBaseModelIsRefused() throws {
    var p = GenerationParameters(prompt: "x")
    p.aestheticScore = 7
    #expect(
      throws: PipelineError.invalidArgument(
        name: "aesthetic score", reason: "only conditions an SDXL refiner (requires_aesthetics_score); tiny-sdxl does not use it")
    ) { try SDXLParityTests.pipeline.generate(p) }
  }

  @Test func denoisingStartNeedsAnImageAndMustPrecedeTheEnd() throws {
    var p = GenerationParameters(prompt: "x")
    p.denoisingStart = 0.5
    #expect(
      throws: PipelineError.invalidArgument(
        name: "denoising start", reason: "continues an image-to-image run: give an init image or init latents")
    ) { try SDXLParityTests.pipeline.generate(p) }
    p.initImage = try SDXLParityTests.image("init-64.png")
    p.denoisingEnd = 0.4
    #expect(
      throws: PipelineError.invalidArgument(name: "denoising start", reason: "0.5 must be smaller than denoising end 0.4")
    ) { try SDXLParityTests.pipeline.generate(p) }
  }

  @Test func initLatentsOfTheWrongShapeAreRefused() throws {
    var p = GenerationParameters(prompt: "x")
    p.initLatents = Tensor.zeros([1, 3, 6, 8])
    #expect(
      throws: PipelineError.invalidArgument(name: "init latents", reason: "shape [1, 3, 6, 8] is not [1, 4, H/8, W/8]")
    ) { try SDXLParityTests.pipeline.generate(p) }
  }

  @Test func sd15ControlNetWithAnSDXLModelIsRefused() throws {
    let unit = ControlNetUnit(
      model: try ModelLoader.controlNet(Fixtures.url("tiny-controlnet")), name: "tiny-controlnet",
      image: try SDXLParityTests.image("control-64.png"))
    var p = GenerationParameters(prompt: "x")
    p.steps = 1
    #expect(throws: ControlNetError.crossAttentionDimMismatch(controlNet: 20, unet: 50)) {
      try SDXLParityTests.pipeline.generate(p, controlNets: [unit])
    }
  }

  @Test func sdxlControlNetWithAnSD15ModelIsRefused() throws {
    let unit = ControlNetUnit(
      model: try ModelLoader.controlNet(Fixtures.url("tiny-sdxl-controlnet")), name: "tiny-sdxl-controlnet",
      image: try SDXLParityTests.image("control-64.png"))
    var p = GenerationParameters(prompt: "x")
    p.steps = 1
    #expect(throws: ControlNetError.crossAttentionDimMismatch(controlNet: 50, unet: 20)) {
      try StableDiffusionPipeline(folder: Fixtures.url("tiny-sd15")).generate(p, controlNets: [unit])
    }
  }
}
