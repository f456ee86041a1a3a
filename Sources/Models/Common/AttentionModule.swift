import NN
import TensorCore

/// Multi-head attention with keys `to_q`, `to_k`, `to_v`, `to_out.0` (and `group_norm` in the
/// VAE's mid-block form).
///
/// matches: diffusers `Attention` with `AttnProcessor2_0`, and with the decoupled-cross-attention
/// processors (`IPAdapterAttnProcessor2_0`) when extra key/value sources are passed: all sources
/// share the queries, each has its own softmax, and their outputs are summed (scaled) before
/// `to_out`. Limitations: no attention masks other than causal, no `norm_cross`, no
/// `residual_connection` other than the VAE form.
public final class AttentionModule: Module {
  public let heads: Int
  public let toQ: Linear
  public let toK: Linear
  public let toV: Linear
  public let toOut: Linear
  /// The VAE attention's input GroupNorm (`group_norm`), nil in transformer blocks.
  public let groupNorm: GroupNorm?

  /// - Parameters:
  ///   - queryDim: channels of the hidden states.
  ///   - contextDim: channels of the key/value input (`cross_attention_dim`), or nil for self-attention.
  ///   - heads: number of heads; head size is `queryDim / heads`.
  ///   - bias: whether q/k/v projections have biases (VAE: yes, UNet: no).
  public init(queryDim: Int, contextDim: Int?, heads: Int, bias: Bool = false, groupNorm: (groups: Int, eps: Float)? = nil) {
    self.heads = heads
    let kvDim = contextDim ?? queryDim
    toQ = Linear(queryDim, queryDim, bias: bias)
    toK = Linear(kvDim, queryDim, bias: bias)
    toV = Linear(kvDim, queryDim, bias: bias)
    toOut = Linear(queryDim, queryDim, bias: true)
    self.groupNorm = groupNorm.map { GroupNorm(groups: $0.groups, channels: queryDim, eps: $0.eps) }
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = [("to_q", toQ), ("to_k", toK), ("to_v", toV), ("to_out.0", toOut)]
    if let groupNorm { c.append(("group_norm", groupNorm)) }
    return c
  }

  /// Keys and values of a context sequence `[B, L, contextDim]` (computed once per generation
  /// for the text of cross-attention layers).
  public func keyValue(_ context: Tensor) throws -> (key: Tensor, value: Tensor) {
    (try toK(context), try toV(context))
  }

  /// Self-attention over `x` `[B, L, C]`; `residual` is added after `to_out` in the same pass.
  public func selfAttention(_ x: Tensor, residual: Tensor? = nil, causal: Bool = false) throws -> Tensor {
    let q = try toQ(x)
    let (k, v) = try keyValue(x)
    let o = try Attention.multiHead(query: q, sources: [AttentionSource(key: k, value: v)], heads: heads, causal: causal)
    return try toOut(o, accumulate: residual)
  }

  /// Attention of `x` `[B, L, C]` over precomputed key/value sources (text, image prompts…);
  /// `residual` is added after `to_out`.
  public func attend(_ x: Tensor, sources: [AttentionSource], residual: Tensor? = nil) throws -> Tensor {
    let q = try toQ(x)
    let o = try Attention.multiHead(query: q, sources: sources, heads: heads)
    return try toOut(o, accumulate: residual)
  }
}
