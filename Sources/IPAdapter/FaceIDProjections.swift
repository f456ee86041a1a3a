import Models
import NN
import TensorCore

/// Dimensions of a FaceID projection, read from its tensors.
public struct FaceIDShape: Equatable, Sendable {
  /// Width of the face embedding (ArcFace: 512).
  public var idDim: Int
  /// Width of the MLP's hidden layer (the reference: 2 × `idDim`).
  public var hiddenDim: Int
  /// Width of the tokens (the UNet's cross-attention width).
  public var crossDim: Int
  /// Tokens per face (4; 16 for the Portrait adapters).
  public var tokens: Int

  public init(idDim: Int, hiddenDim: Int, crossDim: Int, tokens: Int) {
    (self.idDim, self.hiddenDim, self.crossDim, self.tokens) = (idDim, hiddenDim, crossDim, tokens)
  }
}

/// The FaceID projection: a face embedding → `tokens` tokens, keys `proj.0`, `proj.2` (Linear),
/// `norm` (LayerNorm): `LayerNorm(reshape(Linear(GELU(Linear(id))), [B, T, C]))`.
///
/// matches: tencent-ailab/IP-Adapter `ip_adapter_faceid.MLPProjModel` (ip-adapter-faceid_sd15/_sdxl,
/// and with 16 tokens the Portrait adapters) and diffusers `IPAdapterFaceIDImageProjection`.
/// `@unchecked Sendable`: its layers' only mutable state, the lazily packed kernels, is guarded by `KernelLock`.
public final class FaceIDProjModel: ImagePromptProjection, @unchecked Sendable {
  public let fc1: Linear
  public let fc2: Linear
  public let norm: LayerNorm
  public let shape: FaceIDShape

  public init(_ s: FaceIDShape) {
    shape = s
    fc1 = Linear(s.idDim, s.hiddenDim)
    fc2 = Linear(s.hiddenDim, s.tokens * s.crossDim)
    norm = LayerNorm(s.crossDim)
  }

  public var children: [(String, any Module)] { [("proj.0", fc1), ("proj.2", fc2), ("norm", norm)] }
  /// Not a CLIP output: the input is a face embedding (`[B, idDim]`).
  public var inputKind: CLIPVisionOutputKind { .imageEmbeds }
  public var inputWidth: Int { shape.idDim }
  public var outputWidth: Int { shape.crossDim }
  public var tokensPerImage: Int? { shape.tokens }

  /// `faces`: `[B, idDim]` face embeddings → `[B, T, C]`.
  public func callAsFunction(_ faces: Tensor) throws -> Tensor {
    guard faces.rank == 2, faces.shape[1] == shape.idDim else {
      throw ModuleError.invalidInput("FaceID projection expects face embeddings [B, \(shape.idDim)], got \(faces.shape)")
    }
    let b = faces.shape[0]
    return try norm(try fc2(Ops.gelu(try fc1(faces.asFloat32()))).reshaped([b, shape.tokens, shape.crossDim]))
  }
}

/// The FaceID-Plus perceiver: the ID tokens attend to the CLIP features of the face crop. Keys
/// `proj_in`, `layers.N.0.*` (attention), `layers.N.1.*` (feed-forward), `proj_out`, `norm_out` —
/// the Resampler's layers without learned latents (the ID tokens are the latents).
///
/// matches: tencent-ailab/IP-Adapter `ip_adapter_faceid.FacePerceiverResampler`.
public final class FacePerceiverResampler: Module {
  public let projIn: Linear
  public let attentions: [PerceiverAttention]
  public let feedForwards: [ResamplerFeedForward]
  public let projOut: Linear
  public let normOut: LayerNorm

  public init(_ s: Resampler.Shape) {
    projIn = Linear(s.embeddingDim, s.dim)
    attentions = (0..<s.depth).map { _ in PerceiverAttention(dim: s.dim, heads: s.heads) }
    feedForwards = (0..<s.depth).map { _ in ResamplerFeedForward(dim: s.dim, mult: s.ffMult) }
    projOut = Linear(s.dim, s.outputDim)
    normOut = LayerNorm(s.outputDim)
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = [("proj_in", projIn)]
    for i in attentions.indices {
      c.append(("layers.\(i).0", attentions[i]))
      c.append(("layers.\(i).1", feedForwards[i]))
    }
    return c + [("proj_out", projOut), ("norm_out", normOut)]
  }

  /// `latents` `[B, Q, dim]`, `features` `[B, L, embeddingDim]` → `[B, Q, outputDim]`.
  public func callAsFunction(latents: Tensor, features: Tensor) throws -> Tensor {
    let x = try projIn(features)
    var lat = latents
    for i in attentions.indices {
      lat = try attentions[i](x, latents: lat)
      lat = try feedForwards[i](lat)
    }
    return try normOut(try projOut(lat))
  }
}

/// The FaceID-Plus projection: the FaceID MLP's ID tokens refined by a perceiver over the CLIP
/// penultimate hidden states of the aligned face crop; with the shortcut (Plus v2) the result is
/// `id_tokens + s · perceiver(id_tokens)`. Keys: the FaceID MLP's (`proj.0`, `proj.2`, `norm`) and
/// `perceiver_resampler.*`.
///
/// matches: tencent-ailab/IP-Adapter `ip_adapter_faceid.ProjPlusModel` (`forward(id_embeds,
/// clip_embeds, shortcut, scale)`) and diffusers `IPAdapterFaceIDPlusImageProjection`.
/// `@unchecked Sendable`: its layers' only mutable state, the lazily packed kernels, is guarded by `KernelLock`.
public final class FaceIDPlusProjModel: ImagePromptProjection, @unchecked Sendable {
  public let idTokens: FaceIDProjModel
  public let perceiver: FacePerceiverResampler
  public let perceiverShape: Resampler.Shape

  public init(_ s: FaceIDShape, perceiver p: Resampler.Shape) {
    idTokens = FaceIDProjModel(s)
    perceiver = FacePerceiverResampler(p)
    perceiverShape = p
  }

  public var children: [(String, any Module)] {
    idTokens.children + [("perceiver_resampler", perceiver)]
  }
  /// The CLIP side: `hidden_states[-2]` of the face crop.
  public var inputKind: CLIPVisionOutputKind { .penultimateHiddenState }
  public var inputWidth: Int { perceiverShape.embeddingDim }
  public var outputWidth: Int { perceiverShape.outputDim }
  public var tokensPerImage: Int? { idTokens.shape.tokens }

  /// FaceID-Plus needs both inputs: use `callAsFunction(faces:clip:shortcutScale:)`.
  public func callAsFunction(_ features: Tensor) throws -> Tensor {
    throw ModuleError.invalidInput("FaceID-Plus needs face embeddings and CLIP features of the face crop together")
  }

  /// - Parameters:
  ///   - faces: `[B, idDim]` face embeddings.
  ///   - clip: `[B, L, embeddingDim]` CLIP penultimate hidden states of the face crops.
  ///   - shortcutScale: nil = Plus (the perceiver's output), else Plus v2 `x + s · out`.
  public func callAsFunction(faces: Tensor, clip: Tensor, shortcutScale: Float?) throws -> Tensor {
    guard clip.rank == 3, clip.shape[0] == faces.shape[0], clip.shape[2] == inputWidth else {
      throw ModuleError.invalidInput(
        "FaceID-Plus expects CLIP hidden states [\(faces.shape[0]), L, \(inputWidth)] for \(faces.shape[0]) face(s), got \(clip.shape)")
    }
    let x = try idTokens(faces)
    let out = try perceiver(latents: x, features: clip)
    guard let s = shortcutScale else { return out }
    return try Ops.add(x, Ops.scale(out, s))
  }
}
