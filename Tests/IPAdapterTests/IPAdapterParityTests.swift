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

/// Shared fixtures: the tiny SD1.5 pipeline, the tiny h94-style adapter folder, reference images.
enum IPFixtures {
  static let pipelineURL = Fixtures.url("tiny-sd15")
  static let models = Fixtures.url("tiny-ip-adapter/models")
  static func adapter(_ name: String) -> String { models.appendingPathComponent(name).path }
  static let encoderURL = Fixtures.url("tiny-ip-adapter/models/image_encoder")
  static let bigGEncoderURL = Fixtures.url("tiny-ip-adapter/sdxl_models/image_encoder")
  static func image(_ name: String) throws -> Image { try Image(contentsOfFile: Fixtures.url("images/\(name)").path) }
  static func goldens() throws -> SafeTensorsFile { try Fixtures.archive("goldens/ip-adapter-modules.safetensors") }

  static func pipeline() throws -> StableDiffusionPipeline { try StableDiffusionPipeline(folder: pipelineURL) }

  static func encoder(_ pipe: StableDiffusionPipeline, url: URL = encoderURL) throws -> ImagePromptEncoder {
    try ImagePromptEncoder(folder: url, processorConfig: pipe.featureExtractorConfig)
  }

  /// The generation all end-to-end goldens use (diffusers: 4 steps, seed 0, guidance 7.5).
  static var parameters: GenerationParameters {
    var p = GenerationParameters(prompt: "a red cube")
    p.negativePrompt = "blurry, low quality"
    p.steps = 4
    p.seed = 0
    return p
  }

}

/// Parity with diffusers for every SD1.5 variant (`tools/reference/gen_ip_adapter.py`).
/// Tolerances: encoder and projections relative error ≤ 1e-5; UNet with adapter ≤ 1e-5;
/// end to end as text-to-image (PNG within 1/255 on ≥ 99 %, latents ≤ 1e-4).
@Suite struct IPAdapterParityTests {
  @Test func imageEncoderMatchesTransformers() throws {
    let pipe = try IPFixtures.pipeline()
    let encoder = try IPFixtures.encoder(pipe)
    let g = try IPFixtures.goldens()
    let image = try IPFixtures.image("reference.png")
    let embeds = try encoder.features([image], kind: .imageEmbeds)
    #expect(Compare.relativeError(embeds, try g.tensor("encoder.image_embeds")) <= 1e-5)
    let hidden = try encoder.features([image], kind: .penultimateHiddenState)
    #expect(hidden.shape == [1, 257, 40])
    #expect(Compare.relativeError(hidden, try g.tensor("encoder.hidden_states_-2")) <= 1e-5)
    let zero = try encoder.unconditionalFeatures(count: 1, kind: .penultimateHiddenState)
    #expect(Compare.relativeError(zero, try g.tensor("encoder.zero_hidden_states_-2")) <= 1e-5)
  }

  @Test(arguments: ["ip-adapter_sd15", "ip-adapter-plus_sd15", "ip-adapter-full-face_sd15"])
  func projectedTokensMatchDiffusers(name: String) throws {
    let pipe = try IPFixtures.pipeline()
    let adapter = try IPAdapter(path: IPFixtures.adapter("\(name).safetensors"), unet: pipe.unet)
    let embeds = try ImagePrompt.embeds(
      adapter: adapter, encoder: try IPFixtures.encoder(pipe), images: [try IPFixtures.image("reference.png")])
    let g = try IPFixtures.goldens()
    #expect(Compare.relativeError(embeds.conditional, try g.tensor("\(name).tokens_cond")) <= 1e-5)
    #expect(Compare.relativeError(embeds.unconditional, try g.tensor("\(name).tokens_uncond")) <= 1e-5)
  }

  @Test(arguments: ["ip-adapter_sd15", "ip-adapter-plus_sd15", "ip-adapter-full-face_sd15"])
  func unetWithAdapterMatchesDiffusers(name: String) throws {
    let pipe = try IPFixtures.pipeline()
    let adapter = try IPAdapter(path: IPFixtures.adapter("\(name).safetensors"), unet: pipe.unet)
    let embeds = try ImagePrompt.embeds(
      adapter: adapter, encoder: try IPFixtures.encoder(pipe), images: [try IPFixtures.image("reference.png")])
    let g = try IPFixtures.goldens()
    var conditioning = try pipe.unet.makeConditioning(encoderHiddenStates: try g.tensor("unet.context"))
    // The golden was made after `set_ip_adapter_scale(0.6)`.
    try ImagePrompt(adapter: adapter, embeds: embeds, scale: 0.6).apply(to: &conditioning)
    let out = try pipe.unet(try g.tensor("unet.sample").nhwc(), timestep: 500, conditioning: conditioning)
    #expect(Compare.relativeError(out, try g.tensor("\(name).unet_out_t500").nhwc()) <= 1e-5)
  }

  func endToEnd(_ prompts: [ImagePrompt], golden: String) throws {
    let pipe = try IPFixtures.pipeline()
    let result = try pipe.generate(IPFixtures.parameters, imagePrompts: prompts)
    let dir = Fixtures.url("goldens/ip-adapter-e2e")
    let latents = try SafeTensorsFile(path: dir.appendingPathComponent("\(golden).safetensors").path).tensor("latents")
    #expect(Compare.relativeError(result.latents, latents) <= 1e-4)
    let png = try Image(contentsOfFile: dir.appendingPathComponent("\(golden).png").path)
    #expect(Compare.closeFraction(result.image, png) >= 0.99)
  }

  @Test(arguments: ["ip-adapter_sd15", "ip-adapter-plus_sd15", "ip-adapter-full-face_sd15"])
  func generationMatchesDiffusers(name: String) throws {
    let pipe = try IPFixtures.pipeline()
    let adapter = try IPAdapter(path: IPFixtures.adapter("\(name).safetensors"), unet: pipe.unet)
    let embeds = try ImagePrompt.embeds(
      adapter: adapter, encoder: try IPFixtures.encoder(pipe), images: [try IPFixtures.image("reference.png")])
    try endToEnd([ImagePrompt(adapter: adapter, embeds: embeds, scale: 0.6)], golden: name)
  }

  @Test func twoImagesForOneAdapterMatchDiffusers() throws {
    let pipe = try IPFixtures.pipeline()
    let adapter = try IPAdapter(path: IPFixtures.adapter("ip-adapter-plus_sd15.safetensors"), unet: pipe.unet)
    let images = [try IPFixtures.image("reference.png"), try IPFixtures.image("stripes.png")]
    let embeds = try ImagePrompt.embeds(adapter: adapter, encoder: try IPFixtures.encoder(pipe), images: images)
    #expect(embeds.conditional.shape == [1, 12, 20])
    try endToEnd([ImagePrompt(adapter: adapter, embeds: embeds, scale: 0.8)], golden: "plus-two-images")
  }

  @Test func twoAdaptersWithTheirOwnScalesMatchDiffusers() throws {
    let pipe = try IPFixtures.pipeline()
    let encoder = try IPFixtures.encoder(pipe)
    let global = try IPAdapter(path: IPFixtures.adapter("ip-adapter_sd15.safetensors"), unet: pipe.unet)
    let plus = try IPAdapter(path: IPFixtures.adapter("ip-adapter-plus_sd15.safetensors"), unet: pipe.unet)
    let a = ImagePrompt(
      adapter: global, embeds: try ImagePrompt.embeds(adapter: global, encoder: encoder, images: [try IPFixtures.image("reference.png")]),
      scale: 0.7)
    let b = ImagePrompt(
      adapter: plus, embeds: try ImagePrompt.embeds(adapter: plus, encoder: encoder, images: [try IPFixtures.image("stripes.png")]),
      scale: 0.3)
    try endToEnd([a, b], golden: "global-and-plus")
  }

  @Test func vitGAdapterWithItsEncoderMatchesDiffusers() throws {
    let pipe = try IPFixtures.pipeline()
    let adapter = try IPAdapter(path: IPFixtures.adapter("ip-adapter_sd15_vit-G.safetensors"), unet: pipe.unet)
    let encoder = try IPFixtures.encoder(pipe, url: IPFixtures.bigGEncoderURL)
    let embeds = try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [try IPFixtures.image("reference.png")])
    #expect(Compare.relativeError(embeds.conditional, try IPFixtures.goldens().tensor("vit-G.tokens_cond")) <= 1e-5)
  }

  @Test func resamplerWithPositionsAndMeanPooledLatentsMatchesOfficialCode() throws {
    // diffusers cannot load this variant; the reference is tencent-ailab/IP-Adapter's Resampler,
    // whose attention scales q and k by d^-1/4 each: relative error ≤ 1e-5.
    let pipe = try IPFixtures.pipeline()
    let adapter = try IPAdapter(path: IPFixtures.adapter("ip-adapter-plus-posemb.safetensors"), unet: pipe.unet)
    guard case .plus(let shape) = adapter.variant else { Issue.record("not a Resampler"); return }
    #expect(shape.maxSequenceLength == 257 && shape.meanPooledLatents == 3 && shape.depth == 2 && shape.queries == 5)
    let g = try IPFixtures.goldens()
    let tokens = try adapter.tokens(try g.tensor("encoder.hidden_states_-2"))
    #expect(tokens.shape == [1, 8, 20])
    #expect(Compare.relativeError(tokens, try g.tensor("posemb.tokens_cond")) <= 1e-5)
  }
}
