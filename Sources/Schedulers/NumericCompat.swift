import Foundation

/// The few NumPy and torch routines the diffusers schedulers build their schedules with, written
/// to produce the same values (same formulas, same rounding steps, same precision).
///
/// matches: numpy 2.4 `linspace`, `arange` with a float step, `round` (half to even), `interp`;
/// torch 2.13 CPU `linspace` (float32, fused multiply-add as compiled) and `cumprod` (float32
/// accumulated in double). Transcendental functions use the platform libm, which can differ from
/// numpy's / torch's vectorised versions in the last bit.
enum NumericCompat {
  /// `np.linspace(start, stop, num)` in float64: `i * ((stop - start) / (num - 1)) + start`, with
  /// the last value set to `stop` exactly.
  static func linspace(_ start: Double, _ stop: Double, _ num: Int) -> [Double] {
    precondition(num >= 0)
    if num == 0 { return [] }
    if num == 1 { return [start] }
    let div = Double(num - 1)
    let delta = stop - start
    let step = delta / div
    var y = (0..<num).map { i -> Double in
      if step == 0 { return Double(i) / div * delta + start }
      return Double(i) * step + start
    }
    y[num - 1] = stop
    return y
  }

  /// `np.arange(start, stop, step)` with a float step: length `ceil((stop - start) / step)`, first
  /// value `start`, second `start + step`, then `start + i * ((start + step) - start)`.
  static func arange(_ start: Double, _ stop: Double, _ step: Double) -> [Double] {
    let span = (stop - start) / step
    let length: Int
    if span == 0 && stop != start {
      length = span.sign == .minus ? 0 : 1
    } else {
      length = max(0, Int(span.rounded(.up)))
    }
    if length == 0 { return [] }
    var values = [start]
    if length == 1 { return values }
    let next = start + step
    values.append(next)
    let delta = next - start
    for i in 2..<length { values.append(start + Double(i) * delta) }
    return values
  }

  /// `np.round` / `np.rint`: round half to even.
  @inline(__always)
  static func round(_ x: Double) -> Double { x.rounded(.toNearestOrEven) }

  /// `np.interp(x, np.arange(0, fp.count), fp)`: linear interpolation on the integer grid, clamped
  /// to the end values outside it.
  static func interpOnIndexGrid(_ x: Double, _ fp: [Double]) -> Double {
    let n = fp.count
    if x.isNaN { return x }
    if x < 0 { return fp[0] }
    if x > Double(n - 1) { return fp[n - 1] }
    let j = Int(x.rounded(.down))
    if j == n - 1 { return fp[j] }
    let xj = Double(j)
    if xj == x { return fp[j] }
    let slope = (fp[j + 1] - fp[j]) / (Double(j + 1) - xj)
    return slope * (x - xj) + fp[j]
  }

  /// `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU: the first half counts up
  /// from `start`, the second half down from `end`, each value one fused multiply-add.
  static func torchLinspace(_ start: Float, _ end: Float, _ steps: Int) -> [Float] {
    precondition(steps >= 1)
    if steps == 1 { return [start] }
    let step = (end - start) / Float(steps - 1)
    let halfway = steps / 2
    return (0..<steps).map { i in
      i < halfway
        ? start.addingProduct(step, Float(i))
        : end.addingProduct(-step, Float(steps - i - 1))
    }
  }

  /// `torch.cumprod(x, 0)` for float32 on the CPU: the running product is kept in double and
  /// rounded to float32 at every output.
  static func torchCumprod(_ x: [Float]) -> [Float] {
    var acc = 1.0
    return x.map { v in
      acc *= Double(v)
      return Float(acc)
    }
  }

  /// Python-style index: negative values count from the end (as `tensor[-1]` does).
  @inline(__always)
  static func pythonIndex(_ i: Int, count: Int) -> Int { i < 0 ? i + count : i }

  /// diffusers' `_convert_to_karras`: `(max^(1/7) + ramp * (min^(1/7) - max^(1/7)))^7` over
  /// `np.linspace(0, 1, count)`, in float64.
  static func karrasSigmas(sigmaMin: Double, sigmaMax: Double, count: Int) -> [Double] {
    let rho = 7.0
    let ramp = linspace(0, 1, count)
    let minInvRho = Foundation.pow(sigmaMin, 1 / rho)
    let maxInvRho = Foundation.pow(sigmaMax, 1 / rho)
    return ramp.map { r in Foundation.pow(maxInvRho + r * (minInvRho - maxInvRho), rho) }
  }

  /// diffusers' `_sigma_to_t`: the fractional training timestep whose log-sigma interpolates to
  /// `log(sigma)`. `logSigmas` are float32 (`np.log` of the float32 sigma table, ascending).
  static func sigmaToT(_ sigma: Double, logSigmas: [Float]) -> Double {
    let logSigma = Foundation.log(Swift.max(sigma, 1e-10))
    // Last index whose log-sigma is <= log(sigma) (0 if none), kept below the last pair.
    var low = 0
    for (i, l) in logSigmas.enumerated() where logSigma - Double(l) >= 0 { low = i }
    low = Swift.min(low, logSigmas.count - 2)
    let high = low + 1
    let lowValue = logSigmas[low]
    let highValue = logSigmas[high]
    var w = (Double(lowValue) - logSigma) / Double(lowValue - highValue)
    w = Swift.min(Swift.max(w, 0), 1)
    return (1 - w) * Double(low) + w * Double(high)
  }
}
