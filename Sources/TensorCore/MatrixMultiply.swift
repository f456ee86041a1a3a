import COpenBLAS

/// General matrix products on row-major Float32 buffers (OpenBLAS `sgemm`).
public enum MatrixMultiply {
  /// `C = alpha · op(A) · op(B) + beta · C` with `op(A)` `[m, k]`, `op(B)` `[k, n]`, all row-major
  /// with leading dimensions equal to their stored row lengths.
  public static func gemm(
    m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, transposeA: Bool = false,
    b: UnsafePointer<Float>, transposeB: Bool = false,
    beta: Float = 0, c: UnsafeMutablePointer<Float>
  ) {
    guard m > 0, n > 0 else { return }
    if k == 0 {
      for i in 0..<(m * n) { c[i] = beta == 0 ? 0 : beta * c[i] }
      return
    }
    cblas_sgemm(
      CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
      Int32(m), Int32(n), Int32(k), alpha, a, Int32(transposeA ? m : k), b, Int32(transposeB ? k : n),
      beta, c, Int32(n))
    FlopCounter.add(2 * m * n * k)
  }
}
