import CDNNL

/// One set of keys and values a query attends to, with the weight of its contribution.
///
/// Several sources over the same queries give decoupled attention:
/// `out = Σ_s scale_s · softmax(Q K_sᵀ / √d) V_s` (each source has its own softmax).
public struct AttentionSource: @unchecked Sendable {
  /// `[B or 1, Lk, heads·headDim]` Float32.
  public var key: Tensor
  /// `[B or 1, Lk, heads·headDim]` Float32.
  public var value: Tensor
  /// Multiplier on this source's output (1 for ordinary attention; λ for an image prompt).
  public var scale: Float
  /// Optional per-query multiplier `[B or 1, Lq]` applied to this source's output (regional masks).
  public var queryWeights: Tensor?

  public init(key: Tensor, value: Tensor, scale: Float = 1, queryWeights: Tensor? = nil) {
    self.key = key
    self.value = value
    self.scale = scale
    self.queryWeights = queryWeights
  }
}

/// Multi-head scaled dot-product attention with bounded working memory.
///
/// Queries are processed in chunks of `c` rows per head: each worker thread holds one `c × Lk`
/// score block (about 512 KiB, sized for the L2 cache), so peak working memory is
/// `threads × c × Lk × 4` bytes — a few MiB — instead of the `heads × Lq × Lk × 4` bytes (512 MiB
/// per image at a 64×64 latent) of a materialised score matrix. The softmax is exact (full row),
/// not an online approximation.
///
/// matches: `torch.nn.functional.scaled_dot_product_attention` (no dropout), with heads laid out
/// as diffusers' `attn.head_to_batch_dim` / `view(b, -1, heads, d)` expects.
public enum Attention {
  /// Bytes of score memory a worker may use; the query chunk is derived from it.
  public static let scoreBlockBytes = 512 * 1024

  /// Rows of queries processed per block for `keyCount` keys.
  public static func queryChunk(keyCount: Int) -> Int {
    max(8, min(1024, scoreBlockBytes / 4 / max(keyCount, 1)))
  }

  /// - Parameters:
  ///   - query: `[B, Lq, heads·headDim]` Float32.
  ///   - sources: keys/values (first one usually the text); sources with `scale == 0` are skipped.
  ///   - heads: number of heads; `headDim = channels / heads`.
  ///   - causal: mask keys after the query position (CLIP text encoder).
  ///   - softmaxScale: defaults to `1/√headDim`.
  ///   - chunkRows: query rows per block (default: `queryChunk(keyCount:)`); tests use it to force
  ///     several blocks on small inputs.
  /// - Returns: `[B, Lq, heads·headDim]`.
  public static func multiHead(
    query: Tensor, sources: [AttentionSource], heads: Int, causal: Bool = false,
    softmaxScale: Float? = nil, chunkRows: Int? = nil
  ) throws -> Tensor {
    guard query.rank == 3, heads > 0, query.shape[2] % heads == 0 else {
      throw TensorError.invalidArgument(
        "attention query must be [B, L, heads·dim] with channels divisible by \(heads) heads, got \(query.shape)")
    }
    let (batch, lq, channels) = (query.shape[0], query.shape[1], query.shape[2])
    let headDim = channels / heads
    let active = sources.filter { $0.scale != 0 }
    for s in active {
      guard s.key.rank == 3, s.key.shape[2] == channels, s.value.shape == s.key.shape,
        s.key.shape[0] == batch || s.key.shape[0] == 1
      else {
        throw TensorError.invalidArgument(
          "attention keys/values must be [\(batch) or 1, Lk, \(channels)], got \(s.key.shape) / \(s.value.shape)")
      }
      if let w = s.queryWeights, !(w.shape == [batch, lq] || w.shape == [1, lq]) {
        throw TensorError.shapeMismatch(operation: "attention query weights", expected: [batch, lq], actual: w.shape)
      }
    }
    var out = Tensor.zeros([batch, lq, channels])
    if active.isEmpty { return out }
    let q = query.asFloat32()
    let keys = active.map { $0.key.asFloat32() }
    let values = active.map { $0.value.asFloat32() }
    let weights = active.map { $0.queryWeights?.asFloat32() }
    let maxKeys = keys.map { $0.shape[1] }.max() ?? 1
    let chunk = max(1, chunkRows ?? queryChunk(keyCount: maxKeys))
    let chunks = (lq + chunk - 1) / chunk
    let scale = softmaxScale ?? 1 / Float(headDim).squareRoot()
    let outPointer = out.mutableFloatPointer
    let ld = dnnl_dim_t(channels)
    let items = batch * heads * chunks

    Parallel.forRanges(items, costPerItem: chunk * maxKeys * headDim * 4, minimumWork: 1 << 18) { range in
      let scores = UnsafeMutablePointer<Float>.allocate(capacity: chunk * maxKeys)
      defer { scores.deallocate() }
      for item in range {
        let b = item / (heads * chunks)
        let h = (item / chunks) % heads
        let c0 = (item % chunks) * chunk
        let rows = min(chunk, lq - c0)
        let qBase = q.floatPointer + (b * lq + c0) * channels + h * headDim
        let oBase = outPointer + (b * lq + c0) * channels + h * headDim
        for (s, source) in active.enumerated() {
          let kb = keys[s].shape[0] == 1 ? 0 : b
          let lk = keys[s].shape[1]
          let kBase = keys[s].floatPointer + kb * lk * channels + h * headDim
          let vBase = values[s].floatPointer + kb * lk * channels + h * headDim
          // scores[rows × lk] = scale · Q Kᵀ
          _ = dnnl_sgemm(
            CChar(UInt8(ascii: "N")), CChar(UInt8(ascii: "T")), dnnl_dim_t(rows), dnnl_dim_t(lk),
            dnnl_dim_t(headDim), scale, qBase, ld, kBase, ld, 0, scores, dnnl_dim_t(lk))
          for r in 0..<rows {
            let valid = causal ? min(lk, c0 + r + 1) : lk
            var rowScale = Float(1)
            if let w = weights[s] {
              rowScale = w.floatPointer[(w.shape[0] == 1 ? 0 : b) * lq + c0 + r]
            }
            softmaxRow(scores + r * lk, count: valid, total: lk, scale: rowScale)
          }
          // out[rows × headDim] (+)= λ · P V
          _ = dnnl_sgemm(
            CChar(UInt8(ascii: "N")), CChar(UInt8(ascii: "N")), dnnl_dim_t(rows),
            dnnl_dim_t(headDim), dnnl_dim_t(lk), source.scale, scores, dnnl_dim_t(lk), vBase, ld,
            s == 0 ? 0 : 1, oBase, ld)
        }
      }
    }
    return out
  }

  /// In-place softmax of `row[0..<count]` times `scale`; `row[count..<total]` is set to 0.
  @inline(__always)
  static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int, total: Int, scale: Float) {
    typealias V = SIMD16<Float>
    var i = 0
    var vmax = V(repeating: -.infinity)
    while i + 16 <= count {
      vmax = pointwiseMax(vmax, UnsafeRawPointer(row + i).loadUnaligned(as: V.self))
      i += 16
    }
    var m = vmax.max()
    while i < count {
      m = max(m, row[i])
      i += 1
    }
    i = 0
    var vsum = V(repeating: 0)
    let vm = V(repeating: m)
    while i + 16 <= count {
      let e = VectorMath.exp(UnsafeRawPointer(row + i).loadUnaligned(as: V.self) - vm)
      UnsafeMutableRawPointer(row + i).storeBytes(of: e, as: V.self)
      vsum += e
      i += 16
    }
    var sum = vsum.sum()
    while i < count {
      let e = VectorMath.exp(row[i] - m)
      row[i] = e
      sum += e
      i += 1
    }
    let inv = V(repeating: scale / sum)
    i = 0
    while i + 16 <= count {
      let p = UnsafeMutableRawPointer(row + i)
      p.storeBytes(of: p.loadUnaligned(as: V.self) * inv, as: V.self)
      i += 16
    }
    while i < count {
      row[i] *= inv[0]
      i += 1
    }
    if count < total { (row + count).update(repeating: 0, count: total - count) }
  }
}
