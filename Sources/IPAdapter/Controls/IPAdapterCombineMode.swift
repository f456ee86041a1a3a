import Foundation
import TensorCore

/// How several reference images of one adapter are merged, on the **image-encoder outputs before
/// the projection** (pooled `image_embeds` `[N, D]` or hidden states `[N, L, H]`), with optional
/// per-image weights applied first (`e_i ← w_i · e_i`, the IPAdapter Encoder node's `weight`).
///
/// With N images e₀…e_{N−1}:
/// - `concat`: unchanged (each image is projected on its own and the tokens are concatenated —
///   one softmax over N·T tokens, as diffusers does for a list of images);
/// - `add`: Σ eᵢ;
/// - `subtract`: e₀ − mean(e₁…e_{N−1});
/// - `average`: mean(eᵢ);
/// - `normAverage`: mean over i of eᵢ / ‖e‖, where ‖e‖ is taken **element-wise across the N
///   images** (`torch.norm(e, dim=0)`), not per vector;
/// - `max`, `min`: element-wise over the images (IPAdapter Combine Embeds node only).
/// All but `concat` return one row `[1, …]`. With a single image every mode returns it unchanged
/// (the apply nodes only combine when N > 1). The unconditional side is not combined: ComfyUI keeps
/// the first image's unconditional embedding (`img_uncond_embeds[0]`).
///
/// matches: ComfyUI_IPAdapter_plus @ 9d076a3 `ipadapter_execute` (`combine_embeds`) and
/// `IPAdapterCombineEmbeds.batch` (`max`, `min`), float32 with the reduction summed in image
/// order. Known limitation (faithful): `normAverage` divides by zero — NaN — where every image has
/// 0 in the same element, as torch does.
public enum IPAdapterCombineMode: String, Sendable, CaseIterable {
  case concat
  case add
  case subtract
  case average
  case normAverage = "norm average"
  case max
  case min

  /// Accepts ComfyUI's names and `-`/`_` spellings (`norm-average`, `norm_average`).
  public init(name: String) throws {
    let n = name.lowercased().replacingOccurrences(of: "-", with: " ").replacingOccurrences(of: "_", with: " ")
    guard let m = IPAdapterCombineMode(rawValue: n) else {
      throw IPAdapterControlError.unknownName(kind: "combine mode", name: name, known: Self.allCases.map(\.rawValue))
    }
    self = m
  }

  /// Combines `embeds` (`[N, …]`, Float32) after multiplying image i by `weights[i]`
  /// (nil = all 1, exactly as ComfyUI skips the multiply for weight 1).
  public func combine(_ embeds: Tensor, weights: [Float]? = nil) throws -> Tensor {
    guard embeds.rank >= 2, embeds.shape[0] > 0 else {
      throw IPAdapterControlError.badShape(name: "image embeddings", expected: "[N, D] or [N, L, H]", got: embeds.shape)
    }
    let n = embeds.shape[0], row = embeds.count / n
    if let weights, weights.count != n {
      throw IPAdapterControlError.maskMismatch("\(weights.count) image weights given for \(n) images")
    }
    var e = embeds.scalars()
    if let weights {
      for i in 0..<n where weights[i] != 1 {
        for k in 0..<row { e[i * row + k] *= weights[i] }
      }
    }
    if self == .concat || n == 1 { return try Tensor(shape: embeds.shape, floats: e) }
    var out = [Float](repeating: 0, count: row)
    func mean(_ rows: Range<Int>, _ value: (Int, Int) -> Float) -> [Float] {
      var acc = [Float](repeating: 0, count: row)
      for i in rows { for k in 0..<row { acc[k] += value(i, k) } }
      return acc.map { $0 / Float(rows.count) }
    }
    switch self {
    case .concat: break
    case .add:
      for i in 0..<n { for k in 0..<row { out[k] += e[i * row + k] } }
    case .subtract:
      let rest = mean(1..<n) { e[$0 * row + $1] }
      for k in 0..<row { out[k] = e[k] - rest[k] }
    case .average:
      out = mean(0..<n) { e[$0 * row + $1] }
    case .normAverage:
      var norm = [Float](repeating: 0, count: row)
      for i in 0..<n { for k in 0..<row { norm[k] += e[i * row + k] * e[i * row + k] } }
      norm = norm.map { $0.squareRoot() }
      out = mean(0..<n) { e[$0 * row + $1] / norm[$1] }
    case .max, .min:
      out = Array(e[0..<row])
      for i in 1..<n {
        for k in 0..<row {
          let v = e[i * row + k]
          out[k] = self == .max ? Swift.max(out[k], v) : Swift.min(out[k], v)
        }
      }
    }
    return try Tensor(shape: [1] + embeds.shape.dropFirst(), floats: out)
  }
}
