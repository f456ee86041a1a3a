import Foundation
import Models
import NN
import Schedulers
import TensorCore
import Tokenizers

/// The diffusers-format configuration a single-file checkpoint is built with: `unet/config.json`,
/// `vae/config.json`, `text_encoder/config.json`, `scheduler/scheduler_config.json` and, when
/// present, `tokenizer/` (else the bundled SD1.5 tokenizer) of a configs folder; for SDXL also
/// `text_encoder_2/config.json`, `tokenizer_2/` (else the bundled one, padding with `!`) and
/// `model_index.json`'s `force_zeros_for_empty_prompt`.
///
/// matches: what diffusers' `from_single_file` takes from its `config=` pipeline (by default the
/// hub's `stable-diffusion-v1-5/stable-diffusion-v1-5`, here the bundled copy of its configs).
/// Limitations: the `feature_extractor` is not read (IP-Adapter encoders fall back to CLIP
/// defaults at their own size, which are SD1.5's).
struct SingleFileConfigs {
  let folder: URL
  let unet: UNet2DConditionConfig
  let vae: AutoencoderKLConfig
  let textEncoder: CLIPTextConfig
  let scheduler: SchedulerConfig
  let tokenizer: CLIPTokenizer
  /// SDXL's second encoder config, tokenizer and `force_zeros_for_empty_prompt` (nil for SD1.x configs).
  let sdxl: (textEncoder2: CLIPTextConfig, tokenizer2: CLIPTokenizer, forceZeros: Bool)?

  func path(_ component: String) -> String { folder.appendingPathComponent("\(component)/config.json").path }

  init(folder: URL) throws {
    self.folder = folder
    unet = try ConfigFile.load(UNet2DConditionConfig.self, from: folder.appendingPathComponent("unet/config.json"))
    vae = try ConfigFile.load(AutoencoderKLConfig.self, from: folder.appendingPathComponent("vae/config.json"))
    textEncoder = try ConfigFile.load(CLIPTextConfig.self, from: folder.appendingPathComponent("text_encoder/config.json"))
    let schedulerURL = folder.appendingPathComponent("scheduler/scheduler_config.json")
    guard FileManager.default.fileExists(atPath: schedulerURL.path) else {
      throw ModelConfigError.missingFile(path: schedulerURL.path)
    }
    scheduler = try SchedulerConfig(contentsOf: schedulerURL)
    let tokenizerFolder = folder.appendingPathComponent("tokenizer")
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: tokenizerFolder.path, isDirectory: &isDir), isDir.boolValue {
      tokenizer = try CLIPTokenizer(directory: tokenizerFolder)
    } else {
      tokenizer = try CLIPTokenizer.bundledSD15()
    }
    let encoder2 = folder.appendingPathComponent("text_encoder_2/config.json")
    if FileManager.default.fileExists(atPath: encoder2.path) {
      let tokenizer2Folder = folder.appendingPathComponent("tokenizer_2")
      let tokenizer2 = FileManager.default.fileExists(atPath: tokenizer2Folder.appendingPathComponent("vocab.json").path)
        ? try CLIPTokenizer(directory: tokenizer2Folder) : try CLIPTokenizer.bundledSDXLSecond()
      let index = try ConfigFile.load(ModelIndexFlags.self, from: folder.appendingPathComponent("model_index.json"))
      sdxl = (try ConfigFile.load(CLIPTextConfig.self, from: encoder2), tokenizer2, index.forceZerosForEmptyPrompt ?? true)
    } else {
      sdxl = nil
    }
  }
}

extension StableDiffusionPipeline {
  /// Loads a Stable Diffusion 1.x or SDXL single-file checkpoint (CompVis/LDM or SGM layout,
  /// `.safetensors` or `.ckpt`), text-to-image or inpainting (detected from the UNet's input
  /// channels), optionally with a separately distributed VAE.
  ///
  /// matches: diffusers `StableDiffusionPipeline.from_single_file(path, config=configs)` /
  /// `StableDiffusionInpaintPipeline` / `StableDiffusionXLPipeline` /
  /// `StableDiffusionXLInpaintPipeline.from_single_file` (0.42.1) followed by
  /// `pipe.vae = AutoencoderKL.from_single_file(vae)` when a VAE file is given.
  /// - Parameters:
  ///   - singleFile: the checkpoint; it becomes the pipeline's `folder`, so the parameters text
  ///     names it and `featureExtractorConfig` is nil.
  ///   - vae: a VAE file in diffusers or LDM layout (with or without `first_stage_model.`) that
  ///     replaces the checkpoint's own VAE (required when the checkpoint has none).
  ///   - configs: a diffusers pipeline folder whose configs describe the checkpoint's
  ///     architecture (default: the bundled Stable Diffusion 1.5 or SDXL base 1.0 configs, by
  ///     the file's model type; `in_channels` follows the file).
  ///   - ema: which UNet weights to use when the file also holds EMA copies (default: EMA).
  /// - Throws: `SingleFileError` (wrong model family, missing component, unknown VAE layout),
  ///   `WeightLoadingError` (keys the configs do not explain, each named), container errors
  ///   (`SafeTensorsError`, `TorchCheckpointError` — e.g. a forbidden pickle global).
  /// Limitations: SD1.x and SDXL base/inpainting only (not SD2.x or the SDXL refiner);
  /// prompt/LoRA/textual-inversion extras inside the file are ignored.
  static func load(
    singleFile: URL, vae: URL? = nil, configs: URL? = nil, ema: EMAChoice = .preferEMA,
    precision: ComputePrecision = .float32, allowNonFiniteWeights: Bool = false
  ) throws -> StableDiffusionPipeline {
    let checkpoint = try SingleFileCheckpoint(path: singleFile.path, ema: ema)
    if vae == nil, checkpoint.vaePrefix == nil {
      throw SingleFileError.missingComponent(
        path: singleFile.path, component: "VAE", prefix: "first_stage_model.", hint: "give a separate VAE file (--vae)")
    }
    let xl = checkpoint.modelType.isSDXL
    let c = try SingleFileConfigs(folder: configs ?? (xl ? BundledConfigs.stableDiffusionXL : BundledConfigs.stableDiffusion15))
    guard xl == (c.sdxl != nil) else {
      throw PipelineError.invalidArgument(
        name: "model config",
        reason: "\(c.folder.path) describes \(xl ? "a Stable Diffusion 1.x" : "an SDXL") pipeline but \(singleFile.lastPathComponent) is \(checkpoint.modelType.rawValue)")
    }
    let prepare = PrepareOptions(precision: precision, allowNonFiniteWeights: allowNonFiniteWeights)
    let textEncoder = try checkpoint.loadTextEncoder(config: c.textEncoder, configPath: c.path("text_encoder"), prepare: prepare)
    let sdxl = try c.sdxl.map {
      SDXLTextEncoders(
        tokenizer2: $0.tokenizer2,
        textEncoder2: try checkpoint.loadTextEncoder2(config: $0.textEncoder2, configPath: c.path("text_encoder_2"), prepare: prepare),
        forceZerosForEmptyPrompt: $0.forceZeros)
    }
    let unet = try checkpoint.loadUNet(config: c.unet, configPath: c.path("unet"), prepare: prepare)
    let vaeModel =
      try vae.map { try VAEFile.load(path: $0.path, config: c.vae, configPath: c.path("vae"), prepare: prepare) }
      ?? checkpoint.loadVAE(config: c.vae, configPath: c.path("vae"), prepare: prepare)
    return try assemble(
      folder: singleFile, tokenizer: c.tokenizer, textEncoder: textEncoder, unet: unet, vae: vaeModel,
      scheduler: c.scheduler, unetConfigPath: c.path("unet"), precision: precision, sdxl: sdxl)
  }

  /// A diffusers pipeline folder whose VAE is replaced by a VAE file (diffusers or LDM layout),
  /// built with the folder's `vae/config.json`.
  ///
  /// matches: diffusers `from_pretrained(folder, vae=AutoencoderKL.from_single_file(vae))`.
  static func load(
    folder: URL, vae: URL, precision: ComputePrecision = .float32, allowNonFiniteWeights: Bool = false,
    variant: String? = nil
  ) throws -> StableDiffusionPipeline {
    for component in ["tokenizer", "text_encoder", "unet", "vae", "scheduler"] {
      var isDir: ObjCBool = false
      if !FileManager.default.fileExists(atPath: folder.appendingPathComponent(component).path, isDirectory: &isDir)
        || !isDir.boolValue
      {
        throw PipelineError.missingComponent(folder: folder.path, component: component)
      }
    }
    let c = try SingleFileConfigs(folder: folder)
    let prepare = PrepareOptions(precision: precision, allowNonFiniteWeights: allowNonFiniteWeights)
    let unet = try ModelLoader.unet(folder.appendingPathComponent("unet"), prepare: prepare, variant: variant)
    return try assemble(
      folder: folder, tokenizer: c.tokenizer,
      textEncoder: try ModelLoader.textEncoder(
        folder.appendingPathComponent("text_encoder"), prepare: prepare, variant: variant),
      unet: unet,
      vae: try VAEFile.load(path: vae.path, config: c.vae, configPath: c.path("vae"), prepare: prepare),
      scheduler: c.scheduler, unetConfigPath: c.path("unet"), precision: precision,
      sdxl: unet.textTimeEmbedding == nil ? nil : try SDXLTextEncoders.load(folder: folder, prepare: prepare, variant: variant))
  }

  /// The component initialiser after the check `init(folder:)` makes (text width = cross-attention width).
  static func assemble(
    folder: URL, tokenizer: CLIPTokenizer, textEncoder: CLIPTextModel, unet: UNet2DConditionModel, vae: AutoencoderKL,
    scheduler: SchedulerConfig, unetConfigPath: String, precision: ComputePrecision, sdxl: SDXLTextEncoders? = nil
  ) throws -> StableDiffusionPipeline {
    try StableDiffusionPipeline.checkCompatible(unet: unet, textEncoder: textEncoder, sdxl: sdxl, unetConfig: unetConfigPath)
    return try StableDiffusionPipeline(
      folder: folder, tokenizer: tokenizer, textEncoder: textEncoder, unet: unet, vae: vae, schedulerConfig: scheduler,
      precision: precision, sdxl: sdxl)
  }
}
