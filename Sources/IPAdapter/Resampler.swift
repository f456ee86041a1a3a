import Models
import NN
import TensorCore

/// One Perceiver attention layer of the Resampler: keys `norm1` (image features), `norm2`
/// (latents), `to_q`, `to_kv`, `to_out` (all bias-free).
///
/// matches: tencent-ailab/IP-Adapter `resampler.PerceiverAttention` (and diffusers'
/// `IPAdapterPlusImageProjectionBlock` attention): queries from the latents; keys and values over
/// `[norm1(x) ; norm2(latents)]`; `to_kv` rows split K-then-V; heads of 64; softmax of `qkᵀ/8`.
public final class PerceiverAttention: Module {
  public let norm1: LayerNorm
  public let norm2: LayerNorm
  public let toQ: Linear
  public let toKV: Parameter
  public let toOut: Linear
  public let heads: Int
  private var toK: LinearKernel?
  private var toV: LinearKernel?

  public init(dim: Int, heads: Int, dimHead: Int = 64) {
    let inner = heads * dimHead
    norm1 = LayerNorm(dim)
    norm2 = LayerNorm(dim)
    toQ = Linear(dim, inner, bias: false)
    toKV = Parameter([2 * inner, dim])
    toOut = Linear(inner, dim, bias: false)
    self.heads = heads
  }

  public var parameters: [(String, Parameter)] { [("to_kv.weight", toKV)] }
  public var children: [(String, any Module)] {
    [("norm1", norm1), ("norm2", norm2), ("to_q", toQ), ("to_out", toOut)]
  }

  public func prepare(_ options: PrepareOptions) throws {
    let inner = toKV.shape[0] / 2
    let w = toKV.value
    toK = try LinearKernel(weight: w.slice(rows: 0..<inner), bias: nil, precision: options.precision)
    toV = try LinearKernel(weight: w.slice(rows: inner..<(2 * inner)), bias: nil, precision: options.precision)
  }

  /// `x`: projected image features `[B, L, dim]`; `latents`: `[B, Q, dim]`. Returns the
  /// attention output plus `latents` (the residual).
  func callAsFunction(_ x: Tensor, latents: Tensor) throws -> Tensor {
    guard let toK, let toV else { throw ModuleError.notPrepared("PerceiverAttention") }
    let b = x.shape[0]
    let xn = try norm1(x)
    let ln = try norm2(latents)
    var context: [Tensor] = []
    for i in 0..<b {
      context.append(xn.slice(rows: i..<(i + 1)).reshaped([x.shape[1], x.shape[2]]))
      context.append(ln.slice(rows: i..<(i + 1)).reshaped([latents.shape[1], latents.shape[2]]))
    }
    let kvInput = try Ops.concatRows(context).reshaped([b, x.shape[1] + latents.shape[1], x.shape[2]])
    let q = try toQ(ln)
    let k = try toK(kvInput)
    let v = try toV(kvInput)
    let o = try Attention.multiHead(query: q, sources: [AttentionSource(key: k, value: v)], heads: heads)
    return try toOut(o, accumulate: latents)
  }
}

/// The Resampler's feed-forward: keys `0` (LayerNorm), `1`, `3` (bias-free Linear), GELU between.
///
/// matches: tencent-ailab/IP-Adapter `resampler.FeedForward`.
public final class ResamplerFeedForward: Module {
  public let norm: LayerNorm
  public let fc1: Linear
  public let fc2: Linear

  public init(dim: Int, mult: Int) {
    norm = LayerNorm(dim)
    fc1 = Linear(dim, dim * mult, bias: false)
    fc2 = Linear(dim * mult, dim, bias: false)
  }

  public var children: [(String, any Module)] { [("0", norm), ("1", fc1), ("3", fc2)] }

  /// Returns `ff(x) + x`.
  func callAsFunction(_ x: Tensor) throws -> Tensor {
    try fc2(Ops.gelu(try fc1(try norm(x))), accumulate: x)
  }
}

/// The IP-Adapter Plus Perceiver Resampler: keys `latents`, `proj_in`, `layers.N.0.*`
/// (attention), `layers.N.1.*` (feed-forward), `proj_out`, `norm_out`, and when present
/// `pos_emb` and `to_latents_from_mean_pooled_seq.{0,1}`.
///
/// matches: tencent-ailab/IP-Adapter `resampler.Resampler` (ip-adapter-plus*, plus-face) and
/// diffusers `IPAdapterPlusImageProjection`. Every dimension is read from the checkpoint: queries
/// from `latents`, heads from `to_q` rows / 64, depth from the number of layers, mean-pooled
/// latents from `to_latents_from_mean_pooled_seq.1` rows / dim.
/// `@unchecked Sendable`: its layers' only mutable state, the lazily packed kernels, is guarded by `KernelLock`.
public final class Resampler: ImagePromptProjection, @unchecked Sendable {
  public let latents: Parameter
  public let projIn: Linear
  public let attentions: [PerceiverAttention]
  public let feedForwards: [ResamplerFeedForward]
  public let projOut: Linear
  public let normOut: LayerNorm
  /// Optional learned positions added to the image features (`apply_pos_emb=True`).
  public let positionEmbedding: Embedding?
  /// Optional latents computed from the mean of the projected features, prepended to `latents`.
  public let meanPooledNorm: LayerNorm?
  public let meanPooledProj: Linear?
  private var latentTable: Tensor?

  public struct Shape: Equatable, Sendable {
    public var dim: Int, depth: Int, heads: Int, queries: Int, embeddingDim: Int, outputDim: Int
    public var ffMult: Int = 4
    public var maxSequenceLength: Int? = nil
    public var meanPooledLatents: Int = 0

    public init(
      dim: Int, depth: Int, heads: Int, queries: Int, embeddingDim: Int, outputDim: Int, ffMult: Int = 4,
      maxSequenceLength: Int? = nil, meanPooledLatents: Int = 0
    ) {
      (self.dim, self.depth, self.heads, self.queries) = (dim, depth, heads, queries)
      (self.embeddingDim, self.outputDim, self.ffMult) = (embeddingDim, outputDim, ffMult)
      self.maxSequenceLength = maxSequenceLength
      self.meanPooledLatents = meanPooledLatents
    }
  }

  public let shape: Shape

  public init(_ s: Shape) {
    shape = s
    latents = Parameter([1, s.queries, s.dim])
    projIn = Linear(s.embeddingDim, s.dim)
    attentions = (0..<s.depth).map { _ in PerceiverAttention(dim: s.dim, heads: s.heads) }
    feedForwards = (0..<s.depth).map { _ in ResamplerFeedForward(dim: s.dim, mult: s.ffMult) }
    projOut = Linear(s.dim, s.outputDim)
    normOut = LayerNorm(s.outputDim)
    positionEmbedding = s.maxSequenceLength.map { Embedding($0, s.embeddingDim) }
    meanPooledNorm = s.meanPooledLatents > 0 ? LayerNorm(s.dim) : nil
    meanPooledProj = s.meanPooledLatents > 0 ? Linear(s.dim, s.dim * s.meanPooledLatents) : nil
  }

  public var parameters: [(String, Parameter)] { [("latents", latents)] }
  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = [("proj_in", projIn)]
    for i in 0..<shape.depth {
      c.append(("layers.\(i).0", attentions[i]))
      c.append(("layers.\(i).1", feedForwards[i]))
    }
    c += [("proj_out", projOut), ("norm_out", normOut)]
    if let positionEmbedding { c.append(("pos_emb", positionEmbedding)) }
    if let meanPooledNorm, let meanPooledProj {
      c.append(("to_latents_from_mean_pooled_seq.0", meanPooledNorm))
      c.append(("to_latents_from_mean_pooled_seq.1", meanPooledProj))
    }
    return c
  }

  public func prepare(_ options: PrepareOptions) throws { latentTable = latents.value.toFloat32() }

  public var inputKind: CLIPVisionOutputKind { .penultimateHiddenState }
  public var inputWidth: Int { shape.embeddingDim }
  public var outputWidth: Int { shape.outputDim }
  public var tokensPerImage: Int? { shape.queries + shape.meanPooledLatents }

  public func callAsFunction(_ features: Tensor) throws -> Tensor {
    guard features.rank == 3, features.shape[2] == inputWidth else {
      throw ModuleError.invalidInput("Resampler expects hidden states [B, L, \(inputWidth)], got \(features.shape)")
    }
    guard let latentTable else { throw ModuleError.notPrepared("Resampler") }
    let (b, l) = (features.shape[0], features.shape[1])
    var x = features
    if let positionEmbedding {
      guard l <= shape.maxSequenceLength! else {
        throw ModuleError.invalidInput("Resampler: \(l) image tokens exceed pos_emb's \(shape.maxSequenceLength!) positions")
      }
      let pos = try positionEmbedding(Array(0..<l))
      x = try Ops.add(x, try Ops.concatRows(Array(repeating: pos, count: b)).reshaped(x.shape))
    }
    x = try projIn(x)
    var lat = try Ops.concatRows(Array(repeating: latentTable.reshaped([shape.queries, shape.dim]), count: b))
      .reshaped([b, shape.queries, shape.dim])
    if let meanPooledNorm, let meanPooledProj {
      // masked_mean with an all-true mask: sum over tokens / token count.
      var mean = Tensor.zeros([b, shape.dim])
      x.withUnsafeFloats { src in
        mean.withUnsafeMutableFloats { m in
          for i in 0..<b {
            for t in 0..<l {
              for c in 0..<shape.dim { m[i * shape.dim + c] += src[(i * l + t) * shape.dim + c] }
            }
            for c in 0..<shape.dim { m[i * shape.dim + c] /= Float(l) }
          }
        }
      }
      let pooled = try meanPooledProj(try meanPooledNorm(mean)).reshaped([b, shape.meanPooledLatents, shape.dim])
      var rows: [Tensor] = []
      for i in 0..<b {
        rows.append(pooled.slice(rows: i..<(i + 1)).reshaped([shape.meanPooledLatents, shape.dim]))
        rows.append(lat.slice(rows: i..<(i + 1)).reshaped([shape.queries, shape.dim]))
      }
      lat = try Ops.concatRows(rows).reshaped([b, shape.meanPooledLatents + shape.queries, shape.dim])
    }
    for i in 0..<shape.depth {
      lat = try attentions[i](x, latents: lat)
      lat = try feedForwards[i](lat)
    }
    return try normOut(try projOut(lat))
  }
}
