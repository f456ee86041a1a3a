import Foundation
import TensorCore

/// AdamW over trainable leaves, with fp32 state per parameter.
///
/// matches: `torch.optim.AdamW` (2.13, the single-tensor CPU path): per step `t`,
/// `p ← p · (1 − lr·λ)`, `m ← m + (1 − β₁)(g − m)`, `v ← β₂ v + (1 − β₂) g²`,
/// `p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)` — the bias corrections in double, as
/// Python computes them, the tensor arithmetic in float32. Defaults as IP-Adapter's
/// `tutorial_train.py` (lr 1e-4, weight decay 1e-2) and torch (β 0.9/0.999, ε 1e-8).
/// Parameters without a gradient are skipped (their step count does not advance), as torch does.
public final class AdamW {
  public let parameters: [Variable]
  public var learningRate: Double
  public var betas: (Double, Double)
  public var eps: Double
  public var weightDecay: Double
  /// Per parameter: steps taken, first and second moments (what a checkpoint saves to resume).
  public private(set) var steps: [Int]
  public private(set) var firstMoments: [Tensor?]
  public private(set) var secondMoments: [Tensor?]

  public init(
    parameters: [Variable], learningRate: Double = 1e-4, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
    weightDecay: Double = 1e-2
  ) throws {
    guard parameters.allSatisfy({ $0.isLeaf && $0.requiresGrad }) else {
      throw AutogradError.invalidArgument("AdamW: every parameter must be a trainable leaf")
    }
    guard learningRate >= 0, eps >= 0, weightDecay >= 0, (0..<1).contains(betas.0), (0..<1).contains(betas.1) else {
      throw AutogradError.invalidArgument(
        "AdamW: learning rate \(learningRate), betas \(betas), eps \(eps), weight decay \(weightDecay) out of range")
    }
    self.parameters = parameters
    (self.learningRate, self.betas, self.eps, self.weightDecay) = (learningRate, betas, eps, weightDecay)
    steps = Array(repeating: 0, count: parameters.count)
    firstMoments = Array(repeating: nil, count: parameters.count)
    secondMoments = Array(repeating: nil, count: parameters.count)
  }

  /// One update of every parameter that has a gradient.
  public func step() throws {
    for (i, p) in parameters.enumerated() {
      guard let grad = p.grad else { continue }
      steps[i] += 1
      let t = Double(steps[i])
      let n = p.value.count
      let previousM = firstMoments[i] ?? Tensor.zeros(p.shape)
      let previousV = secondMoments[i] ?? Tensor.zeros(p.shape)
      // New tensors every step: moments handed out earlier (a checkpoint being written) stay as they were.
      let m = Tensor(uninitializedShape: p.shape), v = Tensor(uninitializedShape: p.shape)
      let updated = Tensor(uninitializedShape: p.shape)
      let decay = Float(1 - learningRate * weightDecay)
      let (b1, b2) = (Float(1 - betas.0), Float(betas.1))
      let oneMinusB2 = Float(1 - betas.1)
      let stepSize = Float(learningRate / (1 - pow(betas.0, t)))
      let correction2 = Float((1 - pow(betas.1, t)).squareRoot())
      let epsilon = Float(eps)
      let pp = p.value.floatPointer, gp = grad.floatPointer
      let pm = previousM.floatPointer, pv = previousV.floatPointer
      let mp = m.mutableFloatPointer, vp = v.mutableFloatPointer, up = updated.mutableFloatPointer
      for j in 0..<n {
        let g = gp[j]
        let decayed = pp[j] * decay
        mp[j] = pm[j] + b1 * (g - pm[j])
        vp[j] = pv[j] * b2 + oneMinusB2 * (g * g)
        let denom = vp[j].squareRoot() / correction2 + epsilon
        up[j] = decayed + -stepSize * (mp[j] / denom)
      }
      firstMoments[i] = m
      secondMoments[i] = v
      try p.assign(updated)
    }
  }

  /// Restores the per-parameter state a checkpoint saved (`steps`, `firstMoments`,
  /// `secondMoments`, one entry per parameter, moments nil only where the step count is 0).
  public func restore(steps: [Int], firstMoments: [Tensor?], secondMoments: [Tensor?]) throws {
    guard steps.count == parameters.count, firstMoments.count == parameters.count, secondMoments.count == parameters.count else {
      throw AutogradError.invalidArgument("AdamW.restore: state for \(steps.count) parameters, the optimiser has \(parameters.count)")
    }
    for (i, p) in parameters.enumerated() {
      guard steps[i] >= 0, (steps[i] == 0) == (firstMoments[i] == nil), (steps[i] == 0) == (secondMoments[i] == nil) else {
        throw AutogradError.invalidArgument("AdamW.restore: parameter \(i) has step \(steps[i]) and inconsistent moments")
      }
      for m in [firstMoments[i], secondMoments[i]] where m != nil && m!.shape != p.shape {
        throw AutogradError.shapeMismatch(operation: "AdamW.restore moment \(i)", expected: p.shape, actual: m!.shape)
      }
    }
    self.steps = steps
    self.firstMoments = firstMoments.map { $0?.asFloat32() }
    self.secondMoments = secondMoments.map { $0?.asFloat32() }
  }

  /// Forgets every parameter's gradient.
  public func zeroGrad() {
    for p in parameters { p.zeroGrad() }
  }
}
