import Imaging
import Schedulers
import TensorCore

/// Everything a text-to-image generation is asked to do.
///
/// Defaults follow diffusers' `StableDiffusionPipeline.__call__` (and the SDXL pipelines' for an
/// SDXL model) except `steps` (30, the CLI's documented default; diffusers uses 50).
public struct GenerationParameters: Sendable {
  public var prompt: String
  /// nil is diffusers' `negative_prompt=None`: an empty negative prompt, except for SDXL models
  /// with `force_zeros_for_empty_prompt`, whose unconditional embeddings are then zeros (an
  /// explicit `""` is encoded).
  public var negativePrompt: String?
  /// SDXL: the prompt for the second text encoder (`prompt_2`); nil or empty uses `prompt`.
  public var prompt2: String?
  /// SDXL: `negative_prompt_2`; nil or empty uses the negative prompt.
  public var negativePrompt2: String?
  /// Output size in pixels; nil means the UNet's `sample_size × vae_scale_factor`.
  public var width: Int?
  public var height: Int?
  public var steps: Int = 30
  /// Classifier-free guidance; nil is the pipeline's default (7.5, SDXL 5.0).
  public var guidanceScale: Float?
  /// diffusers' `guidance_rescale` (0 = off): the guided noise is blended with itself rescaled to
  /// the standard deviation of the text prediction (`rescale_noise_cfg`).
  public var guidanceRescale: Float = 0
  /// SDXL micro-conditioning (diffusers' `original_size`, `crops_coords_top_left`,
  /// `target_size` and their `negative_` forms). Sizes default to the output size, crops to
  /// (0, 0); the negative ones default to the positive ones (text-to-image uses the negative
  /// crop only when both negative sizes are given, as diffusers).
  public var originalSize: PixelSize?
  public var targetSize: PixelSize?
  public var cropTopLeft: CropOffset?
  public var negativeOriginalSize: PixelSize?
  public var negativeTargetSize: PixelSize?
  public var negativeCropTopLeft: CropOffset?
  /// diffusers' `denoising_end` (0 < x < 1): stop after the timesteps at or above
  /// `round(num_train_timesteps × (1 − x))`, leaving the rest to a refiner (`--save-latents`).
  public var denoisingEnd: Double?
  /// diffusers' `denoising_start` (0 < x < 1), image-to-image and inpainting only: skip the
  /// timesteps at or above `round(num_train_timesteps × (1 − x))` and add no noise to the start
  /// (the refiner's half of a hand-off; `strength` is then ignored, as diffusers).
  public var denoisingStart: Double?
  /// SDXL refiner (`requires_aesthetics_score`): diffusers' `aesthetic_score` (default 6.0) and
  /// `negative_aesthetic_score` (default 2.5).
  public var aestheticScore: Float?
  public var negativeAestheticScore: Float?
  /// Seed of the torch-compatible CPU generator (`torch.Generator("cpu").manual_seed(seed)`).
  public var seed: UInt64 = 0
  /// Sampler; nil uses the class named in the pipeline's `scheduler_config.json`.
  public var scheduler: SchedulerKind?
  /// The pipelines' `eta`, which diffusers passes to a scheduler whose `step` takes it: TCD's gamma
  /// in [0, 1] (nil: 0, the pipelines' default; TCD's examples use 0.3). Any other scheduler
  /// refuses a non-zero value.
  public var eta: Float?
  /// Initial noise `[1, 4, H/8, W/8]` (NCHW, as diffusers' `latents=`); still multiplied by
  /// `init_noise_sigma`.
  public var latents: Tensor?
  /// diffusers' `clip_skip`: condition on `hidden_states[-(clipSkip + 1)]`.
  public var clipSkip: Int = 0
  /// Image-to-image from latents `[1, 4, H/8, W/8]` (NCHW, diffusers' 4-channel `image=`): a base
  /// model's `denoisingEnd` output (`GenerationResult.latents`, `--save-latents`) continued by
  /// another model with `denoisingStart`, without VAE encoding. The output size is 8× theirs.
  public var initLatents: Tensor?
  /// Image-to-image / inpainting source (converted to RGB). The output size defaults to its size
  /// rounded down to a multiple of 8; with `width`/`height` it is resized (Pillow LANCZOS).
  public var initImage: Image?
  /// Inpainting mask (white = repaint), resized to the output size and binarised at 0.5.
  public var mask: Image?
  /// Gaussian blur of the mask image in pixels before it is resized and binarised (0 = none):
  /// diffusers' `mask_processor.blur(mask, blur_factor)` (Pillow `GaussianBlur`) applied for you.
  /// Binarising afterwards keeps the mask hard but rounds its outline and grows or shrinks thin
  /// parts, exactly as in diffusers.
  public var maskBlur: Double = 0
  /// How much of the schedule runs from the init image: default 0.8 for image-to-image (SDXL 0.3)
  /// and 1.0 for inpainting (SDXL 0.9999), as diffusers.
  public var strength: Double?
  /// Most pixels the generated image (and every resized copy of an input image) may have:
  /// `ImageLimits.maxPixels`, 16,777,216 (4096²) by default. An init image's size becomes the
  /// output size, so a 16384² init image is refused here unless this is raised.
  public var maxPixels: Int = ImageLimits.default.maxPixels
  /// Let latents that become NaN or infinite run to the end (a black image) instead of stopping
  /// with `PipelineError.nonFiniteLatents` at the first step that produces them.
  public var allowNaN: Bool = false

  public init(prompt: String) { self.prompt = prompt }
}

/// A width × height in pixels (SDXL micro-conditioning).
public struct PixelSize: Sendable, Equatable {
  public var width: Int
  public var height: Int
  public init(width: Int, height: Int) {
    self.width = width
    self.height = height
  }
}

/// SDXL's crop coordinates: the top-left corner (`crops_coords_top_left = (top, left)`).
public struct CropOffset: Sendable, Equatable {
  public var top: Int
  public var left: Int
  public init(top: Int, left: Int) {
    self.top = top
    self.left = left
  }
}

/// What a generation produced.
public struct GenerationResult: Sendable {
  /// Final denoised latents before VAE decoding, NCHW `[1, 4, H/8, W/8]`.
  public var latents: Tensor
  /// The decoded image, 8-bit RGB.
  public var image: Image
  /// A1111-style "parameters" text describing how to reproduce the image.
  public var parametersText: String
  /// Seconds spent before the first denoising step (text and image encoding) and in the loop.
  public var preparationSeconds: Double
  public var denoisingSeconds: Double
  /// Things the user should know (the tokenizer's prompt truncation, as diffusers logs it).
  public var warnings: [String] = []
}
