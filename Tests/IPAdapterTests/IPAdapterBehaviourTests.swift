import Foundation
import IPAdapter
import Imaging
import Models
import Pipelines
import TensorCore
import Testing
import TestSupport

/// The diffusers IP-Adapter behaviours (reference notes §8), on the tiny pipeline.
@Suite struct IPAdapterBehaviourTests {
  let pipe: StableDiffusionPipeline
  let encoder: ImagePromptEncoder
  let image: Image

  init() throws {
    pipe = try IPFixtures.pipeline()
    encoder = try IPFixtures.encoder(pipe)
    image = try IPFixtures.image("reference.png")
  }

  func prompt(_ name: String, scale: Float, images: [Image]? = nil) throws -> ImagePrompt {
    let adapter = try IPAdapter(path: IPFixtures.adapter(name), unet: pipe.unet)
    return ImagePrompt(
      adapter: adapter, embeds: try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: images ?? [image]),
      scale: scale)
  }

  func run(_ prompts: [ImagePrompt], guidance: Float = 7.5) throws -> GenerationResult {
    var p = IPFixtures.parameters
    p.steps = 2
    p.guidanceScale = guidance
    return try pipe.generate(p, imagePrompts: prompts)
  }

  @Test func scaleZeroIsBitIdenticalToNoAdapter() throws {
    let base = try run([])
    let zero = try run([try prompt("ip-adapter-plus_sd15.safetensors", scale: 0)])
    #expect(zero.latents.scalars() == base.latents.scalars())
    #expect(zero.image.pixels == base.image.pixels)
  }

  @Test func largeScaleChangesTheResult() throws {
    let base = try run([])
    let strong = try run([try prompt("ip-adapter_sd15.safetensors", scale: 42)])
    #expect(Compare.maxAbsDifference(strong.latents, base.latents) > 1e-2)
  }

  @Test func twoAdaptersAtZeroAreBitIdenticalToNone() throws {
    let base = try run([])
    let both = try run([
      try prompt("ip-adapter_sd15.safetensors", scale: 0), try prompt("ip-adapter-plus_sd15.safetensors", scale: 0),
    ])
    #expect(both.latents.scalars() == base.latents.scalars())
  }

  @Test func secondAdapterAtZeroWithTheSameImageEqualsTheFirstAlone() throws {
    let single = try run([try prompt("ip-adapter_sd15.safetensors", scale: 1)])
    let pair = try run([
      try prompt("ip-adapter_sd15.safetensors", scale: 1), try prompt("ip-adapter-plus_sd15.safetensors", scale: 0),
    ])
    #expect(pair.latents.scalars() == single.latents.scalars())
  }

  @Test func reloadingTheAdapterIsDeterministic() throws {
    let a = try run([try prompt("ip-adapter-full-face_sd15.safetensors", scale: 0.7)])
    let b = try run([try prompt("ip-adapter-full-face_sd15.safetensors", scale: 0.7)])
    #expect(a.latents.scalars() == b.latents.scalars())
  }

  @Test func worksWithAndWithoutGuidance() throws {
    let plus = try prompt("ip-adapter-plus_sd15.safetensors", scale: 1)
    let without = try run([plus], guidance: 1.0)
    let with = try run([plus], guidance: 7.5)
    #expect(without.image.width == 64 && with.image.width == 64)
    #expect(without.latents.shape == with.latents.shape)
    #expect(Compare.maxAbsDifference(without.latents, with.latents) > 1e-3)
  }

  @Test func duplicatedImageDoublesTheTokens() throws {
    let once = try prompt("ip-adapter_sd15.safetensors", scale: 1)
    let twice = try prompt("ip-adapter_sd15.safetensors", scale: 1, images: [image, image])
    #expect(twice.embeds.conditional.shape == [1, 8, 20])
    #expect(Array(twice.embeds.conditional.scalars().prefix(80)) == once.embeds.conditional.scalars())
  }

  @Test func parametersTextNamesTheAdapter() throws {
    let text = try run([try prompt("ip-adapter_sd15.safetensors", scale: 0.5)]).parametersText
    #expect(text.hasSuffix("IP-Adapter: ip-adapter_sd15.safetensors (0.5)"))
  }
}

/// The `ip_adapter.N` → UNet layer table, computed from the UNet config.
@Suite struct IPAdapterLayerTableTests {
  @Test func sd15TableIsOneToElevenDownThirteenToTwentyNineUpThirtyOneMid() throws {
    let config = try ConfigFile.load(
      UNet2DConditionConfig.self, from: BundledConfigs.stableDiffusion15.appendingPathComponent("unet/config.json"))
    let unet = try UNet2DConditionModel(config: config)
    let slots = IPAdapterLayerTable.slots(for: unet)
    #expect(slots.count == 16)
    #expect(slots.map(\.key) == Array(stride(from: 1, through: 31, by: 2)))
    #expect(slots.filter { $0.name.hasPrefix("down_blocks") }.map(\.key) == [1, 3, 5, 7, 9, 11])
    #expect(slots.filter { $0.name.hasPrefix("up_blocks") }.map(\.key) == Array(stride(from: 13, through: 29, by: 2)))
    #expect(slots.last?.name == "mid_block.attentions.0.transformer_blocks.0.attn2" && slots.last?.key == 31)
    #expect(slots[0].name == "down_blocks.0.attentions.0.transformer_blocks.0.attn2" && slots[0].hidden == 320)
    #expect(slots.map(\.hidden) == [320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320, 1280])
  }

  @Test func tinyTableFollowsItsConfig() throws {
    let pipe = try IPFixtures.pipeline()
    let slots = IPAdapterLayerTable.slots(for: pipe.unet)
    #expect(slots.map(\.key) == Array(stride(from: 1, through: 21, by: 2)))
    #expect(slots.map(\.hidden) == [16, 16, 24, 24, 24, 24, 24, 16, 16, 16, 32])
  }
}
