import Foundation
import IPAdapter
import Imaging
import Models
import NN
import Pipelines
import Schedulers
import TensorCore
import Tokenizers

/// The SDXL cases of `bench models`, at SDXL base 1.0's real sizes (bundled configs, random
/// weights): one UNet step at 128×128 latents with CFG (batch 2; optionally with a 16-token
/// IP-Adapter Plus), a VAE decode to 1024², the ViT-bigG/14 image encoder, and a whole 1024²
/// generation with `ip-adapter-plus_sdxl_vit-h` (ViT-H encoder) from checkpoint files to PNG.
extension ModelBench {
  var sdxlRoot: URL { BundledConfigs.stableDiffusionXL }

  func sdxlUNet() throws -> UNet2DConditionModel {
    let config = try config(UNet2DConditionConfig.self, "unet/config.json", root: sdxlRoot)
    return try mapped({ try UNet2DConditionModel(config: config) }, seed: 21)
  }

  /// `ip-adapter-plus_sdxl_vit-h`'s shape: Resampler 1280 wide, 20 heads, 16 queries, ViT-H
  /// features (1280) in, 2048 out; random weights. `embeddingDim` 512 and seed 41 give
  /// InstantX/InstantID's face adapter (the Resampler over a face embedding).
  func sdxlAdapter(unet: UNet2DConditionModel, embeddingDim: Int = 1280, seed: UInt64 = 25) throws -> IPAdapter {
    let variant = IPAdapterVariant.plus(
      Resampler.Shape(dim: 1280, depth: 4, heads: 20, queries: 16, embeddingDim: embeddingDim, outputDim: 2048))
    let projection = variant.makeProjection()
    try projection.fillWithRandomWeights(seed: seed, prepare: options)
    let attention = IPAdapterAttentionWeights(slots: IPAdapterLayerTable.slots(for: unet), crossDim: 2048)
    try attention.fillWithRandomWeights(seed: seed + 1, prepare: options)
    return IPAdapter(path: "random-sdxl-plus-adapter-\(embeddingDim)", variant: variant, projection: projection, attention: attention)
  }

  /// SDXL's conditioning for a 1024² image with CFG: text `[2, 77, 2048]`, pooled `[2, 1280]`,
  /// the default micro-conditioning.
  func sdxlConditioning(_ model: UNet2DConditionModel) throws -> CrossAttentionConditioning {
    let ids: [Float] = [1024, 1024, 0, 0, 1024, 1024]
    return try model.makeConditioning(
      encoderHiddenStates: Tensor.random([2, 77, 2048], seed: 27),
      textTime: TextTimeConditions(textEmbeds: Tensor.random([2, 1280], seed: 28), timeIds: [ids, ids]))
  }

  func runSDXL(_ name: String) throws -> Result {
    switch name {
    case "sdxl-unet-128", "sdxl-unet-128-ip16":
      let model = try sdxlUNet()
      var conditioning = try sdxlConditioning(model)
      if name.hasSuffix("ip16") {
        let embeds = ImagePromptEmbeds(
          conditional: Tensor.random([1, 16, 2048], seed: 29), unconditional: Tensor.random([1, 16, 2048], seed: 30))
        try ImagePrompt(adapter: try sdxlAdapter(unet: model), embeds: embeds, scale: 1).apply(to: &conditioning)
      }
      let sample = Tensor.random([2, 128, 128, 4], seed: 31)
      let (t, f) = try time { _ = try model(sample, timestep: 500, conditioning: conditioning) }
      return Result(seconds: t, flops: f)
    case "sdxl-vae-decode-1024":
      let config = try config(AutoencoderKLConfig.self, "vae/config.json", root: sdxlRoot)
      let model = try mapped({ try AutoencoderKL(config: config) }, seed: 22)
      let latents = Tensor.random([1, 128, 128, 4], seed: 32)
      let (t, f) = try time { _ = try model.decode(latents) }
      return Result(seconds: t, flops: f)
    case "vit-bigg":
      let config = try config(CLIPVisionConfig.self, "config.json", root: BundledConfigs.clipViTBigG14)
      let model = try mapped({ try CLIPVisionModel(config: config) }, seed: 24)
      let pixels = Tensor.random([1, 224, 224, 3], seed: 33)
      let (t, f) = try time { _ = try model(pixels, output: .imageEmbeds) }
      return Result(seconds: t, flops: f)
    case "sdxl-generate-1024":
      return try generateSDXL()
    default:
      throw CLIError.invalid("--cases", "unknown case \(name)")
    }
  }

  /// Load (random weights from checkpoint files) → both text encoders + ViT-H image encoding →
  /// `steps` DPM++ 2M steps at 1024² with CFG and a Plus adapter → VAE decode, once, with the
  /// CLI's memory policy (each model's packed weights dropped once it is done).
  func generateSDXL() throws -> Result {
    let unetConfig = try config(UNet2DConditionConfig.self, "unet/config.json", root: sdxlRoot)
    let vaeConfig = try config(AutoencoderKLConfig.self, "vae/config.json", root: sdxlRoot)
    let textConfig = try config(CLIPTextConfig.self, "text_encoder/config.json", root: sdxlRoot)
    let text2Config = try config(CLIPTextConfig.self, "text_encoder_2/config.json", root: sdxlRoot)
    let visionConfig = try config(CLIPVisionConfig.self, "config.json", root: BundledConfigs.clipViTH14)
    let files = [
      try writeRandom({ try UNet2DConditionModel(config: unetConfig) }, seed: 21),
      try writeRandom({ try AutoencoderKL(config: vaeConfig) }, seed: 22),
      try writeRandom({ try CLIPTextModel(config: textConfig) }, seed: 23),
      try writeRandom({ try CLIPTextModel(config: text2Config, withProjection: true) }, seed: 24),
      try writeRandom({ try CLIPVisionModel(config: visionConfig) }, seed: 4),
    ]
    defer { for f in files { unlink(f) } }
    Runtime.returnFreedMemory()
    Memory.resetPeak()

    let start = DispatchTime.now().uptimeNanoseconds
    FlopCounter.reset()
    let model = try load({ try UNet2DConditionModel(config: unetConfig) }, path: files[0])
    let pipeline = try StableDiffusionPipeline(
      folder: sdxlRoot, tokenizer: try CLIPTokenizer.bundledSD15(),
      textEncoder: try load({ try CLIPTextModel(config: textConfig) }, path: files[2]), unet: model,
      vae: try load({ try AutoencoderKL(config: vaeConfig) }, path: files[1]),
      schedulerConfig: try SchedulerConfig(contentsOf: sdxlRoot.appendingPathComponent("scheduler/scheduler_config.json")),
      precision: precision,
      sdxl: SDXLTextEncoders(
        tokenizer2: try CLIPTokenizer.bundledSDXLSecond(),
        textEncoder2: try load({ try CLIPTextModel(config: text2Config, withProjection: true) }, path: files[3])))
    let a = try sdxlAdapter(unet: model)
    let loaded = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    let encodeStart = DispatchTime.now().uptimeNanoseconds
    let embeds = try ImagePrompt.embeds(
      adapter: a,
      encoder: ImagePromptEncoder(
        model: try load({ try CLIPVisionModel(config: visionConfig) }, path: files[4]), processor: CLIPImageProcessor()),
      images: [Image(width: 1024, height: 1024, format: .rgb, fill: 128)])
    Runtime.returnFreedMemory()
    let imageEncode = Double(DispatchTime.now().uptimeNanoseconds - encodeStart) / 1e9
    var p = GenerationParameters(prompt: "a photo of a cat")
    p.steps = steps
    (p.width, p.height) = (1024, 1024)
    p.scheduler = .dpmpp2m
    let result = try pipeline.generate(
      p, imagePrompts: [ImagePrompt(adapter: a, embeds: embeds, scale: 0.6)],
      options: GenerationOptions(memory: .releaseAfterUse),
      progress: { step in
        Memory.debug("step \(step.step): peak \(Memory.peakRSSMegabytes()) MB, \(Memory.currentRSS())")
        return true
      })
    let total = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    return Result(
      seconds: total, flops: Double(FlopCounter.count),
      notes: [
        ("load_s", loaded), ("first_step_s", loaded + imageEncode + result.preparationSeconds),
        ("denoise_s", result.denoisingSeconds), ("s_per_step", result.denoisingSeconds / Double(steps)),
      ])
  }
}
