import Foundation
import Hub
import Imaging
import Models
import Pipelines
import TensorCore
import TestSupport
import Weights

/// The single-file fixtures (`tools/reference/gen_single_file.py` → `Fixtures/single-file/`) and the
/// folders they were converted from.
enum SingleFileFixtures {
  static let folder = Fixtures.url("tiny-sd15")
  static let inpaintingFolder = Fixtures.url("tiny-sd15-inpainting")
  /// tiny-sd15 in LDM layout, the folder's dtypes (UNet/VAE F16, CLIP F32).
  static let safetensors = Fixtures.url("single-file/tiny-sd15.safetensors")
  /// tiny-sd15-inpainting in LDM layout, BF16, `state_dict`-wrapped torch zip with LDM extras.
  static let ckpt = Fixtures.url("single-file/tiny-sd15-inpainting.ckpt")
  /// The tiny VAE alone, LDM layout without prefix, F32.
  static let ldmVAE = Fixtures.url("single-file/tiny-vae-ldm.safetensors")
  /// The tiny VAE alone, diffusers layout (the folder's own file).
  static let diffusersVAE = Fixtures.url("tiny-sd15/vae/diffusion_pytorch_model.safetensors")

  /// The extras the generator put into the `.ckpt` besides the three components.
  static let ckptExtras = [
    "alphas_cumprod", "cond_stage_model.transformer.text_model.embeddings.position_ids", "model_ema.decay",
    "model_ema.diffusion_modelinput_blocks00bias", "model_ema.num_updates",
  ]

  static func unetConfig(_ folder: URL = folder) throws -> UNet2DConditionConfig {
    try ConfigFile.load(UNet2DConditionConfig.self, from: folder.appendingPathComponent("unet/config.json"))
  }

  static func vaeConfig() throws -> AutoencoderKLConfig {
    try ConfigFile.load(AutoencoderKLConfig.self, from: folder.appendingPathComponent("vae/config.json"))
  }

  static func singleFile(_ url: URL = safetensors, vae: URL? = nil, ema: EMAChoice = .preferEMA) throws
    -> StableDiffusionPipeline
  {
    var options = PipelineLoadOptions(vae: vae.map { .local($0.path) })
    options.singleFileConfigs = folder
    options.ema = ema
    return try StableDiffusionPipeline.load(.singleFile(url), options: options)
  }

  /// A short text-to-image generation (3 PNDM steps, seed 0, guidance 7.5).
  static var parameters: GenerationParameters {
    var p = GenerationParameters(prompt: "a red cube")
    p.negativePrompt = "blurry, low quality"
    p.steps = 3
    p.seed = 0
    return p
  }

  /// Bit-for-bit equality of two tensors (shape, dtype and every element).
  static func identical(_ a: Tensor, _ b: Tensor) -> Bool {
    a.shape == b.shape && a.dtype == b.dtype && a.scalars() == b.scalars()
  }

}
