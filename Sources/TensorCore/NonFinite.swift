/// Finding NaN and infinity in tensors of any storage type, on the raw bits (no conversion): for
/// weight files (which a hostile or broken checkpoint can fill with NaN, giving a black image) and
/// for latents after each denoising step.
///
/// matches: `torch.isfinite(x).all()`. Limitations: `sampledNonFiniteIndex` looks at a bounded
/// sample of large tensors (every element of tensors up to `fullScanCount`, else evenly spaced
/// elements plus both ends), so a checkpoint with a single NaN inside a large tensor can pass it;
/// the per-step latent check then catches what it produces.
public enum NonFinite {
  /// Tensors up to this many elements are scanned whole by `sampledNonFiniteIndex`.
  public static let fullScanCount = 16_384
  /// Elements sampled from larger tensors: this many evenly spaced, plus 1024 at each end (at most
  /// a few hundred pages of a memory-mapped file per tensor).
  public static let sampleCount = 256

  /// The index of the first NaN/±infinity of `t`, or nil.
  public static func firstIndex(_ t: Tensor) -> Int? {
    firstIndex(t, indices: 0..<t.count)
  }

  /// A NaN/±infinity index among a cheap sample of `t` (see the type's limitations), or nil.
  public static func sampledNonFiniteIndex(_ t: Tensor) -> Int? {
    let n = t.count
    if n <= fullScanCount { return firstIndex(t) }
    if let i = firstIndex(t, indices: 0..<1024) { return i }
    if let i = firstIndex(t, indices: (n - 1024)..<n) { return i }
    let stride = n / sampleCount
    return firstIndex(t, indices: Swift.stride(from: 0, to: n, by: stride))
  }

  private static func firstIndex<S: Sequence<Int>>(_ t: Tensor, indices: S) -> Int? {
    let p = t.rawPointer
    switch t.dtype {
    case .float32:
      let bits = p.assumingMemoryBound(to: UInt32.self)
      for i in indices where bits[i] & 0x7F80_0000 == 0x7F80_0000 { return i }
    case .float16:
      let bits = p.assumingMemoryBound(to: UInt16.self)
      for i in indices where bits[i] & 0x7C00 == 0x7C00 { return i }
    case .bfloat16:
      let bits = p.assumingMemoryBound(to: UInt16.self)
      for i in indices where bits[i] & 0x7F80 == 0x7F80 { return i }
    }
    return nil
  }
}
