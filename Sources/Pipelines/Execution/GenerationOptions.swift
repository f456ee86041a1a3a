import Imaging
import TensorCore

/// What happens to a pipeline's prepared kernels once a generation no longer needs a model.
public enum MemoryPolicy: Sendable, Equatable {
  /// Keep every model's packed weights for the next generation (the default: an app generating
  /// many images pays the packing once).
  case keepModelsReady
  /// Drop each model's packed weights as soon as the generation is done with it (text encoder
  /// after encoding, UNet and ControlNets after the last step, VAE after decoding): peak memory is
  /// one model at a time, and the next generation packs again. The CLI uses this.
  case releaseAfterUse
}

/// Which previews a generation reports while it runs.
public enum PreviewKind: Sendable, Equatable {
  /// The current latents `[1, 4, h, w]` (NCHW), free to produce.
  case latents
  /// The current latents and their VAE decoding (one VAE pass per preview: slow at real sizes).
  case image
}

/// How a generation runs (not what it generates: that is `GenerationParameters`).
public struct GenerationOptions: Sendable {
  public var memory: MemoryPolicy = .keepModelsReady
  /// A preview every this many steps (and none when 0). The last step's preview is never sent:
  /// the result follows it.
  public var previewEvery: Int = 0
  public var preview: PreviewKind = .latents
  /// Whether the VAE decodes (and encodes init images) in tiles, as diffusers' `enable_vae_tiling()`
  /// (default `.off`: untiled, as diffusers' default).
  public var vaeTiling: VAETilingMode = .off

  public init(
    memory: MemoryPolicy = .keepModelsReady, previewEvery: Int = 0, preview: PreviewKind = .latents,
    vaeTiling: VAETilingMode = .off
  ) {
    self.memory = memory
    self.previewEvery = previewEvery
    self.preview = preview
    self.vaeTiling = vaeTiling
  }
}

/// An intermediate state of a running generation.
public struct GenerationPreview: Sendable {
  /// Steps done (1-based) of `total`.
  public var step: Int
  public var total: Int
  /// The latents after `step` steps, NCHW `[1, 4, h, w]` (before any VAE scaling).
  public var latents: Tensor
  /// The VAE decoding of `latents` when `PreviewKind.image` was asked for.
  public var image: Image?
}

/// What a running generation reports, in order: one `.step` per denoising step (with `.preview`
/// after the steps that have one), then `.finished` once.
public enum GenerationEvent: Sendable {
  case step(StepProgress)
  case preview(GenerationPreview)
  case finished(GenerationResult)
}
