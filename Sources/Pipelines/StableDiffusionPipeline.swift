import Foundation
import IPAdapter
import Imaging
import Models
import NN
import Schedulers
import TensorCore
import Tokenizers
import TorchRandom

/// A Stable Diffusion 1.x/2.x text-to-image pipeline loaded from a diffusers folder
/// (`model_index.json`, `tokenizer/`, `text_encoder/`, `unet/`, `vae/`, `scheduler/`).
///
/// matches: diffusers `StableDiffusionPipeline` (0.42.1) with `output_type="pil"`, no safety
/// checker. Limitations: one image per call, no prompt weighting, no textual inversion.
public final class StableDiffusionPipeline: Sendable {
  public let folder: URL
  public let tokenizer: CLIPTokenizer
  public let textEncoder: CLIPTextModel
  public let unet: UNet2DConditionModel
  public let vae: AutoencoderKL
  public let schedulerConfig: SchedulerConfig
  /// The folder's own scheduler class (`_class_name`), used when no sampler is requested.
  public let schedulerClassName: String
  public let precision: ComputePrecision
  /// The serial queue every generation, encoding and decoding of this pipeline runs on: one at a
  /// time, in call order (see `ComputeQueue`).
  let compute: ComputeQueue

  /// Loads every component. Weights are memory-mapped; kernels are prepared lazily per shape.
  /// Weights holding NaN or infinity are refused (`WeightLoadingError.nonFinite`) unless
  /// `allowNonFiniteWeights`.
  public init(folder: URL, precision: ComputePrecision = .float32, allowNonFiniteWeights: Bool = false) throws {
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
    compute = ComputeQueue(label: "ipadapter.pipeline")
    let options = PrepareOptions(precision: precision, allowNonFiniteWeights: allowNonFiniteWeights)
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

  /// The model's name for the PNG parameters: the folder's, or the checkpoint file's without
  /// extension.
  public var modelName: String {
    var isDir: ObjCBool = false
    _ = FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDir)
    return isDir.boolValue ? folder.lastPathComponent : folder.deletingPathExtension().lastPathComponent
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
    compute = ComputeQueue(label: "ipadapter.pipeline")
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
  func encodePrompts(prompt: String, negativePrompt: String, guidance: Bool, clipSkip: Int = 0) throws -> (Tensor, [String]) {
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

  /// The generation behind every public entry point, on the calling thread (the public ones run it
  /// on `compute`).
  func generateNow(
    _ parameters: GenerationParameters, conditioning given: TextConditioning?, imagePrompts: [ImagePrompt],
    controlNets: [ControlNetUnit], extensions: [any DenoisingExtension], options: GenerationOptions,
    progress: ProgressHandler?, preview: ((GenerationPreview) -> Void)?
  ) throws -> GenerationResult {
    let began = Date()
    try validate(parameters)
    let (width, height) = try resolveSize(parameters)
    let release = options.memory == .releaseAfterUse
    let text: TextConditioning
    if let given {
      try given.check(against: parameters)
      text = given
    } else {
      text = try encodeTextNow(parameters)
    }
    if release {
      textEncoder.releaseKernels()
      Runtime.returnFreedMemory()
    }
    let latents = try denoiseNow(
      parameters, text: text, width: width, height: height, imagePrompts: imagePrompts, controlNets: controlNets,
      extensions: extensions, options: options, progress: progress, preview: preview)
    let denoised = Date()
    if release {
      unet.releaseKernels()
      for unit in controlNets { unit.model.releaseKernels() }
      Runtime.returnFreedMemory()
    }
    let image = try decodeNHWC(latents.nhwc)
    if release {
      vae.releaseKernels()
      Runtime.returnFreedMemory()
    }
    var extra = imagePrompts.map {
      ("IP-Adapter", "\(URL(fileURLWithPath: $0.adapter.path).lastPathComponent) (\(ParametersText.format($0.scale)))")
    }
    if parameters.initImage != nil {
      extra.append(("Denoising strength", "\(parameters.strength ?? (parameters.mask == nil ? 0.8 : 1.0))"))
    }
    if parameters.mask != nil, parameters.maskBlur > 0 {
      extra.append(("Mask blur", ParametersText.format(Float(parameters.maskBlur))))
    }
    for unit in controlNets {
      extra.append(("ControlNet", "\(unit.name) (\(ParametersText.format(unit.scale)))"))
    }
    return GenerationResult(
      latents: try Ops.nhwcToNchw(latents.nhwc), image: image,
      parametersText: ParametersText.describe(
        parameters, width: width, height: height, model: modelName,
        schedulerName: parameters.scheduler?.displayName ?? SchedulerKind.displayName(forClass: schedulerClassName),
        extra: extra),
      preparationSeconds: latents.firstStepAt.timeIntervalSince(began),
      denoisingSeconds: denoised.timeIntervalSince(latents.firstStepAt), warnings: text.warnings)
  }

  /// Conditioning, starting latents and the denoising loop; NHWC latents and when the loop began.
  func denoiseNow(
    _ parameters: GenerationParameters, text: TextConditioning, width: Int, height: Int, imagePrompts: [ImagePrompt],
    controlNets: [ControlNetUnit], extensions: [any DenoisingExtension], options: GenerationOptions,
    progress: ProgressHandler?, preview: ((GenerationPreview) -> Void)?
  ) throws -> (nhwc: Tensor, firstStepAt: Date) {
    let latentShape = [1, vae.config.latentChannels, height / vaeScaleFactor, width / vaeScaleFactor]
    var loop = DenoisingLoop(unet: unet, guidanceScale: parameters.guidanceScale, extensions: extensions)
    loop.stopOnNonFinite = !parameters.allowNaN
    loop.modelName = modelName
    let release = options.memory == .releaseAfterUse

    var conditioning = try unet.makeConditioning(encoderHiddenStates: text.embeddings)
    try attach(imagePrompts, to: &conditioning, loop: &loop, width: width, height: height)
    for unit in controlNets {
      loop.extensions.append(
        try ControlNetExtension(
          unit: unit, textEmbeddings: text.embeddings, guidance: loop.usesGuidance, width: width, height: height,
          maxPixels: parameters.maxPixels, unet: unet))
    }

    var scheduler = try makeScheduler(parameters.scheduler, steps: parameters.steps)
    var generator = TorchGenerator(seed: parameters.seed)
    var start = 0
    var latents: Tensor
    if let image = parameters.initImage, let mask = parameters.mask {
      let blurred = parameters.maskBlur > 0 ? VaeImageProcessor.blur(mask, blurFactor: parameters.maskBlur) : mask
      let point = try inpaintingStart(
        image, mask: blurred, width: width, height: height, strength: parameters.strength ?? 1.0, scheduler: scheduler,
        steps: parameters.steps, guidance: loop.usesGuidance, maxPixels: parameters.maxPixels, generator: &generator)
      (latents, start) = (point.latents, point.startIndex)
      if let e = point.stepExtension { loop.extensions.append(e) }
      if release { vae.encoder.releaseKernels() }
    } else if let image = parameters.initImage {
      let point = try imageToImageStart(
        image, width: width, height: height, strength: parameters.strength ?? 0.8, scheduler: scheduler,
        steps: parameters.steps, maxPixels: parameters.maxPixels, generator: &generator)
      (latents, start) = (point.latents, point.startIndex)
      if release { vae.encoder.releaseKernels() }
    } else {
      guard unet.inChannels == vae.config.latentChannels else {
        throw PipelineError.invalidArgument(
          name: "initImage", reason: "this UNet takes \(unet.inChannels) input channels (an inpainting model): give an init image and a mask")
      }
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
    }
    if let preview, options.previewEvery > 0 {
      let every = options.previewEvery
      let wantsImage = options.preview == .image
      loop.afterEachStep = { [self] done, total, current in
        guard done % every == 0, done < total else { return }
        let image = wantsImage ? try decodeNHWC(current) : nil
        preview(GenerationPreview(step: done, total: total, latents: try Ops.nhwcToNchw(current), image: image))
      }
    }
    let firstStep = Date()
    latents = try loop.run(
      latents: latents, scheduler: &scheduler, startIndex: start, conditioning: conditioning,
      generator: &generator, progress: progress)
    return (latents, firstStep)
  }

  /// The output size a generation with `parameters` will have (width, height).
  public func outputSize(for parameters: GenerationParameters) throws -> (Int, Int) {
    let s = try resolveSize(parameters)
    return (s.width, s.height)
  }

  /// Checks parameter combinations that need no model work.
  func validate(_ p: GenerationParameters) throws {
    guard p.steps >= 1 else {
      throw PipelineError.invalidArgument(name: "steps", reason: "\(p.steps) must be at least 1")
    }
    guard p.guidanceScale.isFinite else {
      throw PipelineError.invalidArgument(name: "guidance scale", reason: "must be a finite number")
    }
    if p.latents != nil, p.initImage != nil {
      throw PipelineError.invalidArgument(
        name: "latents", reason: "initial latents cannot be combined with an init image (its noise comes from --seed)")
    }
    if p.mask != nil, p.initImage == nil {
      throw PipelineError.invalidArgument(name: "mask", reason: "a mask needs an init image to inpaint")
    }
    if !(p.maskBlur >= 0) || !p.maskBlur.isFinite {
      throw PipelineError.invalidArgument(name: "maskBlur", reason: "\(p.maskBlur) must be a finite number ≥ 0")
    }
    if p.strength != nil, p.initImage == nil {
      throw PipelineError.invalidArgument(name: "strength", reason: "strength needs an init image")
    }
  }

  /// The output size: explicit, else the init image's size rounded down to a multiple of 8, else
  /// the UNet's default.
  func resolveSize(_ p: GenerationParameters) throws -> (width: Int, height: Int) {
    let size: (width: Int, height: Int)
    if let image = p.initImage {
      let w = p.width ?? (image.width - image.width % vaeScaleFactor)
      let h = p.height ?? (image.height - image.height % vaeScaleFactor)
      size = try resolveSize(width: w, height: h)
    } else {
      size = try resolveSize(width: p.width, height: p.height)
    }
    let (pixels, overflow) = size.width.multipliedReportingOverflow(by: size.height)
    guard !overflow, pixels <= p.maxPixels else {
      let from = p.initImage != nil && (p.width == nil || p.height == nil) ? " (the init image's size)" : ""
      throw PipelineError.invalidArgument(
        name: "width × height",
        reason: "\(size.width)×\(size.height)\(from) is more than maxPixels = \(p.maxPixels) pixels; give a smaller size or raise maxPixels")
    }
    return size
  }

  /// VAE-decodes NHWC latents into an 8-bit image (diffusers' `VaeImageProcessor.postprocess`).
  func decodeNHWC(_ latents: Tensor) throws -> Image {
    let scaled = Ops.divide(latents, vae.config.scalingFactor)  // `latents / scaling_factor`
    let decoded = try vae.decode(scaled)
    let processor = VaeImageProcessor(vaeScaleFactor: vaeScaleFactor)
    guard let image = processor.postprocess(decoded).first else {
      throw PipelineError.invalidArgument(name: "latents", reason: "decoded to no image")
    }
    return image
  }
}
