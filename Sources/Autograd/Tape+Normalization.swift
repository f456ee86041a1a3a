import Foundation
import TensorCore

extension Tape {
  /// Layer normalisation over the last axis (biased variance), with optional affine weights.
  ///
  /// matches: `torch.nn.functional.layer_norm(x, [C], weight, bias, eps)` (the forward pass is the
  /// inference kernel, `Normalization.layerNorm`). Backward per row, with the row's mean and
  /// `r = 1/√(σ² + ε)` recomputed from the kept input (nothing normalised is stored):
  /// `dx = r · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂))` with `dx̂ = dy · γ`; `dγ = Σ dy·x̂`, `dβ = Σ dy`.
  public func layerNorm(_ x: Variable, weight: Variable?, bias: Variable?, eps: Float) throws -> Variable {
    let c = x.shape.last ?? 0
    guard c > 0 else { throw AutogradError.invalidArgument("layerNorm of an empty last axis") }
    try Self.checkAffine(weight, bias, channels: c, operation: "layerNorm")
    let xv = x.value
    let gamma = weight?.value
    let out = try Normalization.layerNorm(xv, weight: gamma, bias: bias?.value, eps: eps)
    let inputs = [x] + (weight.map { [$0] } ?? []) + (bias.map { [$0] } ?? [])
    let hasWeight = weight != nil
    return record(out, inputs: inputs) { gradient, needs in
      let weightIndex = hasWeight ? 1 : -1
      let biasIndex = hasWeight ? 2 : 1
      let needsWeight = weightIndex > 0 && needs[weightIndex]
      let needsBias = biasIndex < needs.count && needs[biasIndex]
      let rows = xv.count / c
      let threads = max(1, min(Runtime.threadCount, rows / 16))
      let dx = needs[0] ? Tensor(uninitializedShape: xv.shape) : nil
      // Per-thread partial sums of dγ and dβ.
      var partial = [Double](repeating: 0, count: needsWeight || needsBias ? threads * 2 * c : 0)
      let (src, dy, g) = (xv.floatPointer, gradient.floatPointer, gamma?.floatPointer)
      let dxp = dx?.mutableFloatPointer
      let affine = needsWeight || needsBias
      partial.withUnsafeMutableBufferPointer { part in
        // (An empty array's base address is the shared empty storage: never written.)
        let partPointer = affine ? part.baseAddress : nil
        Parallel.forRanges(threads, costPerItem: 1 << 30) { range in
          for t in range {
            let sums = partPointer.map { $0 + t * 2 * c }
            for r in rows * t / threads..<rows * (t + 1) / threads {
              let row = src + r * c, dyr = dy + r * c
              var s = 0.0
              for i in 0..<c { s += Double(row[i]) }
              let mean = s / Double(c)
              var v = 0.0
              for i in 0..<c {
                let d = Double(row[i]) - mean
                v += d * d
              }
              let rstd = 1 / (v / Double(c) + Double(eps)).squareRoot()
              var sumD = 0.0, sumDX = 0.0
              for i in 0..<c {
                let xhat = (Double(row[i]) - mean) * rstd
                let d = Double(dyr[i]) * Double(g?[i] ?? 1)
                sumD += d
                sumDX += d * xhat
                if let sums {
                  sums[i] += Double(dyr[i]) * xhat
                  sums[c + i] += Double(dyr[i])
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
        }
      }
      var grads: [Tensor?] = Array(repeating: nil, count: needs.count)
      grads[0] = dx
      if needsWeight || needsBias {
        var dWeight = [Float](repeating: 0, count: c), dBias = [Float](repeating: 0, count: c)
        for i in 0..<c {
          var w = 0.0, b = 0.0
          for t in 0..<threads {
            w += partial[t * 2 * c + i]
            b += partial[t * 2 * c + c + i]
          }
          (dWeight[i], dBias[i]) = (Float(w), Float(b))
        }
        if needsWeight { grads[weightIndex] = try Tensor(shape: [c], floats: dWeight) }
        if needsBias { grads[biasIndex] = try Tensor(shape: [c], floats: dBias) }
      }
      return grads
    }
  }

  /// Group normalisation of channels-last activations `[B, …, C]` (`C` channels in `groups`
  /// contiguous groups, statistics over each group's channels at every position of a sample).
  ///
  /// matches: `torch.nn.functional.group_norm` on the NCHW transpose of `x` (the engine keeps
  /// activations NHWC); the forward pass is the inference kernel and the backward ATen's
  /// channels-last kernel (`Normalization.groupNormBackward`), from the kept input and the
  /// per-group statistics (nothing normalised is stored).
  public func groupNorm(_ x: Variable, groups: Int, weight: Variable?, bias: Variable?, eps: Float) throws -> Variable {
    guard x.shape.count >= 2, let c = x.shape.last, groups > 0, c % groups == 0 else {
      throw AutogradError.invalidArgument("groupNorm: \(x.shape) does not split into \(groups) channel groups")
    }
    try Self.checkAffine(weight, bias, channels: c, operation: "groupNorm")
    let xv = x.value
    let gamma = weight?.value
    let (out, statistics) = try Normalization.groupNormWithStatistics(xv, groups: groups, weight: gamma, bias: bias?.value, eps: eps)
    let inputs = [x] + (weight.map { [$0] } ?? []) + (bias.map { [$0] } ?? [])
    let hasWeight = weight != nil
    return record(out, inputs: inputs) { gradient, needs in
      let weightIndex = hasWeight ? 1 : -1
      let biasIndex = hasWeight ? 2 : 1
      let needsWeight = weightIndex > 0 && needs[weightIndex]
      let needsBias = biasIndex < needs.count && needs[biasIndex]
      let result = try Normalization.groupNormBackward(
        gradient, input: xv, statistics: statistics, weight: gamma, affineGradients: needsWeight || needsBias)
      var grads: [Tensor?] = Array(repeating: nil, count: needs.count)
      if needs[0] { grads[0] = result.dx }
      if needsWeight { grads[weightIndex] = result.dWeight }
      if needsBias { grads[biasIndex] = result.dBias }
      return grads
    }
  }

  static func checkAffine(_ weight: Variable?, _ bias: Variable?, channels c: Int, operation: String) throws {
    if let weight, weight.shape != [c] { throw AutogradError.shapeMismatch(operation: "\(operation) weight", expected: [c], actual: weight.shape) }
    if let bias, bias.shape != [c] { throw AutogradError.shapeMismatch(operation: "\(operation) bias", expected: [c], actual: bias.shape) }
  }
}
