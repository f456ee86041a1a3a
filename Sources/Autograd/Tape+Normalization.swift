import Foundation
import TensorCore

extension Tape {
  /// Layer normalisation over the last axis (biased variance), with optional affine weights.
  ///
  /// matches: `torch.nn.functional.layer_norm(x, [C], weight, bias, eps)`: the forward pass is the
  /// inference kernel (`Normalization.layerNorm`), the backward `Normalization.layerNormBackward`
  /// from the kept input (each row's statistics recomputed; nothing normalised is stored).
  public func layerNorm(_ x: Variable, weight: Variable?, bias: Variable?, eps: Float) throws -> Variable {
    let c = x.shape.last ?? 0
    guard c > 0 else { throw AutogradError.invalidArgument("layerNorm of an empty last axis") }
    try Self.checkAffine(weight, bias, channels: c, operation: "layerNorm")
    let xv = x.value
    let gamma = weight?.value
    let out = try Normalization.layerNorm(xv, weight: gamma, bias: bias?.value, eps: eps)
    return recordAffine(out, x, weight: weight, bias: bias) { gradient, needsInput, needsAffine in
      try Normalization.layerNormBackward(
        gradient, input: xv, weight: gamma, eps: eps, inputGradient: needsInput, affineGradients: needsAffine)
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
    return recordAffine(out, x, weight: weight, bias: bias) { gradient, _, needsAffine in
      let result = try Normalization.groupNormBackward(
        gradient, input: xv, statistics: statistics, weight: gamma, affineGradients: needsAffine)
      return (result.dx, result.dWeight, result.dBias)
    }
  }

  /// Records a normalisation of `x` with optional affine `weight` and `bias` (inputs in that
  /// order): `backward(dy, needsInput, needsAffine)` gives the input's, weight's and bias's
  /// gradients, each placed where its input is.
  func recordAffine(
    _ out: Tensor, _ x: Variable, weight: Variable?, bias: Variable?,
    backward: @escaping (Tensor, Bool, Bool) throws -> (dx: Tensor?, dWeight: Tensor?, dBias: Tensor?)
  ) -> Variable {
    let inputs = [x] + (weight.map { [$0] } ?? []) + (bias.map { [$0] } ?? [])
    let weightIndex = weight != nil ? 1 : nil
    let biasIndex = bias != nil ? (weight != nil ? 2 : 1) : nil
    return record(out, inputs: inputs) { gradient, needs in
      let needsWeight = weightIndex.map { needs[$0] } ?? false
      let needsBias = biasIndex.map { needs[$0] } ?? false
      let result = try backward(gradient, needs[0], needsWeight || needsBias)
      var grads: [Tensor?] = Array(repeating: nil, count: needs.count)
      if needs[0] { grads[0] = result.dx }
      if needsWeight, let i = weightIndex { grads[i] = result.dWeight }
      if needsBias, let i = biasIndex { grads[i] = result.dBias }
      return grads
    }
  }

  static func checkAffine(_ weight: Variable?, _ bias: Variable?, channels c: Int, operation: String) throws {
    if let weight, weight.shape != [c] { throw AutogradError.shapeMismatch(operation: "\(operation) weight", expected: [c], actual: weight.shape) }
    if let bias, bias.shape != [c] { throw AutogradError.shapeMismatch(operation: "\(operation) bias", expected: [c], actual: bias.shape) }
  }
}
