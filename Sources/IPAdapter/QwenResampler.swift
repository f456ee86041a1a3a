import Foundation
import Models
import NN
import Synchronization
import TensorCore

/// Qwen-VL's position-aware vision-language adapter as an IP-Adapter image projection: `grid²`
/// learnable queries with a fixed 2-D sin-cos table attend, in one multi-head attention layer, to
/// the CLIP feature grid (keys carry the table resized to the feature grid); then `ln_post` and
/// the output matrix `proj`.
///
/// Keys (under `image_proj.` in an adapter file): `query` `[G², E]`, `pos_embed` `[G², E]` (fixed),
/// `kv_proj.weight` `[E, D]` (absent when the CLIP width D equals E), `ln_q.*`, `ln_kv.*` `[E]`,
/// `attn.in_proj_weight` `[3E, E]` (W_q, W_k, W_v stacked), `attn.in_proj_bias` `[3E]`,
/// `attn.out_proj.weight` `[E, E]` / `.bias`, `ln_post.*` `[E]`, `proj` `[E, C]` (used as `x · proj`).
/// Heads are 64 wide (E/64 heads, as IP-Adapter's Resampler; Qwen-VL itself uses 128). Input:
/// CLIP `hidden_states[-2]` `[B, L, D]`; when L is one more than a square the first (CLS) token is
/// dropped, and the remaining tokens are the key grid (16×16 for ViT-H/14 at 224).
///
/// matches: Qwen-VL `visual.py` `Resampler(grid_size, embed_dim, num_heads, kv_dim,
/// norm_layer=partial(LayerNorm, eps=1e-6))` followed by `VisionTransformer`'s `ln_post(x) @ proj`:
/// `attn(ln_q(query) + pos_embed, ln_kv(kv_proj(x)) + get_abs_pos(pos_embed, L), ln_kv(kv_proj(x)))`
/// with `nn.MultiheadAttention` and `get_abs_pos`'s bicubic resize (align_corners=False, A = −0.75).
public final class QwenResampler: ImagePromptProjection, @unchecked Sendable {
  /// The dimensions, all read from the keys.
  public struct Shape: Equatable, Sendable {
    public var grid: Int, dim: Int, kvDim: Int, outputDim: Int
    public var heads: Int { dim / 64 }
    public var queries: Int { grid * grid }

    public init(grid: Int, dim: Int, kvDim: Int, outputDim: Int) {
      (self.grid, self.dim, self.kvDim, self.outputDim) = (grid, dim, kvDim, outputDim)
    }
  }

  public let shape: Shape
  public let query: Parameter, posEmbed: Parameter
  public let kvProj: Linear?
  public let lnQ: LayerNorm, lnKV: LayerNorm, lnPost: LayerNorm
  public let inProjWeight: Parameter, inProjBias: Parameter
  public let outProj: Linear
  public let proj: Parameter
  private var kernels: (q: LinearKernel, k: LinearKernel, v: LinearKernel, proj: LinearKernel)?
  /// `ln_q(query) + pos_embed`, made by `prepare`.
  private var queryTokens: Tensor?
  /// The key position table per feature-grid side (resized once per side; calls may run concurrently).
  private let keyPositions = Mutex<[Int: Tensor]>([:])

  public init(_ s: Shape) {
    shape = s
    query = Parameter([s.queries, s.dim])
    posEmbed = Parameter([s.queries, s.dim])
    kvProj = s.kvDim == s.dim ? nil : Linear(s.kvDim, s.dim, bias: false)
    lnQ = LayerNorm(s.dim, eps: 1e-6)
    lnKV = LayerNorm(s.dim, eps: 1e-6)
    lnPost = LayerNorm(s.dim, eps: 1e-6)
    inProjWeight = Parameter([3 * s.dim, s.dim])
    inProjBias = Parameter([3 * s.dim])
    outProj = Linear(s.dim, s.dim)
    proj = Parameter([s.dim, s.outputDim])
  }

  public var parameters: [(String, Parameter)] {
    [("query", query), ("pos_embed", posEmbed), ("attn.in_proj_weight", inProjWeight), ("attn.in_proj_bias", inProjBias), ("proj", proj)]
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = [("ln_q", lnQ), ("ln_kv", lnKV), ("attn.out_proj", outProj), ("ln_post", lnPost)]
    if let kvProj { c.append(("kv_proj", kvProj)) }
    return c
  }

  public var inputKind: CLIPVisionOutputKind { .penultimateHiddenState }
  public var inputWidth: Int { shape.kvDim }
  public var outputWidth: Int { shape.outputDim }
  public var tokensPerImage: Int? { shape.queries }

  public func prepare(_ options: PrepareOptions) throws {
    let e = shape.dim
    let w = inProjWeight.value.asFloat32(), b = inProjBias.value.asFloat32()
    func part(_ i: Int) throws -> LinearKernel {
      try LinearKernel(weight: w.slice(rows: i * e..<(i + 1) * e), bias: b.slice(rows: i * e..<(i + 1) * e), precision: options.precision)
    }
    let projT = try Ops.transposedMatrix(proj.value.asFloat32())
    kernels = (try part(0), try part(1), try part(2), try LinearKernel(weight: projT, bias: nil, precision: options.precision))
    queryTokens = try Ops.add(try lnQ(query.value.asFloat32()), posEmbed.value.asFloat32())
    keyPositions.withLock { $0 = [:] }
  }

  /// `get_abs_pos(pos_embed, side²)`, cached per side.
  private func keyPositionTable(side: Int) throws -> Tensor {
    if let table = keyPositions.withLock({ $0[side] }) { return table }
    let table = try Self.resizedTable(posEmbed.value.asFloat32(), from: shape.grid, to: side)
    keyPositions.withLock { $0[side] = table }
    return table
  }

  /// `features` `[B, L, D]` → `[B, G², C]`.
  public func callAsFunction(_ features: Tensor) throws -> Tensor {
    guard let kernels, let queryTokens else { throw ModuleError.notPrepared("QwenResampler") }
    let x = try Self.keyGrid(features, width: shape.kvDim)
    let (b, l) = (x.shape[0], x.shape[1])
    let side = Int(Double(l).squareRoot())
    var h = x
    if let kvProj { h = try kvProj(h) }
    h = try lnKV(h)
    let kpos = try keyPositionTable(side: side)
    let keys = try Ops.add(h, try Ops.concatRows(Array(repeating: kpos, count: b)).reshaped([b, l, shape.dim]))
    let q = try kernels.q(try Ops.concatRows(Array(repeating: queryTokens, count: b)).reshaped([b, shape.queries, shape.dim]))
    let attended = try Attention.multiHead(
      query: q, sources: [AttentionSource(key: try kernels.k(keys), value: try kernels.v(h))], heads: shape.heads)
    return try kernels.proj(try lnPost(try outProj(attended)))
  }

  /// The key grid of CLIP hidden states: all tokens when their count is a square, else without
  /// the first (CLS) token when that leaves a square.
  public static func keyGrid(_ features: Tensor, width: Int) throws -> Tensor {
    guard features.rank == 3, features.shape[2] == width, features.shape[1] > 0 else {
      throw ModuleError.invalidInput("the Qwen resampler expects CLIP hidden states [B, L, \(width)], got \(features.shape)")
    }
    let (b, l) = (features.shape[0], features.shape[1])
    func isSquare(_ n: Int) -> Bool { let r = Int(Double(n).squareRoot().rounded()); return r * r == n && n > 0 }
    if isSquare(l) { return features }
    guard isSquare(l - 1) else {
      throw ModuleError.invalidInput("the Qwen resampler needs a square grid of feature tokens (optionally after a CLS token); got \(l)")
    }
    let f = features.asFloat32()
    var out = Tensor(uninitializedShape: [b, l - 1, width])
    out.withUnsafeMutableFloats { d in
      for i in 0..<b { d.baseAddress!.advanced(by: i * (l - 1) * width).update(from: f.floatPointer + (i * l + 1) * width, count: (l - 1) * width) }
    }
    return out
  }

  /// The fixed 2-D sin-cos table `[G², E]` (E a multiple of 4): for token `i·G + j` (row i,
  /// column j), `[sin(j·ω), cos(j·ω), sin(i·ω), cos(i·ω)]` with `ω_k = 10000^(−k/(E/4))`.
  ///
  /// matches: Qwen-VL / MAE `get_2d_sincos_pos_embed(embed_dim, grid_size)` (computed in double
  /// and rounded; numpy's float32 differs by at most an ulp).
  public static func sinCosTable(dim: Int, grid: Int) -> Tensor {
    let quarter = dim / 4
    var out = Tensor(uninitializedShape: [grid * grid, dim])
    out.withUnsafeMutableFloats { d in
      for i in 0..<grid {
        for j in 0..<grid {
          let row = d.baseAddress!.advanced(by: (i * grid + j) * dim)
          for k in 0..<quarter {
            let omega = 1 / pow(10000, Double(Float(k) / Float(quarter)))
            row[k] = Float(sin(Double(j) * omega))
            row[quarter + k] = Float(cos(Double(j) * omega))
            row[2 * quarter + k] = Float(sin(Double(i) * omega))
            row[3 * quarter + k] = Float(cos(Double(i) * omega))
          }
        }
      }
    }
    return out
  }

  /// A square table `[S², C]` resized to `[T², C]` (unchanged when S = T).
  ///
  /// matches: Qwen-VL `get_abs_pos`: `F.interpolate(size=(T, T), mode="bicubic",
  /// align_corners=False)` in float32 — source `s·(t + 0.5) − 0.5`, Keys cubic A = −0.75, taps
  /// clamped to the border, separable (along the width, then the height).
  public static func resizedTable(_ table: Tensor, from s: Int, to t: Int) throws -> Tensor {
    guard table.rank == 2, table.shape[0] == s * s, s > 0, t > 0 else {
      throw ModuleError.invalidInput("a position table of \(table.shape) is not a \(s)×\(s) grid")
    }
    if s == t { return table }
    let c = table.shape[1]
    // Per output index: 4 source taps and weights.
    let scale = Float(s) / Float(t)
    func cubic(_ x: Float) -> Float {
      let a: Float = -0.75
      let ax = abs(x)
      if ax <= 1 { return ((a + 2) * ax - (a + 3)) * ax * ax + 1 }
      if ax < 2 { return ((a * ax - 5 * a) * ax + 8 * a) * ax - 4 * a }
      return 0
    }
    let taps: [([Int], [Float])] = (0..<t).map { o in
      let x = scale * (Float(o) + 0.5) - 0.5
      let x0 = Int(floor(x))
      let f = x - Float(x0)
      let w = [cubic(f + 1), cubic(f), cubic(1 - f), cubic(2 - f)]
      return ((0..<4).map { min(max(x0 - 1 + $0, 0), s - 1) }, w)
    }
    let src = table.asFloat32().floatPointer
    // Along the width: [S, T, C].
    var rows = [Float](repeating: 0, count: s * t * c)
    for y in 0..<s {
      for (o, (idx, w)) in taps.enumerated() {
        for ch in 0..<c {
          var acc = src[(y * s + idx[0]) * c + ch] * w[0]
          for k in 1..<4 { acc = fmaf(src[(y * s + idx[k]) * c + ch], w[k], acc) }
          rows[(y * t + o) * c + ch] = acc
        }
      }
    }
    var out = Tensor(uninitializedShape: [t * t, c])
    out.withUnsafeMutableFloats { d in
      for (oy, (idx, w)) in taps.enumerated() {
        for ox in 0..<t {
          for ch in 0..<c {
            var acc = rows[(idx[0] * t + ox) * c + ch] * w[0]
            for k in 1..<4 { acc = fmaf(rows[(idx[k] * t + ox) * c + ch], w[k], acc) }
            d[(oy * t + ox) * c + ch] = acc
          }
        }
      }
    }
    return out
  }
}
