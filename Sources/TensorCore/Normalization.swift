import CKernels

/// Group and layer normalisation over NHWC / token-major activations, vectorised Swift.
///
/// oneDNN 2.6 has no group normalisation, so both are hand-written. Statistics are computed in
/// two passes (mean, then centred variance) with Double accumulation per thread, and the output
/// follows PyTorch's CPU kernels' operator order:
/// - GroupNorm: `scale = rstd·γ`, `shift = β − mean·scale`, `y = x·scale + shift`
///   (`ComputeFusedParams` in ATen's group_norm_kernel.cpp);
/// - LayerNorm: `y = (x·rstd + (−mean·rstd))·γ + β` (ATen's layer_norm_kernel.cpp).
public enum Normalization {
  /// GroupNorm over `x` `[N, …spatial…, C]` (channels last), optionally followed by SiLU.
  ///
  /// matches: `torch.nn.GroupNorm(groups, C, eps)` applied to the NCHW equivalent
  /// (+ `torch.nn.functional.silu` when `silu` is true).
  public static func groupNorm(
    _ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float, silu: Bool = false
  ) throws -> Tensor {
    guard x.rank >= 2 else { throw TensorError.invalidArgument("GroupNorm input rank must be ≥ 2") }
    let n = x.shape[0]
    let c = x.shape[x.rank - 1]
    guard groups > 0, c % groups == 0 else {
      throw TensorError.invalidArgument("GroupNorm: \(c) channels not divisible by \(groups) groups")
    }
    if let weight, weight.shape != [c] {
      throw TensorError.shapeMismatch(operation: "GroupNorm weight", expected: [c], actual: weight.shape)
    }
    if let bias, bias.shape != [c] {
      throw TensorError.shapeMismatch(operation: "GroupNorm bias", expected: [c], actual: bias.shape)
    }
    let input = x.asFloat32()
    let gamma = weight?.asFloat32()
    let beta = bias?.asFloat32()
    let pixels = x.count / (n * c)
    let perGroup = c / groups
    let out = Tensor(uninitializedShape: x.shape)
    let src = input.floatPointer
    let dst = out.mutableFloatPointer

    for b in 0..<n {
      let base = src + b * pixels * c
      // Pass 1: per-channel sums → per-group means.
      let sums = channelSums(base, pixels: pixels, channels: c, centre: nil)
      var mean = [Double](repeating: 0, count: groups)
      for g in 0..<groups {
        var s = 0.0
        for j in 0..<perGroup { s += sums[g * perGroup + j] }
        mean[g] = s / Double(pixels * perGroup)
      }
      // Pass 2: centred squares → variance.
      var centre = [Float](repeating: 0, count: c)
      for ch in 0..<c { centre[ch] = Float(mean[ch / perGroup]) }
      let squares = channelSums(base, pixels: pixels, channels: c, centre: centre)
      var scale = [Float](repeating: 0, count: c)
      var shift = [Float](repeating: 0, count: c)
      for g in 0..<groups {
        var s = 0.0
        for j in 0..<perGroup { s += squares[g * perGroup + j] }
        let variance = Float(s / Double(pixels * perGroup))
        let rstd = 1 / (variance + eps).squareRoot()
        let m = Float(mean[g])
        for j in 0..<perGroup {
          let ch = g * perGroup + j
          let gm = gamma.map { $0.floatPointer[ch] } ?? 1
          let bt = beta.map { $0.floatPointer[ch] } ?? 0
          scale[ch] = rstd * gm
          shift[ch] = -scale[ch] * m + bt
        }
      }
      applyAffine(
        base, dst + b * pixels * c, pixels: pixels, channels: c, scale: scale, shift: shift, silu: silu)
    }
    return out
  }

  /// LayerNorm over the last dimension.
  ///
  /// matches: `torch.nn.LayerNorm(C, eps, elementwise_affine=weight != nil)`.
  public static func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) throws -> Tensor {
    guard x.rank >= 1 else { throw TensorError.invalidArgument("LayerNorm of a scalar") }
    let c = x.shape[x.rank - 1]
    if let weight, weight.shape != [c] {
      throw TensorError.shapeMismatch(operation: "LayerNorm weight", expected: [c], actual: weight.shape)
    }
    if let bias, bias.shape != [c] {
      throw TensorError.shapeMismatch(operation: "LayerNorm bias", expected: [c], actual: bias.shape)
    }
    let input = x.asFloat32()
    let gamma = weight?.asFloat32()
    let beta = bias?.asFloat32()
    let rows = c == 0 ? 0 : x.count / c
    let out = Tensor(uninitializedShape: x.shape)
    let src = input.floatPointer
    let dst = out.mutableFloatPointer
    let g = gamma?.floatPointer
    let bt = beta?.floatPointer
    Parallel.forRanges(rows, costPerItem: c * 4) { range in
      for r in range {
        let row = src + r * c
        var s = 0.0
        for i in 0..<c { s += Double(row[i]) }
        let mean = s / Double(c)
        var v = 0.0
        for i in 0..<c {
          let d = Double(row[i]) - mean
          v += d * d
        }
        let rstd = 1 / (Float(v / Double(c)) + eps).squareRoot()
        let shift = -Float(mean) * rstd
        let o = dst + r * c
        for i in 0..<c {
          var y = row[i] * rstd + shift
          if let g { y = y * g[i] }
          if let bt { y = y + bt[i] }
          o[i] = y
        }
      }
    }
    return out
  }

  /// Per-channel Σx (or Σ(x−centre)²) over `pixels` rows of `channels`, split across threads.
  private static func channelSums(
    _ base: UnsafePointer<Float>, pixels: Int, channels c: Int, centre: [Float]?
  ) -> [Double] {
    let threads = max(1, min(Runtime.threadCount, pixels / 64))
    var partial = [Double](repeating: 0, count: threads * c)
    partial.withUnsafeMutableBufferPointer { part in
      let partPointer = part.baseAddress!
      (centre ?? []).withUnsafeBufferPointer { centreBuffer in
        let centrePointer = centre == nil ? nil : centreBuffer.baseAddress
        Parallel.forRanges(threads, costPerItem: 1 << 30) { range in
          let acc = UnsafeMutablePointer<Float>.allocate(capacity: c)
          defer { acc.deallocate() }
          for t in range {
            let lo = pixels * t / threads
            let hi = pixels * (t + 1) / threads
            var p = lo
            while p < hi {
              // Accumulate blocks of 256 pixels in Float, then flush to Double.
              let end = min(hi, p + 256)
              acc.update(repeating: 0, count: c)
              ipa_accumulate_rows(base + p * c, end - p, c, centrePointer, acc)
              p = end
              let out = partPointer + t * c
              for ch in 0..<c { out[ch] += Double(acc[ch]) }
            }
          }
        }
      }
    }
    var total = [Double](repeating: 0, count: c)
    for t in 0..<threads {
      for ch in 0..<c { total[ch] += partial[t * c + ch] }
    }
    return total
  }

  /// `y = x·scale[c] + shift[c]` (then SiLU) for every pixel, split across threads.
  private static func applyAffine(
    _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, pixels: Int, channels c: Int,
    scale: [Float], shift: [Float], silu: Bool
  ) {
    scale.withUnsafeBufferPointer { sc in
      shift.withUnsafeBufferPointer { sh in
        let scp = sc.baseAddress!
        let shp = sh.baseAddress!
        Parallel.forRanges(pixels, costPerItem: c * 8) { range in
          ipa_affine_channels(
            src + range.lowerBound * c, dst + range.lowerBound * c, range.count, c, scp, shp, silu ? 1 : 0)
        }
      }
    }
  }
}
