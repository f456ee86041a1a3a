import COpenBLAS

/// `W + s · U·D`: a weight plus a scaled low-rank product, the arithmetic of fusing a LoRA into a
/// layer (OpenBLAS `sgemm`, Float32 throughout).
///
/// matches: diffusers/PEFT `fuse_lora` (`weight += scale · (lora_B @ lora_A)`, computed in the
/// weight's dtype — Float32 here whatever the stored dtype, so fp16 checkpoints fuse more exactly
/// than in a half-precision PyTorch run).
public enum LowRankUpdate {
  /// Adds `scale · up · down` to `base` in place.
  /// - Parameters:
  ///   - base: a Float32 tensor of `rows × columns` elements (any shape with that count).
  ///   - up: `[rows, rank]` elements (any dtype; a 4-D `[rows, rank, 1, 1]` kernel is fine).
  ///   - down: `[rank, columns]` elements (a `[rank, in, k, k]` kernel flattens to `in·k·k` columns).
  public static func add(
    into base: inout Tensor, rows: Int, columns: Int, rank: Int, up: Tensor, down: Tensor, scale: Float
  ) throws {
    guard base.dtype == .float32, base.count == rows * columns, up.count == rows * rank, down.count == rank * columns,
      rows > 0, columns > 0, rank > 0, max(rows, columns, rank) <= Int(Int32.max)
    else {
      throw TensorError.invalidArgument(
        "low-rank update of \(base.shape) (\(rows)×\(columns)) with up \(up.shape) and down \(down.shape) (rank \(rank))")
    }
    let u = up.asFloat32(pooled: false)
    let d = down.asFloat32(pooled: false)
    let c = base.mutableFloatPointer
    cblas_sgemm(
      CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(columns), Int32(rank), scale,
      u.floatPointer, Int32(rank), d.floatPointer, Int32(columns), 1, c, Int32(columns))
  }
}
