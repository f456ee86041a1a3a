import Foundation
import TensorCore

extension Tape {
  /// Multi-head scaled dot-product attention on `[B, L, H·d]` projections: per batch and head,
  /// `softmax(scale · Q Kᵀ) V`, the heads side by side in the output `[B, Lq, H·d]`.
  ///
  /// matches: `torch.nn.functional.scaled_dot_product_attention` on the `[B, H, L, d]` views
  /// (default scale `1/√d`). Memory-efficient as torch's CPU kernel: the probabilities `P` are not
  /// kept — the forward pass is `Attention.multiHead`, and the backward pass recomputes them one
  /// head and one block of about 1 MiB-worth of query rows at a time (the block stays in cache),
  /// then computes
  /// `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ⊙ (dP − rowsum(dO ⊙ O))`, `dQ = scale · dS K`,
  /// `dK = scale · dSᵀ Q` (a 64×64 latent's self-attention would otherwise keep 0.5 GB per layer).
  ///
  /// `blockRows` (tests) sets the backward pass's query block instead of the ≈ 1 MiB default.
  public func attention(
    _ q: Variable, _ k: Variable, _ v: Variable, heads: Int, scale: Float? = nil, blockRows: Int? = nil
  ) throws -> Variable {
    guard q.shape.count == 3, k.shape.count == 3, v.shape == k.shape, q.shape[0] == k.shape[0], q.shape[2] == k.shape[2],
      heads > 0, q.shape[2] % heads == 0
    else {
      throw AutogradError.invalidArgument("attention: q \(q.shape), k \(k.shape), v \(v.shape) with \(heads) heads")
    }
    let (batch, lq, width) = (q.shape[0], q.shape[1], q.shape[2])
    let lk = k.shape[1]
    let d = width / heads
    let s = scale ?? 1 / Float(d).squareRoot()
    let qv = q.value, kv = k.value, vv = v.value
    // The forward pass is the inference kernel (query blocks of about 1 MiB of scores per
    // thread, oneDNN); the backward pass computes the probabilities again.
    let out = try Attention.multiHead(query: qv, sources: [AttentionSource(key: kv, value: vv)], heads: heads, softmaxScale: s)
    return record(out, inputs: [q, k, v]) { g, needs in
      let dq = needs[0] ? Tensor.zeros(qv.shape) : nil
      let dk = needs[1] ? Tensor.zeros(kv.shape) : nil
      let dv = needs[2] ? Tensor.zeros(vv.shape) : nil
      // Query blocks of at most `chunk` rows: a block's probabilities and their gradient
      // (chunk × Lk each, ≈ 4 MiB) stay in cache; dK and dV of the head add up over the blocks.
      let chunk = max(1, min(lq, blockRows ?? (1 << 20) / max(lk, 1)))
      var qh = [Float](repeating: 0, count: lq * d), kh = [Float](repeating: 0, count: lk * d)
      var vh = [Float](repeating: 0, count: lk * d), goh = [Float](repeating: 0, count: lq * d)
      var oh = [Float](repeating: 0, count: lq * d)
      var dkh = [Float](repeating: 0, count: lk * d), dvh = [Float](repeating: 0, count: lk * d)
      var dqh = [Float](repeating: 0, count: lq * d)
      var p = [Float](repeating: 0, count: chunk * lk), dp = [Float](repeating: 0, count: chunk * lk)
      var rowDot = [Float](repeating: 0, count: chunk)
      for b in 0..<batch {
        for h in 0..<heads {
          Self.gatherHead(qv, b, h, rows: lq, d: d, width: width, into: &qh)
          Self.gatherHead(kv, b, h, rows: lk, d: d, width: width, into: &kh)
          Self.gatherHead(vv, b, h, rows: lk, d: d, width: width, into: &vh)
          Self.gatherHead(g, b, h, rows: lq, d: d, width: width, into: &goh)
          if dq != nil || dk != nil { Self.gatherHead(out, b, h, rows: lq, d: d, width: width, into: &oh) }
          for r0 in stride(from: 0, to: lq, by: chunk) {
            let rows = min(chunk, lq - r0)
            qh.withUnsafeBufferPointer { qp in
              kh.withUnsafeBufferPointer { kp in
                p.withUnsafeMutableBufferPointer { pp in
                  MatrixMultiply.gemm(
                    m: rows, n: lk, k: d, alpha: s, a: qp.baseAddress! + r0 * d, b: kp.baseAddress!, transposeB: true,
                    c: pp.baseAddress!)
                  Attention.softmaxRows(pp.baseAddress!, rows: rows, columns: lk)
                }
              }
            }
            if dv != nil {
              // dV += Pᵀ dO (the block's rows).
              p.withUnsafeBufferPointer { pp in
                goh.withUnsafeBufferPointer { gp in
                  dvh.withUnsafeMutableBufferPointer { dp in
                    MatrixMultiply.gemm(
                      m: lk, n: d, k: rows, a: pp.baseAddress!, transposeA: true, b: gp.baseAddress! + r0 * d,
                      beta: r0 == 0 ? 0 : 1, c: dp.baseAddress!)
                  }
                }
              }
            }
            guard dq != nil || dk != nil else { continue }
            // rowsum(dP ⊙ P) = rowsum(dO ⊙ O): d products per row instead of Lk.
            for r in 0..<rows {
              var dot: Float = 0
              for j in 0..<d { dot += goh[(r0 + r) * d + j] * oh[(r0 + r) * d + j] }
              rowDot[r] = dot
            }
            // dP = dO Vᵀ, then dS = P ⊙ (dP − rowsum) in place.
            goh.withUnsafeBufferPointer { gp in
              vh.withUnsafeBufferPointer { vp in
                dp.withUnsafeMutableBufferPointer { dd in
                  MatrixMultiply.gemm(
                    m: rows, n: lk, k: d, a: gp.baseAddress! + r0 * d, b: vp.baseAddress!, transposeB: true, c: dd.baseAddress!)
                }
              }
            }
            p.withUnsafeBufferPointer { pp in
              dp.withUnsafeMutableBufferPointer { dd in
                rowDot.withUnsafeBufferPointer { rd in
                  let (pb, db, rb) = (pp.baseAddress!, dd.baseAddress!, rd.baseAddress!)
                  for r in 0..<rows {
                    let dot = rb[r]
                    for c in r * lk..<(r + 1) * lk { db[c] = pb[c] * (db[c] - dot) }
                  }
                }
              }
            }
            dp.withUnsafeBufferPointer { dd in
              if dq != nil {
                kh.withUnsafeBufferPointer { kp in
                  dqh.withUnsafeMutableBufferPointer { dqp in
                    MatrixMultiply.gemm(
                      m: rows, n: d, k: lk, alpha: s, a: dd.baseAddress!, b: kp.baseAddress!, c: dqp.baseAddress! + r0 * d)
                  }
                }
              }
              if dk != nil {
                qh.withUnsafeBufferPointer { qp in
                  dkh.withUnsafeMutableBufferPointer { dkp in
                    MatrixMultiply.gemm(
                      m: lk, n: d, k: rows, alpha: s, a: dd.baseAddress!, transposeA: true, b: qp.baseAddress! + r0 * d,
                      beta: r0 == 0 ? 0 : 1, c: dkp.baseAddress!)
                  }
                }
              }
            }
          }
          if let dv { Self.scatterHead(dvh, into: dv, b, h, rows: lk, d: d, width: width) }
          if let dq { Self.scatterHead(dqh, into: dq, b, h, rows: lq, d: d, width: width) }
          if let dk { Self.scatterHead(dkh, into: dk, b, h, rows: lk, d: d, width: width) }
        }
      }
      return [dq, dk, dv]
    }
  }

  /// Head `h` of sample `b` of a `[B, rows, H·d]` tensor as a contiguous `[rows, d]` matrix.
  static func gatherHead(_ t: Tensor, _ b: Int, _ h: Int, rows: Int, d: Int, width: Int, into buffer: inout [Float]) {
    let src = t.floatPointer + b * rows * width + h * d
    buffer.withUnsafeMutableBufferPointer { dst in
      for r in 0..<rows { (dst.baseAddress! + r * d).update(from: src + r * width, count: d) }
    }
  }

  /// Writes a `[rows, d]` matrix into head `h` of sample `b` of a `[B, rows, H·d]` tensor.
  static func scatterHead(_ buffer: [Float], into t: Tensor, _ b: Int, _ h: Int, rows: Int, d: Int, width: Int) {
    let dst = t.mutableFloatPointer + b * rows * width + h * d
    buffer.withUnsafeBufferPointer { src in
      for r in 0..<rows { (dst + r * width).update(from: src.baseAddress! + r * d, count: d) }
    }
  }
}
