import Foundation
import TensorCore

extension Tape {
  /// Multi-head scaled dot-product attention on `[B, L, H·d]` projections: per batch and head,
  /// `softmax(scale · Q Kᵀ) V`, the heads side by side in the output `[B, Lq, H·d]`.
  ///
  /// matches: `torch.nn.functional.scaled_dot_product_attention` on the `[B, H, L, d]` views
  /// (default scale `1/√d`). Backward with the probabilities `P` kept from the forward pass:
  /// `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`, `dQ = scale · dS K`,
  /// `dK = scale · dSᵀ Q`. Memory: `P` is `B·H·Lq·Lk` floats (the sizes adapter training uses:
  /// the Resampler's queries over image tokens, a UNet layer's latent positions over 77 + N
  /// tokens; the UNet's self-attention is recomputed per block under gradient checkpointing).
  public func attention(_ q: Variable, _ k: Variable, _ v: Variable, heads: Int, scale: Float? = nil) throws -> Variable {
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
    let probabilities = Tensor(uninitializedShape: [batch, heads, lq, lk])
    let out = Tensor(uninitializedShape: [batch, lq, width])
    var qh = [Float](repeating: 0, count: lq * d), kh = [Float](repeating: 0, count: lk * d)
    var vh = [Float](repeating: 0, count: lk * d), oh = [Float](repeating: 0, count: lq * d)
    for b in 0..<batch {
      for h in 0..<heads {
        Self.gatherHead(qv, b, h, rows: lq, d: d, width: width, into: &qh)
        Self.gatherHead(kv, b, h, rows: lk, d: d, width: width, into: &kh)
        Self.gatherHead(vv, b, h, rows: lk, d: d, width: width, into: &vh)
        let p = probabilities.mutableFloatPointer + (b * heads + h) * lq * lk
        MatrixMultiply.gemm(m: lq, n: lk, k: d, alpha: s, a: qh, b: kh, transposeB: true, c: p)
        Self.softmaxRows(p, rows: lq, columns: lk)
        MatrixMultiply.gemm(m: lq, n: d, k: lk, a: p, b: vh, c: &oh)
        Self.scatterHead(oh, into: out, b, h, rows: lq, d: d, width: width)
      }
    }
    return record(out, inputs: [q, k, v]) { g, needs in
      let dq = needs[0] ? Tensor.zeros(qv.shape) : nil
      let dk = needs[1] ? Tensor.zeros(kv.shape) : nil
      let dv = needs[2] ? Tensor.zeros(vv.shape) : nil
      var qh = [Float](repeating: 0, count: lq * d), kh = [Float](repeating: 0, count: lk * d)
      var vh = [Float](repeating: 0, count: lk * d), goh = [Float](repeating: 0, count: lq * d)
      var dp = [Float](repeating: 0, count: lq * lk)
      var part = [Float](repeating: 0, count: max(lq, lk) * d)
      for b in 0..<batch {
        for h in 0..<heads {
          Self.gatherHead(qv, b, h, rows: lq, d: d, width: width, into: &qh)
          Self.gatherHead(kv, b, h, rows: lk, d: d, width: width, into: &kh)
          Self.gatherHead(vv, b, h, rows: lk, d: d, width: width, into: &vh)
          Self.gatherHead(g, b, h, rows: lq, d: d, width: width, into: &goh)
          let p = probabilities.floatPointer + (b * heads + h) * lq * lk
          if let dv {
            MatrixMultiply.gemm(m: lk, n: d, k: lq, a: p, transposeA: true, b: goh, c: &part)
            Self.scatterHead(part, into: dv, b, h, rows: lk, d: d, width: width)
          }
          guard dq != nil || dk != nil else { continue }
          // dP = dO Vᵀ, then dS = P ⊙ (dP − rowsum(dP ⊙ P)) in place.
          MatrixMultiply.gemm(m: lq, n: lk, k: d, a: goh, b: vh, transposeB: true, c: &dp)
          for r in 0..<lq {
            var dot = 0.0
            for c in 0..<lk { dot += Double(dp[r * lk + c]) * Double(p[r * lk + c]) }
            for c in 0..<lk { dp[r * lk + c] = p[r * lk + c] * (dp[r * lk + c] - Float(dot)) }
          }
          if let dq {
            MatrixMultiply.gemm(m: lq, n: d, k: lk, alpha: s, a: dp, b: kh, c: &part)
            Self.scatterHead(part, into: dq, b, h, rows: lq, d: d, width: width)
          }
          if let dk {
            MatrixMultiply.gemm(m: lk, n: d, k: lq, alpha: s, a: dp, transposeA: true, b: qh, c: &part)
            Self.scatterHead(part, into: dk, b, h, rows: lk, d: d, width: width)
          }
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

  /// Row-wise softmax in place (max subtracted; double sums).
  static func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
    for r in 0..<rows {
      let row = p + r * columns
      var m = -Float.infinity
      for c in 0..<columns { m = max(m, row[c]) }
      var sum = 0.0
      for c in 0..<columns {
        let e = Foundation.exp(Double(row[c] - m))
        row[c] = Float(e)
        sum += e
      }
      for c in 0..<columns { row[c] = Float(Double(row[c]) / sum) }
    }
  }
}
