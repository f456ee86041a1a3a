import Foundation
import IPAdapter
import Imaging
import Models
import NN
import Schedulers
import TensorCore
import Tokenizers

/// A Stable Diffusion 1.x/2.x text-to-image pipeline loaded from a diffusers folder
/// (`model_index.json`, `tokenizer/`, `text_encoder/`, `unet/`, `vae/`, `scheduler/`).
///
/// matches: diffusers `StableDiffusionPipeline` (0.42.1) with `output_type="pil"`, no safety
/// checker. Limitations: one image per call, no prompt weighting, no textual inversion.
public final class StableDiffusionPipeline: @unchecked Sendable {
  public let folder: URL
  public let tokenizer: CLIPTokenizer
  public let textEncoder: CLIPTextModel
  public let unet: UNet2DConditionModel
  public let vae: AutoencoderKL
  public let schedulerConfig: SchedulerConfig
  /// The folder's own scheduler class (`_class_name`), used when no sampler is requested.
  public let schedulerClassName: String
  public let precision: ComputePrecision

  /// Loads every component. Weights are memory-mapped; kernels are prepared lazily per shape.
  public init(folder: URL, precision: ComputePrecision = .float32) throws {
    let fm = FileManager.default
    guard fm.fileExists(atPath: folder.appendingPathComponent("model_index.json").path) else {
      var isDir: ObjCBool = false
      if !fm.fileExists(atPath: folder.path, isDirectory: &isDir) {
        throw ModelFileError.missingFolder(path: folder.path)
      }
      throw PipelineError.notAPipelineFolder(path: folder.path)
    }
    for component in ["tokenizer", "text_encoder", "unet", "vae", "scheduler"] {
      var isDir: ObjCBool = false
      if !fm.fileExists(atPath: folder.appendingPathComponent(component).path, isDirectory: &isDir) || !isDir.boolValue {
        throw PipelineError.missingComponent(folder: folder.path, component: component)
      }
    }
    self.folder = folder
    self.precision = precision
    let options = PrepareOptions(precision: precision)
    tokenizer = try CLIPTokenizer(directory: folder.appendingPathComponent("tokenizer"))
    textEncoder = try ModelLoader.textEncoder(folder.appendingPathComponent("text_encoder"), prepare: options)
    unet = try ModelLoader.unet(folder.appendingPathComponent("unet"), prepare: options)
    vae = try ModelLoader.vae(folder.appendingPathComponent("vae"), prepare: options)
    let schedulerURL = folder.appendingPathComponent("scheduler/scheduler_config.json")
    guard fm.fileExists(atPath: schedulerURL.path) else { throw ModelConfigError.missingFile(path: schedulerURL.path) }
    schedulerConfig = try SchedulerConfig(contentsOf: schedulerURL)
    schedulerClassName = schedulerConfig.className ?? "PNDMScheduler"
    guard unet.crossAttentionDim == textEncoder.config.hiddenSize else {
      throw ModelConfigError.malformed(
        path: folder.appendingPathComponent("unet/config.json").path, field: "cross_attention_dim",
        reason: "\(unet.crossAttentionDim) does not match the text encoder's hidden_size \(textEncoder.config.hiddenSize)")
    }
  }

  /// The pipeline's `feature_extractor/preprocessor_config.json`, which diffusers uses to prepare
  /// image prompts (nil when the folder has none).
  public var featureExtractorConfig: URL? {
    let url = folder.appendingPathComponent("feature_extractor/preprocessor_config.json")
    return FileManager.default.fileExists(atPath: url.path) ? url : nil
  }

  /// A pipeline from already-loaded components (benchmarks with random weights, programmatic use).
  public init(
    folder: URL, tokenizer: CLIPTokenizer, textEncoder: CLIPTextModel, unet: UNet2DConditionModel,
    vae: AutoencoderKL, schedulerConfig: SchedulerConfig, precision: ComputePrecision = .float32
  ) {
    self.folder = folder
    self.tokenizer = tokenizer
    self.textEncoder = textEncoder
    self.unet = unet
    self.vae = vae
    self.schedulerConfig = schedulerConfig
    self.schedulerClassName = schedulerConfig.className ?? "PNDMScheduler"
    self.precision = precision
  }

  /// Pixels per latent (8 for Stable Diffusion).
  public var vaeScaleFactor: Int { vae.config.scaleFactor }

  /// The default output size: the UNet's `sample_size × vae_scale_factor`.
  public var defaultSize: Int { (unet.config.sampleSize ?? 64) * vaeScaleFactor }

  /// Tokenises and encodes `[negative, prompt]` (or just the prompt without guidance).
  ///
  /// matches: diffusers `StableDiffusionPipeline.encode_prompt` (padding to `model_max_length`,
  /// truncation, empty negative prompt when none is given, `clip_skip`).
  /// - Returns: `[B, 77, hidden]` and the truncation warnings.
  public func encodePrompts(prompt: String, negativePrompt: String, guidance: Bool, clipSkip: Int = 0) throws -> (Tensor, [String]) {
    var warnings: [String] = []
    let texts = guidance ? [negativePrompt, prompt] : [prompt]
    let rows = texts.map { text -> [Int] in
      let tokens = tokenizer(text, padding: true)
      if let w = tokens.warning { warnings.append(w) }
      return tokens.ids
    }
    return (try textEncoder.encode(rows, clipSkip: clipSkip), warnings)
  }

  /// Makes the scheduler a generation asked for (or the folder's own).
  public func makeScheduler(_ kind: SchedulerKind?, steps: Int) throws -> any Scheduler {
    if let kind {
      return try Schedulers.makeScheduler(kind: kind, config: schedulerConfig, steps: steps, noiseLayout: .nhwc)
    }
    return try Schedulers.makeScheduler(config: schedulerConfig, steps: steps, noiseLayout: .nhwc)
  }

  /// Checks and resolves the output size (multiples of the VAE scale factor).
  public func resolveSize(width: Int?, height: Int?) throws -> (width: Int, height: Int) {
    let w = width ?? defaultSize
    let h = height ?? defaultSize
    for (name, v) in [("width", w), ("height", h)] {
      guard v > 0, v % vaeScaleFactor == 0 else {
        throw PipelineError.invalidArgument(name: name, reason: "\(v) is not a positive multiple of \(vaeScaleFactor)")
      }
    }
    return (w, h)
  }

  /// Generates one image from text and, optionally, image prompts (IP-Adapter).
  /// - Parameters:
  ///   - imagePrompts: adapters with their projected tokens and scales; their keys/values are
  ///     computed once here and attended to at every step.
  ///   - extensions: per-step additions to the denoising loop (ControlNet, inpainting, windows…).
  public func generate(
    _ parameters: GenerationParameters, imagePrompts: [ImagePrompt] = [],
    extensions: [any DenoisingExtension] = [], progress: ProgressHandler? = nil
  ) throws -> GenerationResult {
    let began = Date()
    guard parameters.steps >= 1 else {
      throw PipelineError.invalidArgument(name: "steps", reason: "\(parameters.steps) must be at least 1")
    }
    guard parameters.guidanceScale.isFinite else {
      throw PipelineError.invalidArgument(name: "guidance scale", reason: "must be a finite number")
    }
    let (width, height) = try resolveSize(width: parameters.width, height: parameters.height)
    let latentShape = [1, vae.config.latentChannels, height / vaeScaleFactor, width / vaeScaleFactor]
    let loop = DenoisingLoop(unet: unet, guidanceScale: parameters.guidanceScale, extensions: extensions)

    let (embeddings, _) = try encodePrompts(
      prompt: parameters.prompt, negativePrompt: parameters.negativePrompt, guidance: loop.usesGuidance,
      clipSkip: parameters.clipSkip)
    var conditioning = try unet.makeConditioning(encoderHiddenStates: embeddings)
    for prompt in imagePrompts { try prompt.apply(to: &conditioning) }

    var scheduler = try makeScheduler(parameters.scheduler, steps: parameters.steps)
    var generator = TorchGenerator(seed: parameters.seed)
    var latents: Tensor
    if let given = parameters.latents {
      guard given.shape == latentShape else {
        throw PipelineError.invalidArgument(
          name: "latents", reason: "shape \(given.shape) does not match \(latentShape) for a \(width)×\(height) image")
      }
      latents = try Ops.nchwToNhwc(given)
    } else {
      latents = generator.randn(nchw: latentShape, layout: .nhwc)
    }
    latents = Ops.scale(latents, scheduler.initNoiseSigma)
    let prepared = Date()

    latents = try loop.run(
      latents: latents, scheduler: &scheduler, conditioning: conditioning, generator: &generator,
      progress: progress)
    let denoised = Date()
    let image = try decode(latents)
    var result = GenerationResult(
      latents: try Ops.nhwcToNchw(latents), image: image, parametersText: "",
      preparationSeconds: prepared.timeIntervalSince(began), denoisingSeconds: denoised.timeIntervalSince(prepared))
    result.parametersText = ParametersText.describe(
      parameters, width: width, height: height, model: folder.lastPathComponent,
      schedulerName: parameters.scheduler?.displayName ?? SchedulerKind.displayName(forClass: schedulerClassName),
      extra: imagePrompts.map { ("IP-Adapter", "\(URL(fileURLWithPath: $0.adapter.path).lastPathComponent) (\(ParametersText.format($0.scale)))") })
    return result
  }

  /// VAE-decodes NHWC latents into an 8-bit image (diffusers' `VaeImageProcessor.postprocess`).
  public func decode(_ latents: Tensor) throws -> Image {
    let scaled = Ops.divide(latents, vae.config.scalingFactor)  // `latents / scaling_factor`
    let decoded = try vae.decode(scaled)
    let processor = VaeImageProcessor(vaeScaleFactor: vaeScaleFactor)
    guard let image = processor.postprocess(decoded).first else {
      throw PipelineError.invalidArgument(name: "latents", reason: "decoded to no image")
    }
    return image
  }
}
