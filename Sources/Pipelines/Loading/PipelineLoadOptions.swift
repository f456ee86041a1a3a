import Foundation
import Hub
import Models
import NN
import TensorCore

/// How `StableDiffusionPipeline.load(_:options:)` loads a model.
public struct PipelineLoadOptions: Sendable {
  /// Arithmetic of convolutions and matrix products.
  public var precision: ComputePrecision = .float32
  /// A VAE file (diffusers or LDM layout; local path or hub file) replacing the model's own VAE;
  /// required for a single-file checkpoint without one.
  public var vae: HubReference?
  /// For single-file checkpoints: a diffusers pipeline folder whose configs and tokenizer describe
  /// the checkpoint (nil: the bundled Stable Diffusion 1.5 or SDXL base 1.0 ones, by the file's
  /// model type).
  public var singleFileConfigs: URL?
  /// Which UNet weights a single file with EMA copies provides.
  public var ema: EMAChoice = .preferEMA
  /// Accept weights holding NaN or infinity (refused with `WeightLoadingError.nonFinite` otherwise).
  public var allowNonFiniteWeights = false
  /// The hub client for hub references (default: one configured from the environment —
  /// `HF_ENDPOINT`, `HF_HOME`, `HF_TOKEN`, `HF_HUB_OFFLINE`).
  public var hub: HubClient?
  /// diffusers' `variant` (e.g. `fp16`): each component's `*.{variant}.safetensors` files are
  /// downloaded and loaded instead of the full-precision ones (components without them use their
  /// plain files, as diffusers falls back).
  public var variant: String?
  /// Download progress of hub references.
  public var downloadProgress: HubProgressHandler?
  /// LoRAs fused into the UNet and text encoders once loaded (local files or hub files), each at
  /// its weight; see `StableDiffusionPipeline.applyLoRAs`.
  public var loras: [LoRAReference] = []
  /// Skip LoRA layers that match no layer of the model (reported in `loraReport`) instead of
  /// refusing the file.
  public var ignoreUnmatchedLoRALayers = false

  public init(precision: ComputePrecision = .float32, vae: HubReference? = nil) {
    self.precision = precision
    self.vae = vae
  }

  var prepare: PrepareOptions { PrepareOptions(precision: precision, allowNonFiniteWeights: allowNonFiniteWeights) }
}

extension StableDiffusionPipeline {
  /// Loads any model source — a diffusers folder, a single-file checkpoint, or a hub reference to
  /// either (fetched into the shared hub cache first) — without blocking a thread. Cancelling the
  /// task stops a download; loading itself (memory-mapping and checks) is short.
  ///
  /// matches: diffusers `StableDiffusionPipeline.from_pretrained` / `from_single_file`.
  /// - Throws: `ModelSourceError`, `HubError`, `PipelineError`, `ModelConfigError`,
  ///   `WeightLoadingError`, `SingleFileError`, container errors — each naming the file.
  public static func load(_ source: ModelSource, options: PipelineLoadOptions = PipelineLoadOptions()) async throws
    -> StableDiffusionPipeline
  {
    if let variant = options.variant { try ModelLoader.checkVariant(variant) }
    let (local, vae, loras) = try await fetch(source, options: options)
    return try await ComputeQueue.detached { try loadLocal(local, vae: vae, loras: loras, options: options) }
  }

  /// `load(_:options:)` for synchronous code: blocks the calling thread (hub downloads included).
  public static func load(_ source: ModelSource, options: PipelineLoadOptions = PipelineLoadOptions()) throws
    -> StableDiffusionPipeline
  {
    if let variant = options.variant { try ModelLoader.checkVariant(variant) }
    var needsHub = options.vae?.isRemote == true || options.loras.contains { $0.file.isRemote }
    if case .hub = source { needsHub = true }
    let (local, vae, loras) = needsHub
      ? try HubClient.runBlocking { try await fetch(source, options: options) }
      : (source, options.vae?.localURL, options.loras.compactMap { $0.file.localURL })
    return try loadLocal(local, vae: vae, loras: loras, options: options)
  }

  /// Hub references fetched into the cache and classified as local sources.
  static func fetch(_ source: ModelSource, options: PipelineLoadOptions) async throws -> (ModelSource, URL?, [URL]) {
    var client: HubClient?
    func hub() -> HubClient {
      if let client { return client }
      let made = options.hub ?? HubClient()
      client = made
      return made
    }
    var local = source
    if case .hub(let reference) = source {
      local = try ModelSource.resolve(
        try await hub().resolve(reference, variant: options.variant, progress: options.downloadProgress))
    }
    var vae: URL?
    if let reference = options.vae {
      vae = reference.isRemote
        ? try await hub().resolveFile(reference, progress: options.downloadProgress)
        : reference.localURL
    }
    var loras: [URL] = []
    for lora in options.loras {
      loras.append(
        lora.file.isRemote
          ? try await hub().resolveFile(lora.file, progress: options.downloadProgress) : lora.file.localURL!)
    }
    return (local, vae, loras)
  }

  /// Loads a local source, then fuses the LoRAs (`loras`: the local files of `options.loras`).
  static func loadLocal(
    _ source: ModelSource, vae: URL?, loras: [URL] = [], options: PipelineLoadOptions
  ) throws -> StableDiffusionPipeline {
    let pipeline = try loadLocal(source, vae: vae, options: options)
    if !loras.isEmpty {
      let files = try zip(loras, options.loras).map { (try LoRAFile(path: $0.0.path), $0.1.weight) }
      try pipeline.applyLoRAs(files, ignoreUnmatched: options.ignoreUnmatchedLoRALayers)
    }
    return pipeline
  }

  static func loadLocal(_ source: ModelSource, vae: URL?, options: PipelineLoadOptions) throws -> StableDiffusionPipeline {
    switch source {
    case .diffusersFolder(let folder):
      if let vae {
        return try load(
          folder: folder, vae: vae, precision: options.precision, allowNonFiniteWeights: options.allowNonFiniteWeights,
          variant: options.variant)
      }
      return try StableDiffusionPipeline(
        folder: folder, precision: options.precision, allowNonFiniteWeights: options.allowNonFiniteWeights,
        variant: options.variant)
    case .singleFile(let file):
      return try load(
        singleFile: file, vae: vae, configs: options.singleFileConfigs, ema: options.ema, precision: options.precision,
        allowNonFiniteWeights: options.allowNonFiniteWeights)
    case .hub(let reference):
      throw PipelineError.invalidArgument(name: "source", reason: "hub reference \(reference) was not fetched")
    }
  }
}
