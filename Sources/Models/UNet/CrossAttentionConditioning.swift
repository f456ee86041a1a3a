import TensorCore

/// What every cross-attention layer of a UNet attends to during one generation: per layer, a list
/// of key/value sources (the text first, then any image prompts), computed once before the first
/// step and reused unchanged at every step.
///
/// This is the plug-in point of IP-Adapter: an adapter appends its own `to_k_ip`/`to_v_ip`
/// keys and values, with its scale λ, to the layers it patches. The UNet itself knows nothing about
/// adapters. Layer indices follow diffusers' attention-processor order (down blocks, up blocks,
/// then the mid block) — see `UNet2DConditionModel.crossAttentionLayers`.
///
/// It also carries SDXL's other per-row inputs, `textTime` (pooled text embedding and
/// micro-conditioning), which the UNet's addition embedding needs at every step.
public struct CrossAttentionConditioning: Sendable {
  /// `sources[i]` feeds cross-attention layer `i`.
  public var sources: [[AttentionSource]]
  /// Batch size of the text keys/values (2 with classifier-free guidance).
  public var batch: Int
  /// SDXL's `added_cond_kwargs` (nil for SD 1.x/2.x UNets).
  public var textTime: TextTimeConditions?

  public init(sources: [[AttentionSource]], batch: Int, textTime: TextTimeConditions? = nil) {
    self.sources = sources
    self.batch = batch
    self.textTime = textTime
  }

  /// Adds a source to layer `layer` (an image prompt's keys/values with its scale).
  public mutating func append(_ source: AttentionSource, toLayer layer: Int) {
    sources[layer].append(source)
  }

  /// The same conditioning with only the first `count` sources of every layer (e.g. text only,
  /// as ControlNet sees it).
  public func keepingFirst(_ count: Int) -> CrossAttentionConditioning {
    CrossAttentionConditioning(sources: sources.map { Array($0.prefix(count)) }, batch: batch, textTime: textTime)
  }
}

/// SDXL's extra UNet inputs for each batch row: the pooled text embedding and the
/// micro-conditioning numbers (original size, crop top-left, target size — or, for the refiner,
/// original size, crop and aesthetic score).
///
/// matches: diffusers `added_cond_kwargs = {"text_embeds": …, "time_ids": …}` of
/// `StableDiffusionXLPipeline` (unconditional row first with guidance).
public struct TextTimeConditions: Sendable {
  /// `[B, pooled width]`.
  public var textEmbeds: Tensor
  /// `B` rows of the same count of numbers.
  public var timeIds: [[Float]]

  public init(textEmbeds: Tensor, timeIds: [[Float]]) {
    self.textEmbeds = textEmbeds
    self.timeIds = timeIds
  }
}
