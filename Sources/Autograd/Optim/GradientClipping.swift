import Foundation
import TensorCore

/// Gradient-norm clipping over a set of parameters.
///
/// matches: `torch.nn.utils.clip_grad_norm_(parameters, max_norm)` (norm type 2): the total norm
/// is the 2-norm of the per-tensor 2-norms; every gradient is multiplied by
/// `min(1, max_norm / (total + 1e-6))`. Parameters without a gradient are skipped.
public enum GradientClipping {
  /// Clips in place and returns the total norm before clipping.
  @discardableResult
  public static func clipNorm(_ parameters: [Variable], maxNorm: Double) throws -> Double {
    guard maxNorm > 0, maxNorm.isFinite else {
      throw AutogradError.invalidArgument("gradient clipping: max_grad_norm must be positive and finite, got \(maxNorm)")
    }
    var squares = 0.0
    for p in parameters {
      guard let g = p.grad else { continue }
      let gp = g.floatPointer
      var s: Float = 0
      for i in 0..<g.count { s += gp[i] * gp[i] }
      let norm = Double(s.squareRoot())
      squares += norm * norm
    }
    let total = squares.squareRoot()
    let coefficient = Float(min(1, maxNorm / (total + 1e-6)))
    if coefficient < 1 {
      for p in parameters {
        guard let g = p.grad else { continue }
        p.grad = Ops.scale(g, coefficient)
      }
    }
    return total
  }
}
