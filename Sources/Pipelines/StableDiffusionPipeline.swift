import Foundation
import IPAdapter
import Imaging
import Models
import NN
import Schedulers
import TensorCore
import Tokenizers
import TorchRandom

/// A Stable Diffusion 1.x/2.x or SDXL pipeline loaded from a diffusers folder (`model_index.json`,
/// `tokenizer/`, `text_encoder/`, `unet/`, `vae/`, `scheduler/`; SDXL adds `tokenizer_2/` and
/// `text_encoder_2/`). The kind is detected from the UNet: an `addition_embed_type: "text_time"`
/// UNet makes an SDXL pipeline (`sdxl` is set). An SDXL refiner folder (`model_index.json`
/// without `text_encoder`, `requires_aesthetics_score`) has no first tokenizer and text encoder.
///
/// matches: diffusers `StableDiffusionPipeline` (0.42.1) with `output_type="pil"`, no safety
/// checker, and for SDXL `StableDiffusionXLPipeline`, `StableDiffusionXLImg2ImgPipeline` (the
/// refiner) and `StableDiffusionXLInpaintPipeline` (no watermark). Limitations: one image per
/// call, no prompt weighting, no textual inversion.
public final class StableDiffusionPipeline: Sendable {
  public let folder: URL
  /// The (first) tokenizer and text encoder; nil only for an SDXL refiner.
  public let tokenizer: CLIPTokenizer?
  public let textEncoder: CLIPTextModel?
  /// SDXL's second tokenizer and text encoder (nil for SD 1.x/2.x).
  public let sdxl: SDXLTextEncoders?
  public let unet: UNet2DConditionModel
  public let vae: AutoencoderKL
  public let schedulerConfig: SchedulerConfig
  /// The folder's own scheduler class (`_class_name`), used when no sampler is requested.
  public let schedulerClassName: String
  public let precision: ComputePrecision
  /// The serial queue every generation, encoding and decoding of this pipeline runs on: one at a
  /// time, in call order (see `ComputeQueue`).
  let compute: ComputeQueue
  /// The LoRAs fused into the UNet and text encoders (`applyLoRAs`).
  let loraState = LoRAState()

  /// Loads every component. Weights are memory-mapped; kernels are prepared lazily per shape.
  /// Weights holding NaN or infinity are refused (`WeightLoadingError.nonFinite`) unless
  /// `allowNonFiniteWeights`. `variant` (diffusers' `variant="fp16"`) prefers each component's
  /// `*.{variant}.safetensors` files.
  public init(
    folder: URL, precision: ComputePrecision = .float32, allowNonFiniteWeights: Bool = false, variant: String? = nil
  ) throws {
    let fm = FileManager.default
    guard fm.fileExists(atPath: folder.appendingPathComponent("model_index.json").path) else {
      var isDir: ObjCBool = false
      if !fm.fileExists(atPath: folder.path, isDirectory: &isDir) {
        throw ModelFileError.missingFolder(path: folder.path)
      }
      throw PipelineError.notAPipelineFolder(path: folder.path)
    }
    func isFolder(_ component: String) -> Bool {
      var isDir: ObjCBool = false
      return fm.fileExists(atPath: folder.appendingPathComponent(component).path, isDirectory: &isDir) && isDir.boolValue
    }
    for component in ["unet", "vae", "scheduler"] where !isFolder(component) {
      throw PipelineError.missingComponent(folder: folder.path, component: component)
    }
    self.folder = folder
    self.precision = precision
    compute = ComputeQueue(label: "ipadapter.pipeline")
    let options = PrepareOptions(precision: precision, allowNonFiniteWeights: allowNonFiniteWeights)
    unet = try ModelLoader.unet(folder.appendingPathComponent("unet"), prepare: options, variant: variant)
    sdxl = unet.textTimeEmbedding == nil
      ? nil : try SDXLTextEncoders.load(folder: folder, prepare: options, variant: variant)
    // Only an SDXL refiner may lack the first encoder, and only when model_index.json says so.
    let index = try ConfigFile.load(ModelIndexFlags.self, from: folder.appendingPathComponent("model_index.json"))
    if sdxl != nil, !index.declaresTextEncoder, !isFolder("text_encoder") {
      (tokenizer, textEncoder) = (nil, nil)
    } else {
      for component in ["tokenizer", "text_encoder"] where !isFolder(component) {
        throw PipelineError.missingComponent(folder: folder.path, component: component)
      }
      tokenizer = try CLIPTokenizer(directory: folder.appendingPathComponent("tokenizer"))
      textEncoder = try ModelLoader.textEncoder(
        folder.appendingPathComponent("text_encoder"), prepare: options, variant: variant)
    }
    vae = try ModelLoader.vae(folder.appendingPathComponent("vae"), prepare: options, variant: variant)
    let schedulerURL = folder.appendingPathComponent("scheduler/scheduler_config.json")
    guard fm.fileExists(atPath: schedulerURL.path) else { throw ModelConfigError.missingFile(path: schedulerURL.path) }
    schedulerConfig = try SchedulerConfig(contentsOf: schedulerURL)
    schedulerClassName = schedulerConfig.className ?? "PNDMScheduler"
    try Self.checkCompatible(unet: unet, textEncoder: textEncoder, sdxl: sdxl, unetConfig: folder.appendingPathComponent("unet/config.json").path)
  }

  /// The UNet's cross-attention width must be the text width (SDXL: both encoders' widths, a
  /// refiner's second encoder's), and an SDXL UNet's `add_embedding` must take the pooled width
  /// plus 6 time ids (5 with `requires_aesthetics_score`).
  static func checkCompatible(
    unet: UNet2DConditionModel, textEncoder: CLIPTextModel?, sdxl: SDXLTextEncoders?, unetConfig: String
  ) throws {
    guard textEncoder != nil || sdxl != nil else {
      throw PipelineError.invalidArgument(name: "textEncoder", reason: "a Stable Diffusion 1.x/2.x pipeline needs its text encoder")
    }
    let first = textEncoder?.config.hiddenSize ?? 0
    let width = first + (sdxl?.textEncoder2.config.hiddenSize ?? 0)
    guard unet.crossAttentionDim == width else {
      let what = sdxl == nil
        ? "the text encoder's hidden_size \(width)"
        : textEncoder == nil
          ? "text_encoder_2's hidden_size \(width) (a refiner without text_encoder)"
          : "the two text encoders' hidden sizes \(first) + \(sdxl!.textEncoder2.config.hiddenSize)"
      throw ModelConfigError.malformed(
        path: unetConfig, field: "cross_attention_dim", reason: "\(unet.crossAttentionDim) does not match \(what)")
    }
    if let shape = unet.textTimeEmbedding, let xl = sdxl {
      let pooled = xl.textEncoder2.config.projectionDim
      let ids = xl.timeIdCount(for: shape)
      guard shape.inputDim == pooled + ids * shape.timeEmbedDim else {
        let hint = xl.requiresAestheticsScore == nil
          ? "" : " (model_index.json's requires_aesthetics_score is \(xl.requiresAestheticsScore!))"
        throw ModelConfigError.malformed(
          path: unetConfig, field: "projection_class_embeddings_input_dim",
          reason: "\(shape.inputDim) is not text_encoder_2's projection_dim \(pooled) + \(ids) × addition_time_embed_dim \(shape.timeEmbedDim)\(hint)")
      }
    }
  }

  /// Whether the micro-conditioning is original size + crop + aesthetic score (an SDXL refiner).
  public var requiresAestheticsScore: Bool {
    guard let xl = sdxl, let shape = unet.textTimeEmbedding else { return false }
    return xl.timeIdCount(for: shape) == 5
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
  /// Throws when the components do not fit together (see `checkCompatible`).
  public init(
    folder: URL, tokenizer: CLIPTokenizer?, textEncoder: CLIPTextModel?, unet: UNet2DConditionModel,
    vae: AutoencoderKL, schedulerConfig: SchedulerConfig, precision: ComputePrecision = .float32,
    sdxl: SDXLTextEncoders? = nil
  ) throws {
    if (tokenizer == nil) != (textEncoder == nil) {
      throw PipelineError.invalidArgument(name: "tokenizer", reason: "give the tokenizer and the text encoder together")
    }
    if (unet.textTimeEmbedding != nil) != (sdxl != nil) {
      throw PipelineError.invalidArgument(
        name: "sdxl", reason: unet.textTimeEmbedding != nil
          ? "this UNet is an SDXL UNet (text_time embedding): give the second tokenizer and text encoder"
          : "this UNet has no SDXL text_time embedding: do not give SDXL text encoders")
    }
    try Self.checkCompatible(unet: unet, textEncoder: textEncoder, sdxl: sdxl, unetConfig: "unet/config.json")
    self.folder = folder
    self.tokenizer = tokenizer
    self.textEncoder = textEncoder
    self.sdxl = sdxl
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

  /// Whether this is an SDXL pipeline.
  public var isSDXL: Bool { sdxl != nil }

  /// The guidance scale used when a generation gives none: diffusers' default, 7.5 (SDXL 5.0,
  /// SDXL inpainting 7.5).
  public func defaultGuidanceScale(inpainting: Bool = false) -> Float { isSDXL && !inpainting ? 5.0 : 7.5 }

  /// diffusers' default `strength`: image-to-image 0.8 (SDXL 0.3), inpainting 1.0 (SDXL 0.9999).
  public func defaultStrength(inpainting: Bool) -> Double {
    inpainting ? (isSDXL ? 0.9999 : 1.0) : (isSDXL ? 0.3 : 0.8)
  }

  /// `parameters.guidanceScale`, or the pipeline's default for that kind of generation.
  public func guidanceScale(for parameters: GenerationParameters) -> Float {
    parameters.guidanceScale ?? defaultGuidanceScale(inpainting: parameters.mask != nil)
  }

  /// Tokenises and encodes `[negative, prompt]` (or just the prompt without guidance).
  ///
  /// matches: diffusers `StableDiffusionPipeline.encode_prompt` (padding to `model_max_length`,
  /// truncation, empty negative prompt when none is given, `clip_skip`).
  /// - Returns: `[B, 77, hidden]` and the truncation warnings.
  func encodePrompts(prompt: String, negativePrompt: String, guidance: Bool, clipSkip: Int = 0) throws -> (Tensor, [String]) {
    guard let tokenizer, let textEncoder else {
      throw PipelineError.invalidArgument(name: "prompt", reason: "\(modelName) has no text encoder")
    }
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
  public func makeScheduler(_ kind: SchedulerKind?, steps: Int, eta: Float? = nil) throws -> any Scheduler {
    if let kind {
      return try Schedulers.makeScheduler(kind: kind, config: schedulerConfig, steps: steps, noiseLayout: .nhwc, eta: eta)
    }
    return try Schedulers.makeScheduler(config: schedulerConfig, steps: steps, noiseLayout: .nhwc, eta: eta)
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
      try given.check(against: parameters, guidanceScale: guidanceScale(for: parameters))
      text = given
    } else {
      text = try encodeTextNow(parameters)
    }
    if release {
      textEncoder?.releaseKernels()
      sdxl?.textEncoder2.releaseKernels()
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
    let image = try decodeNHWC(latents.nhwc, tiling: options.vaeTiling)
    if release {
      vae.releaseKernels()
      Runtime.returnFreedMemory()
    }
    var extra: [(String, String)] = []
    for p in imagePrompts {
      extra.append(("IP-Adapter", "\(URL(fileURLWithPath: p.adapter.path).lastPathComponent) (\(ParametersText.format(p.scale)))"))
      if p.adapter.faceIDLoRA != nil { extra.append(("FaceID LoRA", ParametersText.format(p.faceIDLoRAScale))) }
    }
    if parameters.initImage != nil || parameters.initLatents != nil, parameters.denoisingStart == nil {
      extra.append(("Denoising strength", "\(parameters.strength ?? defaultStrength(inpainting: parameters.mask != nil))"))
    }
    if parameters.mask != nil, parameters.maskBlur > 0 {
      extra.append(("Mask blur", ParametersText.format(Float(parameters.maskBlur))))
    }
    for unit in controlNets {
      extra.append(("ControlNet", "\(unit.name) (\(ParametersText.format(unit.scale)))"))
    }
    var shown = parameters
    let lora = loraParameters(prompt: parameters.prompt)
    shown.prompt = lora.prompt
    if let field = lora.field { extra.append(field) }
    return GenerationResult(
      latents: try Ops.nhwcToNchw(latents.nhwc), image: image,
      parametersText: ParametersText.describe(
        shown, width: width, height: height, model: modelName,
        schedulerName: parameters.scheduler?.displayName ?? SchedulerKind.displayName(forClass: schedulerClassName),
        guidanceScale: guidanceScale(for: parameters), extra: extra),
      preparationSeconds: latents.firstStepAt.timeIntervalSince(began),
      denoisingSeconds: denoised.timeIntervalSince(latents.firstStepAt), warnings: text.warnings)
  }

  /// Conditioning, starting latents and the denoising loop; NHWC latents and when the loop began.
  func denoiseNow(
    _ parameters: GenerationParameters, text: TextConditioning, width: Int, height: Int, imagePrompts: [ImagePrompt],
    controlNets: [ControlNetUnit], extensions: [any DenoisingExtension], options: GenerationOptions,
    progress: ProgressHandler?, preview: ((GenerationPreview) -> Void)?
  ) throws -> (nhwc: Tensor, firstStepAt: Date) {
    try syncFusedLoRAs(for: imagePrompts)
    let latentShape = [1, vae.config.latentChannels, height / vaeScaleFactor, width / vaeScaleFactor]
    var loop = DenoisingLoop(unet: unet, guidanceScale: guidanceScale(for: parameters), extensions: extensions)
    loop.guidanceRescale = parameters.guidanceRescale
    loop.stopOnNonFinite = !parameters.allowNaN
    loop.modelName = modelName
    let release = options.memory == .releaseAfterUse

    var textTime: TextTimeConditions?
    if let pooled = text.pooled {
      textTime = TextTimeConditions(
        textEmbeds: pooled,
        timeIds: Self.sdxlTimeIds(
          parameters, width: width, height: height,
          imageToImage: parameters.initImage != nil || parameters.initLatents != nil, guidance: loop.usesGuidance,
          aesthetic: requiresAestheticsScore))
    }
    var conditioning = try unet.makeConditioning(encoderHiddenStates: text.embeddings, textTime: textTime)
    try attach(imagePrompts, to: &conditioning, loop: &loop, width: width, height: height)
    for unit in controlNets {
      loop.extensions.append(
        try ControlNetExtension(
          unit: unit, textEmbeddings: text.embeddings, textTime: textTime, guidance: loop.usesGuidance, width: width,
          height: height, maxPixels: parameters.maxPixels, unet: unet))
    }

    var scheduler = try makeScheduler(parameters.scheduler, steps: parameters.steps, eta: parameters.eta)
    var generator = TorchGenerator(seed: parameters.seed)
    var start = 0
    var latents: Tensor
    if let image = parameters.initImage, let mask = parameters.mask {
      let blurred = parameters.maskBlur > 0 ? VaeImageProcessor.blur(mask, blurFactor: parameters.maskBlur) : mask
      let point = try inpaintingStart(
        image, mask: blurred, width: width, height: height,
        strength: parameters.strength ?? defaultStrength(inpainting: true), denoisingStart: parameters.denoisingStart,
        scheduler: scheduler, steps: parameters.steps, guidance: loop.usesGuidance, maxPixels: parameters.maxPixels,
        vaeTiling: options.vaeTiling, generator: &generator)
      (latents, start) = (point.latents, point.startIndex)
      if let e = point.stepExtension { loop.extensions.append(e) }
      if release { vae.encoder.releaseKernels() }
    } else if parameters.initImage != nil || parameters.initLatents != nil {
      let point = try imageToImageStart(
        parameters, width: width, height: height, scheduler: scheduler, vaeTiling: options.vaeTiling, generator: &generator)
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
        let image = wantsImage ? try decodeNHWC(current, tiling: options.vaeTiling) : nil
        preview(GenerationPreview(step: done, total: total, latents: try Ops.nhwcToNchw(current), image: image))
      }
    }
    let firstStep = Date()
    latents = try loop.run(
      latents: latents, scheduler: &scheduler, startIndex: start,
      endIndex: try parameters.denoisingEnd.map { try denoisingEndIndex($0, scheduler: scheduler, start: start) },
      conditioning: conditioning, generator: &generator, progress: progress)
    return (latents, firstStep)
  }

  /// One past the last step for `denoising_end`: the steps whose timestep is at least
  /// `round(T − end · T)` (T = `num_train_timesteps`, Python's half-to-even rounding).
  ///
  /// matches: `StableDiffusionXLPipeline.__call__`'s `denoising_end` truncation.
  func denoisingEndIndex(_ end: Double, scheduler: any Scheduler, start: Int) throws -> Int {
    let cutoff = timestepCutoff(end)
    let index = scheduler.timesteps.filter { $0 >= cutoff }.count
    guard index > start else {
      throw PipelineError.invalidArgument(
        name: "denoising end", reason: "\(end) leaves no denoising step (the first step's timestep is below \(Int(cutoff)))")
    }
    return index
  }

  /// The timestep at fraction `f` of the denoising (`denoising_start`/`denoising_end`): diffusers'
  /// `round(num_train_timesteps − f · num_train_timesteps)` (Python's round: half to even).
  func timestepCutoff(_ f: Double) -> Float {
    let trainSteps = Double(schedulerConfig.numTrainTimesteps ?? 1000)
    return Float((trainSteps - f * trainSteps).rounded(.toNearestOrEven))
  }

  /// The output size a generation with `parameters` will have (width, height).
  public func outputSize(for parameters: GenerationParameters) throws -> (Int, Int) {
    let s = try resolveSize(parameters)
    return (s.width, s.height)
  }

  /// The micro-conditioning values accepted (they only feed sinusoids; SDXL trained on ≤ 4096).
  static let microConditioningSizes = 1...65_536
  static let microConditioningCrops = 0...65_536

  /// Checks parameter combinations that need no model work.
  func validate(_ p: GenerationParameters) throws {
    guard p.steps >= 1 else {
      throw PipelineError.invalidArgument(name: "steps", reason: "\(p.steps) must be at least 1")
    }
    guard guidanceScale(for: p).isFinite else {
      throw PipelineError.invalidArgument(name: "guidance scale", reason: "must be a finite number")
    }
    guard p.guidanceRescale.isFinite, p.guidanceRescale >= 0, p.guidanceRescale <= 1 else {
      throw PipelineError.invalidArgument(name: "guidance rescale", reason: "\(p.guidanceRescale) must be in [0, 1]")
    }
    if let end = p.denoisingEnd, !(end > 0 && end < 1) {
      throw PipelineError.invalidArgument(name: "denoising end", reason: "\(end) must be strictly between 0 and 1")
    }
    if let start = p.denoisingStart {
      guard start > 0, start < 1 else {
        throw PipelineError.invalidArgument(name: "denoising start", reason: "\(start) must be strictly between 0 and 1")
      }
      guard p.initImage != nil || p.initLatents != nil else {
        throw PipelineError.invalidArgument(
          name: "denoising start", reason: "continues an image-to-image run: give an init image or init latents")
      }
      if let end = p.denoisingEnd, start >= end {
        throw PipelineError.invalidArgument(
          name: "denoising start", reason: "\(start) must be smaller than denoising end \(end)")
      }
    }
    for (name, score) in [("aesthetic score", p.aestheticScore), ("negative aesthetic score", p.negativeAestheticScore)] {
      guard let score else { continue }
      guard score.isFinite else { throw PipelineError.invalidArgument(name: name, reason: "must be a finite number") }
      guard requiresAestheticsScore else {
        throw PipelineError.invalidArgument(
          name: name, reason: "only conditions an SDXL refiner (requires_aesthetics_score); \(modelName) does not use it")
      }
    }
    if requiresAestheticsScore || tokenizer == nil {
      if p.initImage == nil && p.initLatents == nil {
        throw PipelineError.invalidArgument(
          name: "initImage", reason: "\(modelName) is an SDXL refiner (image-to-image only): give an init image or init latents")
      }
    }
    if tokenizer == nil {
      for (name, value) in [("prompt 2", p.prompt2), ("negative prompt 2", p.negativePrompt2)] where value != nil {
        throw PipelineError.invalidArgument(
          name: name, reason: "\(modelName) has only one text encoder (a refiner): its prompt is the prompt")
      }
    }
    if !isSDXL {
      let sdxlOnly: [(String, Bool)] = [
        ("prompt 2", p.prompt2 != nil), ("negative prompt 2", p.negativePrompt2 != nil),
        ("original size", p.originalSize != nil), ("target size", p.targetSize != nil),
        ("crop top-left", p.cropTopLeft != nil), ("negative original size", p.negativeOriginalSize != nil),
        ("negative target size", p.negativeTargetSize != nil), ("negative crop top-left", p.negativeCropTopLeft != nil),
      ]
      if let (name, _) = sdxlOnly.first(where: { $0.1 }) {
        throw PipelineError.invalidArgument(name: name, reason: "is an SDXL option; \(modelName) is not an SDXL model")
      }
    }
    for (name, size) in [
      ("original size", p.originalSize), ("target size", p.targetSize), ("negative original size", p.negativeOriginalSize),
      ("negative target size", p.negativeTargetSize),
    ] {
      if let size, !Self.microConditioningSizes.contains(size.width) || !Self.microConditioningSizes.contains(size.height) {
        throw PipelineError.invalidArgument(
          name: name, reason: "\(size.width)×\(size.height) must have sides in 1...65536")
      }
    }
    for (name, crop) in [("crop top-left", p.cropTopLeft), ("negative crop top-left", p.negativeCropTopLeft)] {
      if let crop, !Self.microConditioningCrops.contains(crop.top) || !Self.microConditioningCrops.contains(crop.left) {
        throw PipelineError.invalidArgument(
          name: name, reason: "\(crop.top),\(crop.left) must be in 0...65536")
      }
    }
    if p.latents != nil, p.initImage != nil || p.initLatents != nil {
      throw PipelineError.invalidArgument(
        name: "latents", reason: "initial noise latents cannot be combined with an init image or init latents (their noise comes from --seed)")
    }
    if p.initLatents != nil {
      if p.initImage != nil {
        throw PipelineError.invalidArgument(name: "init latents", reason: "give an init image or init latents, not both")
      }
      if p.mask != nil {
        throw PipelineError.invalidArgument(name: "init latents", reason: "inpainting needs the init image, not latents")
      }
    }
    if p.mask != nil, p.initImage == nil {
      throw PipelineError.invalidArgument(name: "mask", reason: "a mask needs an init image to inpaint")
    }
    if !(p.maskBlur >= 0) || !p.maskBlur.isFinite {
      throw PipelineError.invalidArgument(name: "maskBlur", reason: "\(p.maskBlur) must be a finite number ≥ 0")
    }
    if p.strength != nil, p.initImage == nil && p.initLatents == nil {
      throw PipelineError.invalidArgument(name: "strength", reason: "strength needs an init image")
    }
  }

  /// The output size: explicit, else the init image's size rounded down to a multiple of 8, else
  /// the UNet's default.
  func resolveSize(_ p: GenerationParameters) throws -> (width: Int, height: Int) {
    let size: (width: Int, height: Int)
    if let given = p.initLatents {
      let expected = [1, vae.config.latentChannels]
      guard given.rank == 4, Array(given.shape.prefix(2)) == expected, given.shape[2] > 0, given.shape[3] > 0 else {
        throw PipelineError.invalidArgument(
          name: "init latents", reason: "shape \(given.shape) is not [1, \(vae.config.latentChannels), H/8, W/8]")
      }
      let (h, overflowH) = given.shape[2].multipliedReportingOverflow(by: vaeScaleFactor)
      let (w, overflowW) = given.shape[3].multipliedReportingOverflow(by: vaeScaleFactor)
      guard !overflowH, !overflowW else {
        throw PipelineError.invalidArgument(name: "init latents", reason: "shape \(given.shape) is too large")
      }
      if (p.width.map { $0 != w } ?? false) || (p.height.map { $0 != h } ?? false) {
        throw PipelineError.invalidArgument(
          name: "width × height", reason: "init latents \(given.shape) make a \(w)×\(h) image; leave the size out or match it")
      }
      size = try resolveSize(width: w, height: h)
    } else if let image = p.initImage {
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
  /// SDXL with a VAE's `latents_mean`/`latents_std`: `latents · std / scaling_factor + mean`.
  func decodeNHWC(_ latents: Tensor, tiling: VAETilingMode = .off) throws -> Image {
    let scaling = vae.config.scalingFactor
    let scaled: Tensor
    if isSDXL, let (mean, std) = vae.config.latentStatistics {
      scaled = Self.perChannel(latents) { x, c in x * std[c] / scaling + mean[c] }
    } else {
      scaled = Ops.divide(latents, scaling)  // `latents / scaling_factor`
    }
    let decoded = try decodeVAE(scaled, tiling: tiling)
    let processor = VaeImageProcessor(vaeScaleFactor: vaeScaleFactor)
    guard let image = processor.postprocess(decoded).first else {
      throw PipelineError.invalidArgument(name: "latents", reason: "decoded to no image")
    }
    return image
  }
}
