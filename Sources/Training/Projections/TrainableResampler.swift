import Autograd
import IPAdapter
import TensorCore

/// IP-Adapter Plus's Perceiver Resampler in trainable form: its parameters as autograd leaves
/// under their checkpoint keys (`image_proj.` removed), its forward pass recorded on a tape.
///
/// matches: tencent-ailab/IP-Adapter `ip_adapter/resampler.py` `Resampler` (heads of 64, no
/// positional embedding, no mean-pooled latents): `latents.repeat(B)`, `proj_in`, per layer
/// `latents += PerceiverAttention(x, latents)` (`norm1(x)`, `norm2(latents)`, queries from the
/// latents, keys and values from `to_kv([x; latents])` split K then V, softmax of `qkᵀ/√64`,
/// `to_out`) and `latents += FeedForward(latents)` (LayerNorm, Linear, GELU, Linear), then
/// `proj_out` and `norm_out`. Limitations: the pos_emb and mean-pooled variants are inference only.
public final class TrainableResampler {
  public let shape: Resampler.Shape
  /// Every parameter by its checkpoint key (`latents`, `proj_in.weight`, `layers.0.0.to_q.weight`, …).
  public let parameters: [(key: String, variable: Variable)]
  private let byKey: [String: Variable]

  /// The keys of a Resampler of `shape`, in the official module's order, with their shapes.
  public static func parameterShapes(_ s: Resampler.Shape) -> [(String, [Int])] {
    let inner = s.heads * 64
    var out: [(String, [Int])] = [
      ("latents", [1, s.queries, s.dim]), ("proj_in.weight", [s.dim, s.embeddingDim]), ("proj_in.bias", [s.dim]),
      ("proj_out.weight", [s.outputDim, s.dim]), ("proj_out.bias", [s.outputDim]),
      ("norm_out.weight", [s.outputDim]), ("norm_out.bias", [s.outputDim]),
    ]
    for i in 0..<s.depth {
      let a = "layers.\(i).0.", f = "layers.\(i).1."
      out += [
        (a + "norm1.weight", [s.dim]), (a + "norm1.bias", [s.dim]), (a + "norm2.weight", [s.dim]), (a + "norm2.bias", [s.dim]),
        (a + "to_q.weight", [inner, s.dim]), (a + "to_kv.weight", [2 * inner, s.dim]), (a + "to_out.weight", [s.dim, inner]),
        (f + "0.weight", [s.dim]), (f + "0.bias", [s.dim]), (f + "1.weight", [s.dim * s.ffMult, s.dim]),
        (f + "3.weight", [s.dim, s.dim * s.ffMult]),
      ]
    }
    return out
  }

  /// From a checkpoint's `image_proj` tensors (or a loaded `Resampler`'s `namedParameters()`).
  /// - Throws: `AutogradError` naming a missing or mis-shaped key, or the unsupported variants.
  public init(shape: Resampler.Shape, state: [String: Tensor]) throws {
    guard shape.maxSequenceLength == nil, shape.meanPooledLatents == 0 else {
      throw AutogradError.invalidArgument("TrainableResampler: the pos_emb and mean-pooled Resampler variants are not trainable yet")
    }
    self.shape = shape
    parameters = try TrainableProjections.leaves(Self.parameterShapes(shape), from: state, owner: "TrainableResampler")
    byKey = Dictionary(uniqueKeysWithValues: parameters.map { ($0.key, $0.variable) })
  }

  func p(_ key: String) -> Variable { byKey[key]! }

  /// The tokens `[B, queries, outputDim]` for image features `x` `[B, L, embeddingDim]`.
  public func callAsFunction(_ x: Variable, on tape: Tape) throws -> Variable {
    guard x.shape.count == 3, x.shape[2] == shape.embeddingDim else {
      throw AutogradError.shapeMismatch(operation: "TrainableResampler input", expected: [x.shape.first ?? 1, x.shape.count > 1 ? x.shape[1] : 0, shape.embeddingDim], actual: x.shape)
    }
    var latents = try tape.repeatBatch(p("latents"), count: x.shape[0])
    let h = try tape.linear(x, weight: p("proj_in.weight"), bias: p("proj_in.bias"))
    for i in 0..<shape.depth {
      let a = "layers.\(i).0.", f = "layers.\(i).1."
      let xn = try tape.layerNorm(h, weight: p(a + "norm1.weight"), bias: p(a + "norm1.bias"), eps: 1e-5)
      let ln = try tape.layerNorm(latents, weight: p(a + "norm2.weight"), bias: p(a + "norm2.bias"), eps: 1e-5)
      let q = try tape.linear(ln, weight: p(a + "to_q.weight"))
      let kv = try tape.chunkLast(try tape.linear(try tape.concatSequence(xn, ln), weight: p(a + "to_kv.weight")), parts: 2)
      let attended = try tape.attention(q, kv[0], kv[1], heads: shape.heads, scale: 1 / 8)
      latents = try tape.add(try tape.linear(attended, weight: p(a + "to_out.weight")), latents)
      let n = try tape.layerNorm(latents, weight: p(f + "0.weight"), bias: p(f + "0.bias"), eps: 1e-5)
      let ff = try tape.linear(tape.gelu(try tape.linear(n, weight: p(f + "1.weight"))), weight: p(f + "3.weight"))
      latents = try tape.add(ff, latents)
    }
    let out = try tape.linear(latents, weight: p("proj_out.weight"), bias: p("proj_out.bias"))
    return try tape.layerNorm(out, weight: p("norm_out.weight"), bias: p("norm_out.bias"), eps: 1e-5)
  }
}
