import Models
import TensorCore
import TorchRandom

/// When a generation decodes (and, for image-to-image and inpainting, encodes) with a tiled VAE.
///
/// matches: diffusers `pipe.enable_vae_tiling()` (`AutoencoderKL.enable_tiling()`, 0.42.1) with the
/// VAE's default tile sizes (`VAETiling(config:)`: 512 pixels / 64 latents for SD1.5, 1024 / 128 for
/// SDXL, overlap 0.25). Tiled results differ slightly from untiled ones: each tile is decoded
/// without seeing its neighbours, and the seams are blended linearly exactly as diffusers does.
public enum VAETilingMode: Sendable, Equatable {
  /// Never tile (diffusers' default; results identical to an untiled decode).
  case off
  /// As `enable_vae_tiling()`: tile whenever the latents (image) are larger than one tile on either
  /// side — e.g. an SD1.5 image over 512 pixels wide or high.
  case on
  /// Tile only images of more than `autoThresholdPixels` pixels (width × height, i.e. above
  /// 2048 × 2048), where the untiled VAE's full-resolution activations (128 channels × 4 bytes per
  /// pixel, 2 GiB each, several alive at once) outgrow a typical machine; smaller images are
  /// decoded untiled, exactly as `.off`.
  case auto

  /// The image area above which `.auto` tiles: 2048 × 2048 pixels.
  public static let autoThresholdPixels = 2048 * 2048

  /// The tiling to use for an image of `width × height` pixels with this VAE, or nil for none.
  /// Throws `VAETilingError` when the VAE's `sample_size` gives no valid tile.
  public func tiling(for vae: AutoencoderKL, width: Int, height: Int) throws -> VAETiling? {
    switch self {
    case .off: return nil
    case .on: return try VAETiling(config: vae.config)
    case .auto: return width * height > Self.autoThresholdPixels ? try VAETiling(config: vae.config) : nil
    }
  }
}

extension StableDiffusionPipeline {
  /// `vae.decode` of latents NHWC `[N, h, w, c]` (already divided by `scaling_factor`) with `mode`.
  func decodeVAE(_ latents: Tensor, tiling mode: VAETilingMode) throws -> Tensor {
    guard latents.rank == 4 else { return try vae.decode(latents) }  // which reports the shape
    let tiling = try mode.tiling(
      for: vae, width: latents.shape[2] * vaeScaleFactor, height: latents.shape[1] * vaeScaleFactor)
    return try vae.decode(latents, tiling: tiling)
  }

  /// `vae.encode` of pixels NHWC `[N, H, W, 3]` with `mode`.
  func encodeVAE(_ pixels: Tensor, tiling mode: VAETilingMode) throws -> DiagonalGaussian {
    guard pixels.rank == 4 else { return try vae.encode(pixels) }  // which reports the shape
    return try vae.encode(pixels, tiling: try mode.tiling(for: vae, width: pixels.shape[2], height: pixels.shape[1]))
  }
}
