import Autograd
import IPAdapter
import Models
import TensorCore

/// One UNet cross-attention layer with IP-Adapter's decoupled image branch, in trainable form:
/// the layer's own `to_q`, `to_k`, `to_v`, `to_out.0` frozen (their gradients are never
/// computed), `to_k_ip` / `to_v_ip` trainable; gradients flow to the hidden states, the text
/// (if it needs one) and the image tokens (so on to the projection).
///
/// matches: tencent-ailab/IP-Adapter `IPAttnProcessor2_0` on a diffusers `Attention` (the
/// processor every training script installs): `to_out(softmax(QKᵀ/√d)V + λ·softmax(QK'ᵀ/√d)V')`
/// with `Q = to_q(h)`, `K, V` from the text and `K', V'` from the image tokens, per head.
public final class TrainableDecoupledAttention {
  public let heads: Int
  let q: FrozenLinear, k: FrozenLinear, v: FrozenLinear, out: FrozenLinear
  public let toKIP: Variable, toVIP: Variable
  /// The frozen weights (float32 values; never given a gradient).
  public var toQ: Variable { Variable(constant: q.weightTensor) }
  public var toK: Variable { Variable(constant: k.weightTensor) }
  public var toV: Variable { Variable(constant: v.weightTensor) }
  public var toOut: Variable { Variable(constant: out.weightTensor) }
  public var toOutBias: Variable? { out.biasTensor.map { Variable(constant: $0) } }

  /// From a loaded UNet attention module (frozen) and the adapter's `to_k_ip` / `to_v_ip`
  /// weights `[hidden, cross]` (trainable).
  /// The projections run on the module's inference kernels (its precision).
  public init(frozen attention: AttentionModule, toKIP kip: Tensor, toVIP vip: Tensor) throws {
    let (kw, hidden) = (attention.toK.weight.shape, attention.toQ.weight.shape[0])
    for (name, t) in [("to_k_ip", kip), ("to_v_ip", vip)] where t.shape != kw {
      throw AutogradError.shapeMismatch(operation: "TrainableDecoupledAttention \(name)", expected: kw, actual: t.shape)
    }
    guard attention.heads > 0, hidden % attention.heads == 0 else {
      throw AutogradError.invalidArgument("TrainableDecoupledAttention: \(hidden) channels, \(attention.heads) heads")
    }
    heads = attention.heads
    (q, k, v, out) = (FrozenLinear(attention.toQ), FrozenLinear(attention.toK), FrozenLinear(attention.toV), FrozenLinear(attention.toOut))
    toKIP = Variable(parameter: kip)
    toVIP = Variable(parameter: vip)
  }

  /// From the layer's weights (`to_q`, `to_k`, `to_v`, `to_out.0` without biases on q/k/v, as the
  /// UNet's) and the adapter's.
  public init(
    heads: Int, toQ q: Tensor, toK k: Tensor, toV v: Tensor, toOut out: Tensor, toOutBias outBias: Tensor?, toKIP kip: Tensor,
    toVIP vip: Tensor
  ) throws {
    guard heads > 0, q.rank == 2, q.shape[0] % heads == 0, k.shape == v.shape, k.rank == 2, k.shape[0] == q.shape[0],
      out.rank == 2, out.shape[1] == q.shape[0]
    else {
      throw AutogradError.invalidArgument(
        "TrainableDecoupledAttention: to_q \(q.shape), to_k \(k.shape), to_v \(v.shape), to_out \(out.shape) with \(heads) heads")
    }
    for (name, t) in [("to_k_ip", kip), ("to_v_ip", vip)] where t.shape != k.shape {
      throw AutogradError.shapeMismatch(operation: "TrainableDecoupledAttention \(name)", expected: k.shape, actual: t.shape)
    }
    self.heads = heads
    self.q = FrozenLinear(weight: Variable(constant: q), bias: nil)
    self.k = FrozenLinear(weight: Variable(constant: k), bias: nil)
    self.v = FrozenLinear(weight: Variable(constant: v), bias: nil)
    self.out = FrozenLinear(weight: Variable(constant: out), bias: outBias.map { Variable(constant: $0) })
    toKIP = Variable(parameter: kip)
    toVIP = Variable(parameter: vip)
  }

  /// `hidden` `[B, L, C]` attending to `text` `[B, Lt, cross]` and, scaled by `scale` (λ), to
  /// `image` `[B, T, cross]`.
  public func callAsFunction(_ hidden: Variable, text: Variable, image: Variable, scale: Float, on tape: Tape) throws -> Variable {
    let query = try q(hidden, on: tape)
    let textOut = try tape.attention(query, try k(text, on: tape), try v(text, on: tape), heads: heads)
    let imageOut = try tape.attention(query, try tape.linear(image, weight: toKIP), try tape.linear(image, weight: toVIP), heads: heads)
    let mixed = try tape.add(textOut, tape.scale(imageOut, scale))
    return try out(mixed, on: tape)
  }
}
