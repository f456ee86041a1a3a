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
  public let toQ: Variable, toK: Variable, toV: Variable, toOut: Variable, toOutBias: Variable?
  public let toKIP: Variable, toVIP: Variable

  /// From a loaded UNet attention module (frozen) and the adapter's `to_k_ip` / `to_v_ip`
  /// weights `[hidden, cross]` (trainable).
  public convenience init(frozen attention: AttentionModule, toKIP kip: Tensor, toVIP vip: Tensor) throws {
    try self.init(
      heads: attention.heads, toQ: attention.toQ.weight.value, toK: attention.toK.weight.value,
      toV: attention.toV.weight.value, toOut: attention.toOut.weight.value, toOutBias: attention.toOut.bias?.value,
      toKIP: kip, toVIP: vip)
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
    toQ = Variable(constant: q)
    toK = Variable(constant: k)
    toV = Variable(constant: v)
    toOut = Variable(constant: out)
    toOutBias = outBias.map { Variable(constant: $0) }
    toKIP = Variable(parameter: kip)
    toVIP = Variable(parameter: vip)
  }

  /// `hidden` `[B, L, C]` attending to `text` `[B, Lt, cross]` and, scaled by `scale` (λ), to
  /// `image` `[B, T, cross]`.
  public func callAsFunction(_ hidden: Variable, text: Variable, image: Variable, scale: Float, on tape: Tape) throws -> Variable {
    let q = try tape.linear(hidden, weight: toQ)
    let textOut = try tape.attention(q, try tape.linear(text, weight: toK), try tape.linear(text, weight: toV), heads: heads)
    let imageOut = try tape.attention(q, try tape.linear(image, weight: toKIP), try tape.linear(image, weight: toVIP), heads: heads)
    let mixed = try tape.add(textOut, tape.scale(imageOut, scale))
    return try tape.linear(mixed, weight: toOut, bias: toOutBias)
  }
}
