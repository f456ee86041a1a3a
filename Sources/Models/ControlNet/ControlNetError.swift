/// Why a ControlNet cannot be used with a given UNet.
///
/// matches: no reference type (diffusers fails later, with a matmul or add shape error inside the
/// UNet); these checks run before the first denoising step.
public enum ControlNetError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The ControlNet's cross-attention layers take text tokens of another width than the UNet's
  /// (e.g. an SD 2.x ControlNet, 1024, with an SD 1.5 UNet, 768).
  case crossAttentionDimMismatch(controlNet: Int, unet: Int)
  /// The ControlNet produces residuals whose count or channels differ from the UNet's skip
  /// connections (`controlNet` / `unet`: channels of each residual, in order, then the middle).
  case residualLayoutMismatch(controlNet: [Int], unet: [Int])
  /// One of the two has SDXL's `text_time` addition embedding and the other not (or another
  /// width): an SD 1.x ControlNet with an SDXL UNet or the reverse.
  case additionEmbeddingMismatch(controlNet: String, unet: String)

  public var description: String {
    switch self {
    case .crossAttentionDimMismatch(let controlNet, let unet):
      "the ControlNet's cross_attention_dim is \(controlNet) but the UNet's is \(unet): "
        + "use a ControlNet trained for this base model (same text encoder width)"
    case .residualLayoutMismatch(let controlNet, let unet):
      "the ControlNet's residuals have channels \(controlNet) but the UNet's skip connections have \(unet): "
        + "use a ControlNet trained for this base model (same block_out_channels and layers_per_block)"
    case .additionEmbeddingMismatch(let controlNet, let unet):
      "the ControlNet's addition embedding is \(controlNet) but the UNet's is \(unet): "
        + "use a ControlNet trained for this base model (an SDXL ControlNet for an SDXL model)"
    }
  }
}
