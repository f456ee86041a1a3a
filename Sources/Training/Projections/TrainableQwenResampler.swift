import Autograd
import IPAdapter
import TensorCore

/// Qwen-VL's position-aware resampler in trainable form (every parameter but the fixed `pos_embed`
/// table learns), with the key layout of `QwenResampler`.
///
/// matches: Qwen-VL `visual.py` `Resampler` + `VisionTransformer`'s `ln_post(x) @ proj` under
/// `torch.autograd` (tested against the reference code on several grids, resized key tables
/// included): `nn.MultiheadAttention(ln_q(query) + pos_embed, ln_kv(kv_proj(x)) + get_abs_pos(…), ln_kv(kv_proj(x)))`.
public final class TrainableQwenResampler: TrainableProjection {
  public let shape: QwenResampler.Shape
  public let parameters: [(key: String, variable: Variable)]
  /// The fixed sin-cos table (a constant: it never learns, as `requires_grad_(False)` in Qwen-VL).
  public let posEmbed: Variable
  private let byKey: [String: Variable]
  /// The fixed key position table per feature-grid side (resized once per side).
  private var keyPositions: [Int: Tensor] = [:]

  /// The trainable keys of a Qwen resampler of `shape` with their shapes (`pos_embed` is fixed).
  public static func parameterShapes(_ s: QwenResampler.Shape) -> [(String, [Int])] {
    var out: [(String, [Int])] = [("query", [s.queries, s.dim])]
    if s.kvDim != s.dim { out.append(("kv_proj.weight", [s.dim, s.kvDim])) }
    out += [
      ("attn.in_proj_weight", [3 * s.dim, s.dim]), ("attn.in_proj_bias", [3 * s.dim]),
      ("attn.out_proj.weight", [s.dim, s.dim]), ("attn.out_proj.bias", [s.dim]),
      ("ln_q.weight", [s.dim]), ("ln_q.bias", [s.dim]), ("ln_kv.weight", [s.dim]), ("ln_kv.bias", [s.dim]),
      ("ln_post.weight", [s.dim]), ("ln_post.bias", [s.dim]), ("proj", [s.dim, s.outputDim]),
    ]
    return out
  }

  public init(shape: QwenResampler.Shape, state: [String: Tensor]) throws {
    self.shape = shape
    parameters = try TrainableProjections.leaves(Self.parameterShapes(shape), from: state, owner: "TrainableQwenResampler")
    byKey = Dictionary(uniqueKeysWithValues: parameters.map { ($0.key, $0.variable) })
    guard let table = state["pos_embed"] else { throw AutogradError.invalidArgument("TrainableQwenResampler: pos_embed is missing") }
    guard table.shape == [shape.queries, shape.dim] else {
      throw AutogradError.shapeMismatch(operation: "TrainableQwenResampler pos_embed", expected: [shape.queries, shape.dim], actual: table.shape)
    }
    posEmbed = Variable(constant: table.asFloat32())
  }

  /// The current values by key, the fixed table included (the adapter file's `image_proj` part).
  public func state() -> [String: Tensor] {
    var out = Dictionary(uniqueKeysWithValues: parameters.map { ($0.key, $0.variable.value) })
    out["pos_embed"] = posEmbed.value
    return out
  }

  private func p(_ key: String) -> Variable { byKey[key]! }

  /// CLIP hidden states `[B, L, D]` (a CLS token first is dropped, see `QwenResampler`) → `[B, G², C]`.
  public func callAsFunction(_ input: Variable, on tape: Tape) throws -> Variable {
    let x = try input.requiresGrad ? input : Variable(constant: QwenResampler.keyGrid(input.value, width: shape.kvDim))
    guard x.shape.count == 3, x.shape[2] == shape.kvDim else {
      throw AutogradError.invalidArgument("TrainableQwenResampler: features must be [B, L, \(shape.kvDim)], got \(x.shape)")
    }
    let (b, l, e) = (x.shape[0], x.shape[1], shape.dim)
    let side = Int(Double(l).squareRoot().rounded())
    guard side * side == l else { throw AutogradError.invalidArgument("TrainableQwenResampler: \(l) feature tokens are not a square grid") }
    var h = x
    if shape.kvDim != e { h = try tape.linear(h, weight: p("kv_proj.weight")) }
    h = try tape.layerNorm(h, weight: p("ln_kv.weight"), bias: p("ln_kv.bias"), eps: 1e-6)
    let kpos = try keyPositions[side] ?? QwenResampler.resizedTable(posEmbed.value, from: shape.grid, to: side)
    keyPositions[side] = kpos
    let keysIn = try tape.add(h, Variable(constant: try Ops.concatRows(Array(repeating: kpos, count: b)).reshaped([b, l, e])))
    let q0 = try tape.add(try tape.layerNorm(p("query"), weight: p("ln_q.weight"), bias: p("ln_q.bias"), eps: 1e-6), posEmbed)
    let queries = try tape.repeatBatch(try tape.reshape(q0, [1, shape.queries, e]), count: b)
    let w = try tape.splitRows(p("attn.in_proj_weight"), parts: 3)
    let bias = try tape.splitRows(p("attn.in_proj_bias"), parts: 3)
    let attended = try tape.attention(
      try tape.linear(queries, weight: w[0], bias: bias[0]), try tape.linear(keysIn, weight: w[1], bias: bias[1]),
      try tape.linear(h, weight: w[2], bias: bias[2]), heads: shape.heads)
    let out = try tape.linear(attended, weight: p("attn.out_proj.weight"), bias: p("attn.out_proj.bias"))
    let normed = try tape.layerNorm(out, weight: p("ln_post.weight"), bias: p("ln_post.bias"), eps: 1e-6)
    return try tape.linear(normed, weight: try tape.transpose(p("proj")))
  }
}
