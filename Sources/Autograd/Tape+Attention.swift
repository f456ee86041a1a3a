import Foundation
import TensorCore

extension Tape {
  /// Multi-head scaled dot-product attention on `[B, L, H·d]` projections: per batch and head,
  /// `softmax(scale · Q Kᵀ) V`, the heads side by side in the output `[B, Lq, H·d]`.
  ///
  /// matches: `torch.nn.functional.scaled_dot_product_attention` on the `[B, H, L, d]` views
  /// (default scale `1/√d`). Memory-efficient as torch's CPU kernel: the probabilities `P` are not
  /// kept — one head's at a time, recomputed in the backward pass — which then computes
  /// `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ⊙ (dP − rowsum(dO ⊙ O))`, `dQ = scale · dS K`,
  /// `dK = scale · dSᵀ Q` (a 64×64 latent's self-attention would otherwise keep 0.5 GB per layer).
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
    let out = Tensor(uninitializedShape: [batch, lq, width])
    var qh = [Float](repeating: 0, count: lq * d), kh = [Float](repeating: 0, count: lk * d)
    var vh = [Float](repeating: 0, count: lk * d), oh = [Float](repeating: 0, count: lq * d)
    // One head's probabilities at a time; the backward pass computes them again.
    var p = [Float](repeating: 0, count: lq * lk)
    for b in 0..<batch {
      for h in 0..<heads {
        Self.gatherHead(qv, b, h, rows: lq, d: d, width: width, into: &qh)
        Self.gatherHead(kv, b, h, rows: lk, d: d, width: width, into: &kh)
        Self.gatherHead(vv, b, h, rows: lk, d: d, width: width, into: &vh)
        Self.probabilities(qh, kh, rows: lq, columns: lk, d: d, scale: s, into: &p)
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
      var oh = [Float](repeating: 0, count: lq * d)
      var p = [Float](repeating: 0, count: lq * lk), dp = [Float](repeating: 0, count: lq * lk)
      var part = [Float](repeating: 0, count: max(lq, lk) * d)
      var rowDot = [Float](repeating: 0, count: lq)
      for b in 0..<batch {
        for h in 0..<heads {
          Self.gatherHead(qv, b, h, rows: lq, d: d, width: width, into: &qh)
          Self.gatherHead(kv, b, h, rows: lk, d: d, width: width, into: &kh)
          Self.gatherHead(vv, b, h, rows: lk, d: d, width: width, into: &vh)
          Self.gatherHead(g, b, h, rows: lq, d: d, width: width, into: &goh)
          Self.probabilities(qh, kh, rows: lq, columns: lk, d: d, scale: s, into: &p)
          if let dv {
            MatrixMultiply.gemm(m: lk, n: d, k: lq, a: p, transposeA: true, b: goh, c: &part)
            Self.scatterHead(part, into: dv, b, h, rows: lk, d: d, width: width)
          }
          guard dq != nil || dk != nil else { continue }
          // rowsum(dP ⊙ P) = rowsum(dO ⊙ O): d products per row instead of Lk.
          Self.gatherHead(out, b, h, rows: lq, d: d, width: width, into: &oh)
          for r in 0..<lq {
            var dot: Float = 0
            for j in 0..<d { dot += goh[r * d + j] * oh[r * d + j] }
            rowDot[r] = dot
          }
          // dP = dO Vᵀ, then dS = P ⊙ (dP − rowsum) in place.
          MatrixMultiply.gemm(m: lq, n: lk, k: d, a: goh, b: vh, transposeB: true, c: &dp)
          p.withUnsafeBufferPointer { pp in
            dp.withUnsafeMutableBufferPointer { dd in
              for r in 0..<lq {
                let rd = rowDot[r]
                for c in r * lk..<(r + 1) * lk { dd[c] = pp[c] * (dd[c] - rd) }
              }
            }
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

  /// `softmax(scale · Q Kᵀ)` of one head into `p` (`rows × columns`).
  static func probabilities(_ q: [Float], _ k: [Float], rows: Int, columns: Int, d: Int, scale: Float, into p: inout [Float]) {
    MatrixMultiply.gemm(m: rows, n: columns, k: d, alpha: scale, a: q, b: k, transposeB: true, c: &p)
    p.withUnsafeMutableBufferPointer { Attention.softmaxRows($0.baseAddress!, rows: rows, columns: columns) }
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
