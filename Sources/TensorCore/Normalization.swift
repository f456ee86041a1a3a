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
    try groupNormWithStatistics(x, groups: groups, weight: weight, bias: bias, eps: eps, silu: silu).output
  }

  /// Per sample and group (index `sample · groups + group`) of a group norm: the mean and
  /// `1/√(variance + eps)`, as its forward pass computed them.
  public struct GroupNormStatistics: Sendable {
    public let groups: Int
    public let mean: [Double]
    public let rstd: [Float]
  }

  /// `groupNorm` and the statistics it normalised with (for a backward pass).
  public static func groupNormWithStatistics(
    _ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float, silu: Bool = false
  ) throws -> (output: Tensor, statistics: GroupNormStatistics) {
    guard x.rank >= 2 else { throw TensorError.invalidArgument("GroupNorm input rank must be ≥ 2") }
    let n = x.shape[0]
    let c = x.shape[x.rank - 1]
    guard groups > 0, c % groups == 0 else {
      throw TensorError.invalidArgument("GroupNorm: \(c) channels not divisible by \(groups) groups")
    }
    try checkAffine(weight, bias, channels: c, operation: "GroupNorm")
    let input = x.asFloat32()
    defer { withExtendedLifetime(input) {} }  // read through raw pointers below
    let gamma = weight?.asFloat32()
    let beta = bias?.asFloat32()
    let pixels = n == 0 || c == 0 ? 0 : x.count / (n * c)
    let perGroup = c / groups
    let out = Tensor(uninitializedShape: x.shape)
    let src = input.floatPointer
    let dst = out.mutableFloatPointer
    var means: [Double] = [], rstds: [Float] = []

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
        means.append(Double(m))
        rstds.append(rstd)
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
    return (out, GroupNormStatistics(groups: groups, mean: means, rstd: rstds))
  }

  /// The gradients of `groupNorm` (without SiLU) for the output gradient `dy`: the input's, and
  /// the weight's and bias's when `affineGradients`.
  ///
  /// matches: ATen's channels-last `GroupNormBackward` on CPU: per channel `Σ dy` and `Σ dy·x`, per
  /// group `db = Σ γ·Σdy`, `ds = Σ γ·Σdy·x`, then `dx = c1·dy + c2·x + c3` with `c1 = rstd·γ`,
  /// `c2 = (db·mean − ds)·rstd³/N`, `c3 = −c2·mean − db·rstd/N`; `dγ = (Σdy·x − mean·Σdy)·rstd`,
  /// `dβ = Σdy` (summed over the batch).
  public static func groupNormBackward(
    _ dy: Tensor, input x: Tensor, statistics: GroupNormStatistics, weight: Tensor?, affineGradients: Bool
  ) throws -> (dx: Tensor, dWeight: Tensor?, dBias: Tensor?) {
    guard dy.shape == x.shape, x.rank >= 2 else {
      throw TensorError.shapeMismatch(operation: "GroupNorm backward", expected: x.shape, actual: dy.shape)
    }
    let (n, c, groups) = (x.shape[0], x.shape[x.rank - 1], statistics.groups)
    guard groups > 0, c % groups == 0, statistics.mean.count == n * groups, statistics.rstd.count == n * groups else {
      throw TensorError.invalidArgument("GroupNorm backward: statistics of \(statistics.mean.count) groups for \(x.shape)")
    }
    try checkAffine(weight, nil, channels: c, operation: "GroupNorm backward")
    let (input, gradient) = (x.asFloat32(), dy.asFloat32())
    defer { withExtendedLifetime((input, gradient)) {} }  // read through raw pointers below
    let gamma = weight?.asFloat32()
    let pixels = n == 0 || c == 0 ? 0 : x.count / (n * c)
    let perGroup = c / groups
    let count = Double(pixels * perGroup)
    let dx = Tensor(uninitializedShape: x.shape)
    var dWeight = [Double](repeating: 0, count: c), dBias = [Double](repeating: 0, count: c)
    for b in 0..<n {
      let offset = b * pixels * c
      let (s1, s2) = channelProductSums(gradient.floatPointer + offset, input.floatPointer + offset, pixels: pixels, channels: c)
      var alpha = [Float](repeating: 0, count: c), beta = [Float](repeating: 0, count: c), kappa = [Float](repeating: 0, count: c)
      for g in 0..<groups {
        let mean = statistics.mean[b * groups + g]
        let rstd = Double(statistics.rstd[b * groups + g])
        var db = 0.0, ds = 0.0
        for ch in g * perGroup..<(g + 1) * perGroup {
          let gm = Double(gamma?.floatPointer[ch] ?? 1)
          db += s1[ch] * gm
          ds += s2[ch] * gm
          if affineGradients {
            dWeight[ch] += (s2[ch] - mean * s1[ch]) * rstd
            dBias[ch] += s1[ch]
          }
        }
        let c2 = (db * mean - ds) * rstd * rstd * rstd / count
        let c3 = -c2 * mean - db * rstd / count
        for ch in g * perGroup..<(g + 1) * perGroup {
          alpha[ch] = Float(rstd * Double(gamma?.floatPointer[ch] ?? 1))
          beta[ch] = Float(c2)
          kappa[ch] = Float(c3)
        }
      }
      let (a, bt, k) = (alpha, beta, kappa)
      let (gp, xp, out) = (gradient.floatPointer + offset, input.floatPointer + offset, dx.mutableFloatPointer + offset)
      Parallel.forRanges(pixels, costPerItem: c * 12) { range in
        ipa_affine2_channels(gp + range.lowerBound * c, xp + range.lowerBound * c, out + range.lowerBound * c, range.count, c, a, bt, k)
      }
    }
    guard affineGradients else { return (dx, nil, nil) }
    return (dx, try Tensor(shape: [c], floats: dWeight.map(Float.init)), try Tensor(shape: [c], floats: dBias.map(Float.init)))
  }

  static func checkAffine(_ weight: Tensor?, _ bias: Tensor?, channels c: Int, operation: String) throws {
    if let weight, weight.shape != [c] {
      throw TensorError.shapeMismatch(operation: "\(operation) weight", expected: [c], actual: weight.shape)
    }
    if let bias, bias.shape != [c] {
      throw TensorError.shapeMismatch(operation: "\(operation) bias", expected: [c], actual: bias.shape)
    }
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
    defer { withExtendedLifetime(input) {} }  // read through raw pointers below
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
        let (mean, variance) = rowMeanAndVariance(row, c)
        let rstd = 1 / (Float(variance) + eps).squareRoot()
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

  /// A row's mean and biased variance, two passes in double.
  @inline(__always)
  static func rowMeanAndVariance(_ row: UnsafePointer<Float>, _ c: Int) -> (mean: Double, variance: Double) {
    var s = 0.0
    for i in 0..<c { s += Double(row[i]) }
    let mean = s / Double(c)
    var v = 0.0
    for i in 0..<c {
      let d = Double(row[i]) - mean
      v += d * d
    }
    return (mean, v / Double(c))
  }

  /// Per-channel Σx (or Σ(x−centre)²) over `pixels` rows of `channels`, split across threads.
  private static func channelSums(
    _ base: UnsafePointer<Float>, pixels: Int, channels c: Int, centre: [Float]?
  ) -> [Double] {
    let threads = max(1, min(Runtime.threadCount, pixels / 64))
    return (centre ?? []).withUnsafeBufferPointer { centreBuffer in
      let centrePointer = centre == nil ? nil : centreBuffer.baseAddress
      return sumAcrossThreads(threads, count: c) { t, out in
        let acc = UnsafeMutablePointer<Float>.allocate(capacity: c)
        defer { acc.deallocate() }
        var p = pixels * t / threads
        let hi = pixels * (t + 1) / threads
        while p < hi {
          // Accumulate blocks of 256 pixels in Float, then flush to Double.
          let end = min(hi, p + 256)
          acc.update(repeating: 0, count: c)
          ipa_accumulate_rows(base + p * c, end - p, c, centrePointer, acc)
          p = end
          for ch in 0..<c { out[ch] += Double(acc[ch]) }
        }
      }
    }
  }

  /// Per-channel `Σ a` and `Σ a·b` over `pixels` rows of `channels`, split across threads.
  private static func channelProductSums(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, pixels: Int, channels c: Int
  ) -> (sumA: [Double], sumAB: [Double]) {
    let threads = max(1, min(Runtime.threadCount, pixels / 64))
    let total = sumAcrossThreads(threads, count: 2 * c) { t, out in
      let acc = UnsafeMutablePointer<Float>.allocate(capacity: 2 * c)
      defer { acc.deallocate() }
      var p = pixels * t / threads
      let hi = pixels * (t + 1) / threads
      while p < hi {
        // Blocks of 256 pixels in Float, flushed to Double.
        let end = min(hi, p + 256)
        acc.update(repeating: 0, count: 2 * c)
        ipa_accumulate_products(a + p * c, b + p * c, end - p, c, acc, acc + c)
        p = end
        for i in 0..<2 * c { out[i] += Double(acc[i]) }
      }
    }
    return (Array(total[0..<c]), Array(total[c...]))
  }

  /// Runs `body(slice, sums)` for each of `threads` slices on the pool, each with its own zeroed
  /// `count` accumulators, and returns their element-wise total, added in slice order (so the
  /// result does not depend on which thread ran which slice).
  static func sumAcrossThreads(
    _ threads: Int, count: Int, _ body: (_ slice: Int, _ sums: UnsafeMutablePointer<Double>) -> Void
  ) -> [Double] {
    let partial = UnsafeMutablePointer<Double>.allocate(capacity: max(1, threads * count))
    defer { partial.deallocate() }
    partial.initialize(repeating: 0, count: max(1, threads * count))
    Parallel.forRanges(threads, costPerItem: 1 << 30) { range in
      for t in range { body(t, partial + t * count) }
    }
    var total = [Double](repeating: 0, count: count)
    for t in 0..<threads {
      for i in 0..<count { total[i] += partial[t * count + i] }
    }
    return total
  }

  /// The gradients of `layerNorm` for the output gradient `dy`: the input's (when
  /// `inputGradient`), and the weight's and bias's when `affineGradients`.
  ///
  /// matches: `torch.nn.functional.layer_norm`'s backward (biased variance), per row with its mean
  /// and `r = 1/√(σ² + ε)` recomputed from the input in double: `dx = r · (dx̂ − mean(dx̂) −
  /// x̂ · mean(dx̂ · x̂))` with `dx̂ = dy · γ`; `dγ = Σ dy·x̂`, `dβ = Σ dy` over every row.
  public static func layerNormBackward(
    _ dy: Tensor, input x: Tensor, weight: Tensor?, eps: Float, inputGradient: Bool = true, affineGradients: Bool
  ) throws -> (dx: Tensor?, dWeight: Tensor?, dBias: Tensor?) {
    guard dy.shape == x.shape, x.rank >= 1 else {
      throw TensorError.shapeMismatch(operation: "LayerNorm backward", expected: x.shape, actual: dy.shape)
    }
    let c = x.shape[x.rank - 1]
    try checkAffine(weight, nil, channels: c, operation: "LayerNorm backward")
    let (input, gradient) = (x.asFloat32(), dy.asFloat32())
    defer { withExtendedLifetime((input, gradient)) {} }  // read through raw pointers below
    let gamma = weight?.asFloat32()
    let rows = c == 0 ? 0 : x.count / c
    let threads = max(1, min(Runtime.threadCount, rows / 16))
    let dx = inputGradient ? Tensor(uninitializedShape: x.shape) : nil
    let (src, grad, g) = (input.floatPointer, gradient.floatPointer, gamma?.floatPointer)
    let dxp = dx?.mutableFloatPointer
    let sums = sumAcrossThreads(threads, count: affineGradients ? 2 * c : 0) { t, partial in
      let acc = affineGradients ? partial : nil
      for r in rows * t / threads..<rows * (t + 1) / threads {
        let row = src + r * c, dyr = grad + r * c
        let (mean, variance) = rowMeanAndVariance(row, c)
        let rstd = 1 / (variance + Double(eps)).squareRoot()
        var sumD = 0.0, sumDX = 0.0
        for i in 0..<c {
          let xhat = (Double(row[i]) - mean) * rstd
          let d = Double(dyr[i]) * Double(g?[i] ?? 1)
          sumD += d
          sumDX += d * xhat
          if let acc {
            acc[i] += Double(dyr[i]) * xhat
            acc[c + i] += Double(dyr[i])
          }
        }
        if let dxp {
          let (meanD, meanDX) = (sumD / Double(c), sumDX / Double(c))
          let o = dxp + r * c
          for i in 0..<c {
            let xhat = (Double(row[i]) - mean) * rstd
            let d = Double(dyr[i]) * Double(g?[i] ?? 1)
            o[i] = Float(rstd * (d - meanD - xhat * meanDX))
          }
        }
      }
    }
    guard affineGradients else { return (dx, nil, nil) }
    return (
      dx, try Tensor(shape: [c], floats: sums[0..<c].map(Float.init)), try Tensor(shape: [c], floats: sums[c...].map(Float.init))
    )
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
