import Models
import NN
import TensorCore

/// An IP-Adapter image projection: CLIP image features → image-prompt tokens `[B, T, C]`.
public protocol ImagePromptProjection: Module {
  /// Which CLIP output the projection consumes.
  var inputKind: CLIPVisionOutputKind { get }
  /// Width of that output (projection dim for `image_embeds`, hidden size for hidden states).
  var inputWidth: Int { get }
  /// Width of the tokens (the UNet's cross-attention dim).
  var outputWidth: Int { get }
  /// Tokens per image, or nil when it follows the input length (full-face: one per CLIP token).
  var tokensPerImage: Int? { get }
  /// `features`: `[B, inputWidth]` (embeds) or `[B, L, inputWidth]` (hidden states) → `[B, T, C]`.
  func callAsFunction(_ features: Tensor) throws -> Tensor
}

/// The 4-token global projection, keys `proj` `[T·C, D]` and `norm` `[C]`.
///
/// matches: tencent-ailab/IP-Adapter `ImageProjModel` and diffusers `ImageProjection`:
/// `LayerNorm(reshape(Linear(e), [B, T, C]))` (ip-adapter_sd15, _light, _vit-G, sdxl).
/// `@unchecked Sendable`: its layers' only mutable state, the lazily packed kernels, is guarded by `KernelLock`.
public final class ImageProjModel: ImagePromptProjection, @unchecked Sendable {
  public let proj: Linear
  public let norm: LayerNorm
  public let tokens: Int
  public let crossDim: Int

  public init(embeddingDim: Int, crossDim: Int, tokens: Int) {
    proj = Linear(embeddingDim, tokens * crossDim)
    norm = LayerNorm(crossDim)
    self.tokens = tokens
    self.crossDim = crossDim
  }

  public var children: [(String, any Module)] { [("proj", proj), ("norm", norm)] }
  public var inputKind: CLIPVisionOutputKind { .imageEmbeds }
  public var inputWidth: Int { proj.inFeatures }
  public var outputWidth: Int { crossDim }
  public var tokensPerImage: Int? { tokens }

  public func callAsFunction(_ features: Tensor) throws -> Tensor {
    guard features.rank == 2, features.shape[1] == inputWidth else {
      throw ModuleError.invalidInput("ImageProjModel expects image embeds [B, \(inputWidth)], got \(features.shape)")
    }
    let b = features.shape[0]
    return try norm(try proj(features).reshaped([b, tokens, crossDim]))
  }
}

/// The full-face per-token MLP, keys `proj.0`, `proj.2` (Linear), `proj.3` (LayerNorm).
///
/// matches: tencent-ailab/IP-Adapter `MLPProjModel` (ip_adapter.py) and diffusers
/// `IPAdapterFullImageProjection`: `LayerNorm(Linear(GELU(Linear(h))))` on every hidden-state
/// token (257 image-prompt tokens for ViT-H/14).
/// `@unchecked Sendable`: its layers' only mutable state, the lazily packed kernels, is guarded by `KernelLock`.
public final class MLPProjModel: ImagePromptProjection, @unchecked Sendable {
  public let fc1: Linear
  public let fc2: Linear
  public let norm: LayerNorm

  public init(clipDim: Int, crossDim: Int) {
    fc1 = Linear(clipDim, clipDim)
    fc2 = Linear(clipDim, crossDim)
    norm = LayerNorm(crossDim)
  }

  public var children: [(String, any Module)] { [("proj.0", fc1), ("proj.2", fc2), ("proj.3", norm)] }
  public var inputKind: CLIPVisionOutputKind { .penultimateHiddenState }
  public var inputWidth: Int { fc1.inFeatures }
  public var outputWidth: Int { fc2.outFeatures }
  public var tokensPerImage: Int? { nil }

  public func callAsFunction(_ features: Tensor) throws -> Tensor {
    guard features.rank == 3, features.shape[2] == inputWidth else {
      throw ModuleError.invalidInput("MLPProjModel expects hidden states [B, L, \(inputWidth)], got \(features.shape)")
    }
    return try norm(try fc2(Ops.gelu(try fc1(features))))
  }
}
