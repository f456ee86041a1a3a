import Foundation
import TensorCore

extension Tape {
  /// Layer normalisation over the last axis (biased variance), with optional affine weights.
  ///
  /// matches: `torch.nn.functional.layer_norm(x, [C], weight, bias, eps)`. Backward with the
  /// normalised values `x̂` and `r = 1/√(σ² + ε)` kept from the forward pass:
  /// `dx = r · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂))` with `dx̂ = dy · γ`.
  public func layerNorm(_ x: Variable, weight: Variable?, bias: Variable?, eps: Float) throws -> Variable {
    let c = x.shape.last ?? 0
    guard c > 0 else { throw AutogradError.invalidArgument("layerNorm of an empty last axis") }
    try Self.checkAffine(weight, bias, channels: c, operation: "layerNorm")
    let rows = x.value.count / c
    // One group per row, every channel in it.
    return try normalise(x, weight: weight, bias: bias, eps: eps, groups: rows, groupOf: { $0 / c }, channels: c)
  }

  /// Group normalisation of channels-last activations `[B, …, C]` (`C` channels in `groups`
  /// contiguous groups, statistics over each group's channels at every position of a sample).
  ///
  /// matches: `torch.nn.functional.group_norm` on the NCHW transpose of `x` (the engine keeps
  /// activations NHWC). Backward as `layerNorm`, per (sample, group).
  public func groupNorm(_ x: Variable, groups: Int, weight: Variable?, bias: Variable?, eps: Float) throws -> Variable {
    guard x.shape.count >= 2, let c = x.shape.last, groups > 0, c % groups == 0 else {
      throw AutogradError.invalidArgument("groupNorm: \(x.shape) does not split into \(groups) channel groups")
    }
    try Self.checkAffine(weight, bias, channels: c, operation: "groupNorm")
    let batch = x.shape[0]
    let perSample = x.value.count / max(batch, 1)
    let perGroup = c / groups
    // Element i belongs to sample i / perSample and group (i % c) / perGroup.
    return try normalise(
      x, weight: weight, bias: bias, eps: eps, groups: batch * groups,
      groupOf: { i in (i / perSample) * groups + (i % c) / perGroup }, channels: c)
  }

  static func checkAffine(_ weight: Variable?, _ bias: Variable?, channels c: Int, operation: String) throws {
    if let weight, weight.shape != [c] { throw AutogradError.shapeMismatch(operation: "\(operation) weight", expected: [c], actual: weight.shape) }
    if let bias, bias.shape != [c] { throw AutogradError.shapeMismatch(operation: "\(operation) bias", expected: [c], actual: bias.shape) }
  }

  /// The shared normalisation: element `i` (channel `i % channels`) belongs to group `groupOf(i)`.
  private func normalise(
    _ x: Variable, weight: Variable?, bias: Variable?, eps: Float, groups: Int, groupOf: @escaping (Int) -> Int,
    channels c: Int
  ) throws -> Variable {
    let n = x.value.count
    let src = x.value.floatPointer
    var sum = [Double](repeating: 0, count: groups)
    var sumSquares = [Double](repeating: 0, count: groups)
    var members = [Int](repeating: 0, count: groups)
    for i in 0..<n {
      let g = groupOf(i)
      sum[g] += Double(src[i])
      members[g] += 1
    }
    let mean = (0..<groups).map { members[$0] > 0 ? sum[$0] / Double(members[$0]) : 0 }
    for i in 0..<n {
      let d = Double(src[i]) - mean[groupOf(i)]
      sumSquares[groupOf(i)] += d * d
    }
    let rstd = (0..<groups).map { 1 / (sumSquares[$0] / Double(max(members[$0], 1)) + Double(eps)).squareRoot() }
    let normalised = Tensor(uninitializedShape: x.shape)
    let out = Tensor(uninitializedShape: x.shape)
    let xh = normalised.mutableFloatPointer, o = out.mutableFloatPointer
    let gamma = weight?.value.floatPointer, beta = bias?.value.floatPointer
    for i in 0..<n {
      let g = groupOf(i)
      let v = Float((Double(src[i]) - mean[g]) * rstd[g])
      xh[i] = v
      let ch = i % c
      o[i] = v * (gamma?[ch] ?? 1) + (beta?[ch] ?? 0)
    }
    let gammaValue = weight?.value
    let inputs = [x] + (weight.map { [$0] } ?? []) + (bias.map { [$0] } ?? [])
    let hasWeight = weight != nil
    return record(out, inputs: inputs) { gradient, needs in
      let dy = gradient.floatPointer
      let xhat = normalised.floatPointer
      var grads: [Tensor?] = Array(repeating: nil, count: needs.count)
      let weightIndex = hasWeight ? 1 : -1
      let biasIndex = hasWeight ? 2 : 1
      if weightIndex > 0, needs[weightIndex] {
        var acc = [Double](repeating: 0, count: c)
        for i in 0..<n { acc[i % c] += Double(dy[i]) * Double(xhat[i]) }
        grads[weightIndex] = try Tensor(shape: [c], floats: acc.map { Float($0) })
      }
      if biasIndex < needs.count, needs[biasIndex] {
        grads[biasIndex] = Reduce.sumRows(gradient, columns: c)
      }
      if needs[0] {
        let g = gammaValue?.floatPointer
        var meanD = [Double](repeating: 0, count: groups)
        var meanDX = [Double](repeating: 0, count: groups)
        for i in 0..<n {
          let d = Double(dy[i]) * Double(g?[i % c] ?? 1)
          let k = groupOf(i)
          meanD[k] += d
          meanDX[k] += d * Double(xhat[i])
        }
        let dx = Tensor(uninitializedShape: x.value.shape)
        let dxp = dx.mutableFloatPointer
        for i in 0..<n {
          let k = groupOf(i)
          let m = Double(max(members[k], 1))
          let d = Double(dy[i]) * Double(g?[i % c] ?? 1)
          dxp[i] = Float(rstd[k] * (d - meanD[k] / m - Double(xhat[i]) * meanDX[k] / m))
        }
        grads[0] = dx
      }
      return grads
    }
  }
}
