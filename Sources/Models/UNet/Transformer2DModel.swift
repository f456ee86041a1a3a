import NN
import TensorCore

/// GEGLU feed-forward, keys `net.0.proj` and `net.2`.
///
/// matches: diffusers `FeedForward(dim, activation_fn="geglu", mult=4)`:
/// `net.2(hidden · gelu(gate))` where `[hidden, gate] = net.0.proj(x).chunk(2)`.
public final class FeedForward: Module {
  public let proj: Linear
  public let out: Linear

  public init(dim: Int, mult: Int = 4) {
    proj = Linear(dim, dim * mult * 2)
    out = Linear(dim * mult, dim)
  }

  public var children: [(String, any Module)] { [("net.0.proj", proj), ("net.2", out)] }

  public func callAsFunction(_ x: Tensor, residual: Tensor) throws -> Tensor {
    try out(try Ops.geglu(try proj(x)), accumulate: residual)
  }
}

/// One transformer layer of a UNet attention block: keys `norm1`, `attn1` (self), `norm2`,
/// `attn2` (cross), `norm3`, `ff`.
///
/// matches: diffusers `BasicTransformerBlock` with `norm_type="layer_norm"`, no
/// `only_cross_attention`, no positional embeddings.
public final class BasicTransformerBlock: Module {
  public let norm1: LayerNorm
  public let attn1: AttentionModule
  public let norm2: LayerNorm
  public let attn2: AttentionModule
  public let norm3: LayerNorm
  public let ff: FeedForward
  /// Index of `attn2` among all cross-attention layers of the UNet (diffusers processor order).
  public internal(set) var crossAttentionIndex = -1

  public init(dim: Int, heads: Int, contextDim: Int) {
    norm1 = LayerNorm(dim)
    attn1 = AttentionModule(queryDim: dim, contextDim: nil, heads: heads)
    norm2 = LayerNorm(dim)
    attn2 = AttentionModule(queryDim: dim, contextDim: contextDim, heads: heads)
    norm3 = LayerNorm(dim)
    ff = FeedForward(dim: dim)
  }

  public var children: [(String, any Module)] {
    [("norm1", norm1), ("attn1", attn1), ("norm2", norm2), ("attn2", attn2), ("norm3", norm3), ("ff", ff)]
  }

  /// `x` is `[B, L, C]`; the cross-attention uses `conditioning.sources[crossAttentionIndex]`.
  public func callAsFunction(_ x: Tensor, conditioning: CrossAttentionConditioning) throws -> Tensor {
    var h = try attn1.selfAttention(try norm1(x), residual: x)
    h = try attn2.attend(try norm2(h), sources: conditioning.sources[crossAttentionIndex], residual: h)
    return try ff(try norm3(h), residual: h)
  }
}

/// The spatial transformer of a UNet block: keys `norm`, `proj_in`, `transformer_blocks.N`,
/// `proj_out`.
///
/// matches: diffusers `Transformer2DModel` for continuous inputs (GroupNorm eps 1e-6; `proj_in` /
/// `proj_out` are 1×1 convolutions, or linear layers with `use_linear_projection`). In NHWC both
/// forms act on the channel vector of each pixel, so no permutes are needed.
public final class Transformer2DModel: Module {
  public let norm: GroupNorm
  public let projIn: any Module
  public let blocks: [BasicTransformerBlock]
  public let projOut: any Module
  private let linearProjection: Bool

  public init(channels: Int, heads: Int, contextDim: Int, layers: Int, groups: Int, linearProjection: Bool) {
    norm = GroupNorm(groups: groups, channels: channels, eps: 1e-6)
    self.linearProjection = linearProjection
    if linearProjection {
      projIn = Linear(channels, channels)
      projOut = Linear(channels, channels)
    } else {
      projIn = Conv2d(channels, channels, kernelSize: 1)
      projOut = Conv2d(channels, channels, kernelSize: 1)
    }
    blocks = (0..<layers).map { _ in BasicTransformerBlock(dim: channels, heads: heads, contextDim: contextDim) }
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = [("norm", norm), ("proj_in", projIn)]
    for (i, b) in blocks.enumerated() { c.append(("transformer_blocks.\(i)", b)) }
    c.append(("proj_out", projOut))
    return c
  }

  /// `x` is NHWC `[N, H, W, C]`; returns the same shape with the input added back.
  public func callAsFunction(_ x: Tensor, conditioning: CrossAttentionConditioning) throws -> Tensor {
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    var t = try norm(x)
    t = try project(projIn, t)
    var tokens = t.reshaped([n, h * w, c])
    for block in blocks { tokens = try block(tokens, conditioning: conditioning) }
    return try project(projOut, tokens.reshaped([n, h, w, c]), accumulate: x)
  }

  private func project(_ m: any Module, _ x: Tensor, accumulate: Tensor? = nil) throws -> Tensor {
    if let conv = m as? Conv2d { return try conv(x, accumulate: accumulate) }
    return try (m as! Linear)(x, accumulate: accumulate)
  }
}
