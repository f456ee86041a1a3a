import NN
import TensorCore

/// Activation functions CLIP configs name in `hidden_act`.
public enum CLIPActivation: String, Codable, Sendable {
  case quickGelu = "quick_gelu"
  case gelu = "gelu"

  func apply(_ x: Tensor) -> Tensor {
    switch self {
    case .quickGelu: Ops.quickGelu(x)
    case .gelu: Ops.gelu(x)
    }
  }
}

/// One CLIP transformer layer: keys `self_attn.{q,k,v,out}_proj`, `layer_norm1`, `mlp.fc1`,
/// `mlp.fc2`, `layer_norm2`.
///
/// matches: transformers `CLIPEncoderLayer` (pre-norm; attention with biases and scale
/// `head_dim^-0.5`; MLP with the configured activation).
public final class CLIPEncoderLayer: Module {
  public let heads: Int
  public let qProj: Linear
  public let kProj: Linear
  public let vProj: Linear
  public let outProj: Linear
  public let layerNorm1: LayerNorm
  public let fc1: Linear
  public let fc2: Linear
  public let layerNorm2: LayerNorm
  public let activation: CLIPActivation

  public init(hidden: Int, intermediate: Int, heads: Int, eps: Float, activation: CLIPActivation) {
    self.heads = heads
    qProj = Linear(hidden, hidden)
    kProj = Linear(hidden, hidden)
    vProj = Linear(hidden, hidden)
    outProj = Linear(hidden, hidden)
    layerNorm1 = LayerNorm(hidden, eps: eps)
    fc1 = Linear(hidden, intermediate)
    fc2 = Linear(intermediate, hidden)
    layerNorm2 = LayerNorm(hidden, eps: eps)
    self.activation = activation
  }

  public var children: [(String, any Module)] {
    [
      ("self_attn.q_proj", qProj), ("self_attn.k_proj", kProj), ("self_attn.v_proj", vProj),
      ("self_attn.out_proj", outProj), ("layer_norm1", layerNorm1), ("mlp.fc1", fc1), ("mlp.fc2", fc2),
      ("layer_norm2", layerNorm2),
    ]
  }

  /// `x` is `[B, L, hidden]`.
  public func callAsFunction(_ x: Tensor, causal: Bool) throws -> Tensor {
    let h = try layerNorm1(x)
    let q = try qProj(h)
    let k = try kProj(h)
    let v = try vProj(h)
    let a = try Attention.multiHead(query: q, sources: [AttentionSource(key: k, value: v)], heads: heads, causal: causal)
    let r = try outProj(a, accumulate: x)
    let m = activation.apply(try fc1(try layerNorm2(r)))
    return try fc2(m, accumulate: r)
  }
}
