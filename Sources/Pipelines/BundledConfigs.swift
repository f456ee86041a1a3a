import Foundation

/// Configuration files bundled with the engine (see `Resources/configs/README.md`).
public enum BundledConfigs {
  /// `configs/` inside the resource bundle.
  public static var root: URL {
    Bundle.module.resourceURL!.appendingPathComponent("configs")
  }

  /// The Stable Diffusion 1.5 pipeline configs (no weights): `model_index.json`, `unet/`, `vae/`,
  /// `text_encoder/`, `scheduler/`, `feature_extractor/`.
  public static var stableDiffusion15: URL { root.appendingPathComponent("stable-diffusion-v1-5") }

  /// The Stable Diffusion XL base 1.0 pipeline configs (no weights): `model_index.json`,
  /// `unet/`, `vae/`, `text_encoder/`, `text_encoder_2/`, `scheduler/` (tokenizers: the bundled
  /// CLIP vocabulary, the second padding with `!`).
  public static var stableDiffusionXL: URL { root.appendingPathComponent("stable-diffusion-xl-base-1.0") }

  /// The OpenCLIP ViT-bigG/14 image-encoder config of `ip-adapter_sdxl` (benchmarks).
  public static var clipViTBigG14: URL { root.appendingPathComponent("clip-vit-bigg-14") }

  /// The OpenCLIP ViT-H/14 image-encoder config of IP-Adapter SD1.5.
  public static var clipViTH14: URL { root.appendingPathComponent("clip-vit-h-14") }
}
