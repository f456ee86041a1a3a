import Foundation
import IPAdapter
import Models
import Pipelines
import TensorCore
import Weights

/// Everything `ipadapter train` is given, turned into a ready `TrainingRun` by one call.
///
/// matches: the arguments of IP-Adapter's `tutorial_train.py` / `tutorial_train_plus.py`
/// (`--pretrained_model_name_or_path`, `--image_encoder_path`, `--data_json_file`,
/// `--data_root_path`, `--resolution`, `--learning_rate`, `--weight_decay`, `--train_batch_size`,
/// `--save_steps`, `--num_tokens`), plus what the scripts leave to `accelerate` (accumulation,
/// clipping, warm-up) and resumption.
public struct TrainingSetup: Sendable {
  /// The projection a new adapter gets (`--projection`).
  public enum Projection: String, Sendable, CaseIterable {
    /// `ImageProjModel` on CLIP `image_embeds` (`tutorial_train.py`; 4 tokens).
    case linear
    /// The Perceiver `Resampler` on `hidden_states[-2]` (`tutorial_train_plus.py`: depth 4, 12
    /// heads of 64, 16 queries, ff ×4).
    case plus
    /// The full-face `MLPProjModel` on `hidden_states[-2]` (one token per CLIP token).
    case fullFace = "full-face"
    /// Qwen-VL's position-aware resampler on `hidden_states[-2]` (`QwenResampler`): `gridSize²`
    /// tokens, width the cross-attention width rounded up to a multiple of 64.
    case qwen
  }

  public var model: ModelSource
  public var imageEncoder: URL
  public var data: URL
  public var imageRoot: URL
  public var output: URL
  public var projection: Projection = .linear
  /// Tokens of a new adapter (`--num-tokens`; 4 for linear, 16 for plus; full-face has one per CLIP token).
  public var numTokens: Int?
  /// Query grid side of a new Qwen resampler (`--grid-size`; 4 → 16 tokens).
  public var gridSize = 4
  /// Start from this adapter file (fine-tuning) instead of a new adapter.
  public var initialAdapter: String?
  public var learningRate = 1e-4
  public var weightDecay = 1e-2
  public var options = TrainingOptions()
  public var load = PipelineLoadOptions()
  /// Keep the frozen encoders' outputs per example in this folder (`--cache-dir`,
  /// `TrainingFeatureCache`): after the first epoch a step costs only the UNet.
  public var cacheDirectory: URL?

  public init(model: ModelSource, imageEncoder: URL, data: URL, imageRoot: URL, output: URL) {
    (self.model, self.imageEncoder, self.data, self.imageRoot, self.output) = (model, imageEncoder, data, imageRoot, output)
  }

  /// The variant of a new adapter for `unet` and `encoder`.
  public func variant(crossDim: Int, encoder: CLIPVisionConfig) throws -> IPAdapterVariant {
    if let n = numTokens, !(1...4096).contains(n) {
      throw TrainingError.invalidArgument(name: "--num-tokens", reason: "\(n) must be in 1...4096")
    }
    switch projection {
    case .linear: return .global(embeddingDim: encoder.projectionDim, crossDim: crossDim, tokens: numTokens ?? 4)
    case .plus:
      return .plus(
        Resampler.Shape(
          dim: crossDim, depth: 4, heads: 12, queries: numTokens ?? 16, embeddingDim: encoder.hiddenSize, outputDim: crossDim))
    case .qwen:
      guard numTokens == nil else {
        throw TrainingError.invalidArgument(name: "--num-tokens", reason: "a Qwen resampler has --grid-size² tokens")
      }
      guard (1...64).contains(gridSize) else { throw TrainingError.invalidArgument(name: "--grid-size", reason: "\(gridSize) must be in 1...64") }
      return .qwen(QwenResampler.Shape(grid: gridSize, dim: (crossDim + 63) / 64 * 64, kvDim: encoder.hiddenSize, outputDim: crossDim))
    case .fullFace:
      if numTokens != nil {
        throw TrainingError.invalidArgument(name: "--num-tokens", reason: "a full-face adapter has one token per CLIP token")
      }
      return .fullFace(clipDim: encoder.hiddenSize, crossDim: crossDim)
    }
  }

  /// Loads the models and the data set and builds the run (nothing is trained yet).
  public func makeRun() async throws -> TrainingRun {
    try options.validate()
    let dataset = try TrainingDataset(jsonFile: data, imageRoot: imageRoot)
    let pipeline = try await StableDiffusionPipeline.load(model, options: load)
    guard pipeline.unet.config.inChannels == pipeline.vae.config.latentChannels else {
      throw TrainingError.invalidArgument(
        name: "--model", reason: "an inpainting UNet (\(pipeline.unet.config.inChannels) input channels) cannot be trained on")
    }
    guard options.resolution % (pipeline.vaeScaleFactor << (pipeline.unet.config.blockOutChannels.count - 1)) == 0 else {
      throw TrainingError.invalidArgument(
        name: "--resolution",
        reason: "\(options.resolution) must be a multiple of \(pipeline.vaeScaleFactor << (pipeline.unet.config.blockOutChannels.count - 1)) for this model")
    }
    guard !pipeline.unet.crossAttentionLayers.isEmpty else {
      throw TrainingError.invalidArgument(name: "--model", reason: "the UNet has no cross-attention layers for an adapter")
    }
    let encoder = try ImagePromptEncoder(folder: imageEncoder)
    let models = try FrozenTrainingModels(pipeline: pipeline, imageEncoder: encoder.model)
    let variant: IPAdapterVariant
    let imageProj: [String: Tensor], ipAdapter: [String: Tensor]
    if let initialAdapter {
      let (proj, layers) = try IPAdapterFile.split(try IPAdapterFile.open(initialAdapter), path: initialAdapter)
      variant = try IPAdapterVariant.detect(proj, path: initialAdapter)
      imageProj = try Self.tensors(proj)
      ipAdapter = try Self.tensors(layers)
    } else {
      variant = try self.variant(crossDim: pipeline.unet.crossAttentionDim, encoder: encoder.model.config)
      imageProj = try AdapterInitialization.projectionState(variant, seed: options.seed)
      ipAdapter = AdapterInitialization.decoupledAttentionState(copying: pipeline.unet)
    }
    let trainer = try AdapterTrainer(
      models: models, variant: variant, imageProj: imageProj, ipAdapter: ipAdapter, learningRate: learningRate,
      weightDecay: weightDecay)
    let run = try TrainingRun(trainer: trainer, dataset: dataset, clipProcessor: encoder.processor, options: options, output: output)
    if let cacheDirectory {
      run.featureCache = try TrainingFeatureCache(folder: cacheDirectory, fingerprint: cacheFingerprint(variant))
    }
    return run
  }

  /// What a feature cache's entries depend on: the base model and how it is loaded, the image
  /// encoder, the resolution, which CLIP output the projection reads, the precision.
  func cacheFingerprint(_ variant: IPAdapterVariant) -> TrainingFeatureCache.Fingerprint {
    let source: String
    switch model {
    case .diffusersFolder(let url), .singleFile(let url): source = url.standardizedFileURL.path
    case .hub(let reference): source = "\(reference)"
    }
    var extras: [String] = []
    if let vae = load.vae { extras.append("vae \(vae)") }
    if let variant = load.variant { extras.append("variant \(variant)") }
    if !load.loras.isEmpty { extras.append("loras \(load.loras)") }
    extras.append("ema \(load.ema)")
    let kind: String
    if case .global = variant { kind = "image_embeds" } else { kind = "hidden_states[-2]" }
    return TrainingFeatureCache.Fingerprint(
      model: ([source] + extras).joined(separator: ", "), imageEncoder: imageEncoder.standardizedFileURL.path,
      resolution: options.resolution, imageFeatures: kind, precision: "\(load.precision)")
  }

  static func tensors(_ archive: any TensorArchive) throws -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for key in archive.keys { out[key] = try archive.tensor(key).asFloat32() }
    return out
  }
}
