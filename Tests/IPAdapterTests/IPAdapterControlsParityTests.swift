import Foundation
import IPAdapter
import Imaging
import Models
import Pipelines
import TensorCore
import Testing
import TestSupport
import Weights

/// The IP-Adapter controls end to end against diffusers (`tools/reference/gen_ip_controls_e2e.py`):
/// per-block scales, a step window (reference loop), regional masks with two images, a negative
/// image prompt. Criteria as text-to-image (latents ≤ 1e-4 relative, PNG within 1/255 on ≥ 99 %).
@Suite struct IPAdapterControlsParityTests {
  static let goldens = Fixtures.url("goldens/ip-controls-e2e")
  let pipe: StableDiffusionPipeline
  let adapter: IPAdapter
  let encoder: ImagePromptEncoder
  let reference: Image
  let stripes: Image

  init() throws {
    pipe = try IPFixtures.pipeline()
    adapter = try IPAdapter(path: IPFixtures.adapter("ip-adapter-plus_sd15.safetensors"), unet: pipe.unet)
    encoder = try IPFixtures.encoder(pipe)
    reference = try IPFixtures.image("reference.png")
    stripes = try IPFixtures.image("stripes.png")
  }

  func check(_ prompt: ImagePrompt, golden: String) throws {
    let result = try pipe.generate(IPFixtures.parameters, imagePrompts: [prompt])
    let latents = try SafeTensorsFile(path: Self.goldens.appendingPathComponent("\(golden).safetensors").path).tensor("latents")
    #expect(Compare.relativeError(result.latents, latents) <= 1e-4)
    let png = try Image(contentsOfFile: Self.goldens.appendingPathComponent("\(golden).png").path)
    #expect(Compare.closeFraction(result.image, png) >= 0.99)
  }

  @Test func blockScalesDictionaryMatchesDiffusers() throws {
    var prompt = ImagePrompt(
      adapter: adapter, embeds: try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [reference]), scale: 1)
    prompt.layerScales = .blocks(try IPAdapterBlockScales(json: #"{"down": {"block_1": [0.0, 1.0]}, "up": {"block_1": [0.0, 0.6, 0.0]}}"#))
    try check(prompt, golden: "block-scales")
  }

  @Test func stepWindowMatchesAReferenceLoopThatZeroesTheScale() throws {
    var prompt = ImagePrompt(
      adapter: adapter, embeds: try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [reference]), scale: 0.8)
    prompt.window = try IPAdapterStepWindow(start: 0.25, end: 0.75)
    try check(prompt, golden: "window")
  }

  @Test func regionalMasksMatchDiffusers() throws {
    var prompt = ImagePrompt(
      adapter: adapter, embeds: try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [reference, stripes]),
      scale: 0.7)
    prompt.masks = try IPAdapterMasks.preprocess(
      [try IPFixtures.image("ip-mask-left.png"), try IPFixtures.image("ip-mask-right.png")], height: 64, width: 64
    ).masks
    try check(prompt, golden: "masks")
  }

  @Test func negativeImageMatchesDiffusersEmbeds() throws {
    let embeds = try ImagePrompt.embeds(
      adapter: adapter, encoder: encoder, images: [reference], options: ImageFeatureOptions(negative: .image(stripes)))
    try check(ImagePrompt(adapter: adapter, embeds: embeds, scale: 0.6), golden: "negative-image")
  }

  @Test func windowFromZeroToZeroIsTheBaseModel() throws {
    var p = IPFixtures.parameters
    p.steps = 2
    let base = try pipe.generate(p)
    var prompt = ImagePrompt(
      adapter: adapter, embeds: try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [reference]), scale: 1)
    prompt.window = try IPAdapterStepWindow(start: 0, end: 0)
    #expect(try pipe.generate(p, imagePrompts: [prompt]).latents.scalars() == base.latents.scalars())
  }

  @Test func dictionaryThatZeroesEveryBlockIsTheBaseModel() throws {
    var p = IPFixtures.parameters
    p.steps = 2
    let base = try pipe.generate(p)
    var prompt = ImagePrompt(
      adapter: adapter, embeds: try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [reference]), scale: 1)
    prompt.layerScales = .blocks(try IPAdapterBlockScales(json: #"{"down": 0, "mid": 0, "up": 0}"#))
    #expect(try pipe.generate(p, imagePrompts: [prompt]).latents.scalars() == base.latents.scalars())
  }

  @Test func allZeroMaskIsTheBaseModel() throws {
    var p = IPFixtures.parameters
    p.steps = 2
    let base = try pipe.generate(p)
    var prompt = ImagePrompt(
      adapter: adapter, embeds: try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [reference]), scale: 1)
    prompt.masks = .zeros([1, 64, 64])
    let masked = try pipe.generate(p, imagePrompts: [prompt])
    // A zero mask multiplies the image branch by exactly 0: the sum adds +0.
    #expect(masked.latents.scalars() == base.latents.scalars())
  }

  @Test func maskOfTheWrongSizeOrCountIsAnError() throws {
    var prompt = ImagePrompt(
      adapter: adapter, embeds: try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [reference]), scale: 1)
    prompt.masks = .zeros([1, 32, 64])
    #expect(throws: PipelineError.self) { _ = try pipe.generate(IPFixtures.parameters, imagePrompts: [prompt]) }
    prompt.masks = .zeros([2, 64, 64])
    #expect(throws: IPAdapterError.self) { _ = try pipe.generate(IPFixtures.parameters, imagePrompts: [prompt]) }
  }

  @Test func presetTouchesOnlyItsLayers() throws {
    var prompt = ImagePrompt(
      adapter: adapter, embeds: try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: [reference]), scale: 1)
    prompt.layerScales = .preset(.style, scale: 0.9)
    let sources = try prompt.sources(batch: 2, latentSize: (8, 8), blockCount: 3)
    let slots = IPAdapterLayerTable.slots(for: pipe.unet)
    let touched = Set(sources.keys.map { slots[$0].name })
    // SD1.5 "style" = up_blocks.1 (the tiny UNet has the same block layout).
    #expect(!touched.isEmpty && touched.allSatisfy { $0.hasPrefix("up_blocks.1.") })
    #expect(sources.values.allSatisfy { $0.allSatisfy { $0.scale == 0.9 } })
  }
}
