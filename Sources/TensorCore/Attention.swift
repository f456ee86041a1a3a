import CDNNL
import CKernels

/// One set of keys and values a query attends to, with the weight of its contribution.
///
/// Several sources over the same queries give decoupled attention:
/// `out = Σ_s scale_s · softmax(Q K_sᵀ / √d) V_s` (each source has its own softmax).
public struct AttentionSource: Sendable {
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
/// score block (about 1 MiB, the size of one core's L2 cache), so peak working memory is
/// `threads × c × Lk × 4` bytes — a few MiB — instead of the `heads × Lq × Lk × 4` bytes (512 MiB
/// per image at a 64×64 latent) of a materialised score matrix. The softmax is exact (full row),
/// not an online approximation.
///
/// matches: `torch.nn.functional.scaled_dot_product_attention` (no dropout), with heads laid out
/// as diffusers' `attn.head_to_batch_dim` / `view(b, -1, heads, d)` expects.
public enum Attention {
  /// Bytes of score memory a worker may use; the query chunk is derived from it.
  public static let scoreBlockBytes = 1024 * 1024

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
    if active.isEmpty { return Tensor.zeros([batch, lq, channels]) }
    let out = Tensor(uninitializedShape: [batch, lq, channels])
    let q = query.asFloat32()
    defer { withExtendedLifetime(q) {} }  // read through raw pointers below
    let keys = active.map { $0.key.asFloat32() }
    let values = active.map { $0.value.asFloat32() }
    let weights = active.map { $0.queryWeights?.asFloat32() }
    let maxKeys = keys.map { $0.shape[1] }.max() ?? 1
    let chunk = max(1, min(lq, chunkRows ?? queryChunk(keyCount: maxKeys)))
    let blocks = (lq + chunk - 1) / chunk
    let scale = softmaxScale ?? 1 / Float(headDim).squareRoot()
    // One plan per (source length, block rows); the last block may be shorter.
    func plan(_ rows: Int, _ lk: Int) throws -> AttentionPlan {
      try AttentionPlan.plan(
        .init(rows: rows, keys: lk, headDim: headDim, queryStride: channels, keyStride: channels,
              outStride: channels, scale: scale))
    }
    var plans: [[AttentionPlan]] = []  // [source][0: full block, 1: tail block]
    for k in keys {
      let lk = k.shape[1]
      let tail = lq - (blocks - 1) * chunk
      plans.append([try plan(chunk, lk), try plan(tail, lk)])
    }
    let scratchBytes = plans.flatMap { $0 }.map(\.scratchpadBytes).max() ?? 0
    let outPointer = out.mutableFloatPointer
    let items = batch * heads * blocks
    var failure: Error?
    let failureLock = KernelLock()

    Parallel.forRanges(items, costPerItem: chunk * maxKeys * headDim * 4, minimumWork: 1 << 16) { range in
      do {
        let worker = try DNNLWorker(scratchpadBytes: scratchBytes)
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: chunk * maxKeys)
        defer { scores.deallocate() }
        var packed = AttentionPackCache()
        defer { packed.release() }
        for item in range {
          let b = item / (heads * blocks)
          let h = (item / blocks) % heads
          let block = item % blocks
          let c0 = block * chunk
          let rows = min(chunk, lq - c0)
          let qBase = q.floatPointer + (b * lq + c0) * channels + h * headDim
          let oBase = outPointer + (b * lq + c0) * channels + h * headDim
          for s in 0..<keys.count {
            let p = plans[s][rows == chunk ? 0 : 1]
            let lk = p.keys
            let kb = keys[s].shape[0] == 1 ? 0 : b
            let kBase = keys[s].floatPointer + kb * lk * channels + h * headDim
            let vBase = values[s].floatPointer + kb * lk * channels + h * headDim
            let (kp, vp) = try packed.packed(source: s, batch: kb, head: h, plan: p, key: kBase, value: vBase, worker: worker)
            let scratch = try worker.memory(0, p.scores.memoryDesc(dnnl_query_scratchpad_md), worker.scratchpad)
            try worker.run(
              p.scores.primitive,
              [
                (DNNL_ARG_SRC, try worker.memory(1, p.scores.memoryDesc(dnnl_query_src_md), qBase)),
                (DNNL_ARG_WEIGHTS, try worker.memory(2, p.keyPackedDesc, kp)),
                (DNNL_ARG_DST, try worker.memory(3, p.scores.memoryDesc(dnnl_query_dst_md), scores)),
              ], scratch: scratch)
            try worker.wait()
            if causal {
              for r in 0..<rows {
                softmaxRow(scores + r * lk, count: min(lk, c0 + r + 1), total: lk, scale: active[s].scale)
              }
            } else {
              let sm = try worker.memory(14, p.softmax.memoryDesc(dnnl_query_src_md), scores)
              let scratch3 = try worker.memory(15, p.softmax.memoryDesc(dnnl_query_scratchpad_md), worker.scratchpad)
              try worker.run(p.softmax.primitive, [(DNNL_ARG_SRC, sm), (DNNL_ARG_DST, sm)], scratch: scratch3)
              try worker.wait()
              if active[s].scale != 1 || weights[s] != nil {
                for r in 0..<rows {
                  var rowScale = active[s].scale
                  if let w = weights[s] {
                    rowScale *= w.floatPointer[(w.shape[0] == 1 ? 0 : b) * lq + c0 + r]
                  }
                  scaleRow(scores + r * lk, count: lk, by: rowScale)
                }
              }
            }
            let mix = s == 0 ? p.mix : p.mixAccumulate
            let scratch2 = try worker.memory(4, mix.memoryDesc(dnnl_query_scratchpad_md), worker.scratchpad)
            try worker.run(
              mix.primitive,
              [
                (DNNL_ARG_SRC, try worker.memory(5, mix.memoryDesc(dnnl_query_src_md), scores)),
                (DNNL_ARG_WEIGHTS, try worker.memory(6, p.valuePackedDesc, vp)),
                (DNNL_ARG_DST, try worker.memory(7, mix.memoryDesc(dnnl_query_dst_md), oBase)),
              ], scratch: scratch2)
            try worker.wait()
          }
        }
      } catch {
        failureLock.lock()
        failure = failure ?? error
        failureLock.unlock()
      }
    }
    if let failure { throw failure }
    FlopCounter.add(keys.reduce(0) { $0 + 4 * batch * lq * $1.shape[1] * channels })
    return out
  }

  /// `row[0..<count] *= factor`.
  @inline(__always)
  static func scaleRow(_ row: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
    for i in 0..<count { row[i] *= factor }
  }

  /// In-place softmax of `row[0..<count]` times `scale`; `row[count..<total]` is set to 0
  /// (the C kernel: Sleef's exp, ATen's order).
  @inline(__always)
  /// In-place softmax of each of `rows` rows of `columns` floats (the attention's vectorised
  /// kernel; for the autograd tape's attention).
  public static func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
    for r in 0..<rows { ipa_softmax_row(p + r * columns, columns, columns, 1) }
  }

  static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int, total: Int, scale: Float) {
    ipa_softmax_row(row, count, total, scale)
  }
}
