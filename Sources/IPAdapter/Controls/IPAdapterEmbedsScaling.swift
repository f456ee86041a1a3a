import Foundation
import TensorCore

/// ComfyUI's `embeds_scaling`: how a layer's weight w enters the image-prompt attention. Given the
/// layer's image keys/values K, V `[B, Lk, C]` (C = the layer's width: 320/640/1280 in SD1.5) and
/// its weight w (after the weight type), ComfyUI computes `out_ip`:
///
/// | mode | ComfyUI | our source (key, value, scale) |
/// |---|---|---|
/// | `V only` (default, = original IP-Adapter λ) | w · Attn(Q, K, V) | (K, V, w) |
/// | `K+V` | Attn(Q, w·K, w·V) | (w·K, w·V, 1) |
/// | `K+V w/ C penalty` | w' = w·C/1280; Attn(Q, w'·K, w'·V) | (w'·K, w'·V, 1) |
/// | `K+mean(V) w/ C penalty` | w' = w·C/1280; m = mean over tokens of V (per batch row); Attn(Q, w'·K, (V − m) + w'·m) | (w'·K, (V − m) + w'·m, 1) |
///
/// Scaling K changes the softmax temperature, so the K modes are not linear in w. A weight of 0
/// gives scale 0 (the source is skipped: bit-identical to no adapter, as ComfyUI returns 0 early).
/// A mask (`queryWeights`) multiplies `out_ip` afterwards in every mode, as in ComfyUI.
///
/// matches: ComfyUI_IPAdapter_plus @ 9d076a3 `CrossAttentionPatch.ipadapter_attention`
/// (`embeds_scaling` branches; C = `ip_k.shape[2]`), float32. Draw Things' default and its
/// "Prompt" mode correspond to `K+mean(V) w/ C penalty` with and without the C/1280 factor.
public enum IPAdapterEmbedsScaling: String, Sendable, CaseIterable {
  case vOnly = "V only"
  case kv = "K+V"
  case kvPenalty = "K+V w/ C penalty"
  case kMeanVPenalty = "K+mean(V) w/ C penalty"

  /// Accepts ComfyUI's names and CLI spellings: `v-only`, `k+v`/`kv`, `k+v-c-penalty`/`kv-penalty`,
  /// `k+mean(v)-c-penalty`/`k-mean-v-penalty`.
  public init(name: String) throws {
    let n = name.lowercased().filter { $0.isLetter || $0 == "+" }
      .replacingOccurrences(of: "with", with: "w").replacingOccurrences(of: "+", with: "")
    let table: [String: IPAdapterEmbedsScaling] = [
      "vonly": .vOnly, "v": .vOnly, "kv": .kv, "kvwcpenalty": .kvPenalty, "kvcpenalty": .kvPenalty,
      "kvpenalty": .kvPenalty, "kmeanvwcpenalty": .kMeanVPenalty, "kmeanvcpenalty": .kMeanVPenalty,
      "kmeanvpenalty": .kMeanVPenalty,
    ]
    guard let m = table[n] else {
      throw IPAdapterControlError.unknownName(kind: "embeds scaling", name: name, known: Self.allCases.map(\.rawValue))
    }
    self = m
  }

  /// The attention source that makes our decoupled attention compute ComfyUI's `out_ip` for
  /// keys/values `[B, Lk, C]` and layer weight `weight`.
  public func source(key: Tensor, value: Tensor, weight: Float, queryWeights: Tensor? = nil) throws -> AttentionSource {
    guard key.rank == 3, key.shape == value.shape else {
      throw IPAdapterControlError.badShape(name: "image-prompt keys/values", expected: "two equal [B, Lk, C] tensors", got: key.shape)
    }
    if weight == 0 { return AttentionSource(key: key, value: value, scale: 0, queryWeights: queryWeights) }
    let c = key.shape[2]
    switch self {
    case .vOnly:
      return AttentionSource(key: key, value: value, scale: weight, queryWeights: queryWeights)
    case .kv, .kvPenalty:
      let w = self == .kv ? weight : Self.penalised(weight, c)
      return AttentionSource(key: try Self.scaled(key, w), value: try Self.scaled(value, w), scale: 1, queryWeights: queryWeights)
    case .kMeanVPenalty:
      let w = Self.penalised(weight, c)
      return AttentionSource(key: try Self.scaled(key, w), value: try Self.meanScaled(value, w), scale: 1, queryWeights: queryWeights)
    }
  }

  /// `w·C/1280`, in double precision like ComfyUI's Python floats, then rounded once.
  static func penalised(_ w: Float, _ c: Int) -> Float { Float(Double(w) * (Double(c) / 1280)) }

  static func scaled(_ t: Tensor, _ w: Float) throws -> Tensor {
    try Tensor(shape: t.shape, floats: t.scalars().map { $0 * w })
  }

  /// `(V − m) + m·w` with `m` the mean over the token axis of each batch row.
  static func meanScaled(_ v: Tensor, _ w: Float) throws -> Tensor {
    let (b, l, c) = (v.shape[0], v.shape[1], v.shape[2])
    var x = v.scalars()
    for bi in 0..<b {
      var m = [Float](repeating: 0, count: c)
      for t in 0..<l { for k in 0..<c { m[k] += x[(bi * l + t) * c + k] } }
      for k in 0..<c { m[k] /= Float(l) }
      for t in 0..<l {
        for k in 0..<c {
          let i = (bi * l + t) * c + k
          x[i] = (x[i] - m[k]) + m[k] * w
        }
      }
    }
    return try Tensor(shape: v.shape, floats: x)
  }
}
