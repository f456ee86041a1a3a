import Foundation

/// How the learning rate moves over the optimiser steps: a factor of the base rate per step.
///
/// matches: diffusers `get_scheduler(name, optimizer, num_warmup_steps, num_training_steps)` (a
/// `torch.optim.lr_scheduler.LambdaLR`, stepped once per optimiser update as diffusers' training
/// scripts do): optimiser step `k` (0-based) uses `lr · factor(k)`. Every kind but `constant`
/// warms up linearly, `k / warmup`, for the first `warmup` steps; after the warm-up,
/// `p = (k − warmup) / max(1, total − warmup)`:
/// - `constant_with_warmup`: 1;
/// - `linear`: `max(0, (total − k) / max(1, total − warmup))`;
/// - `cosine` (half a cycle): `max(0, ½(1 + cos(π·2·0.5·p)))`;
/// - `cosine_with_restarts` (one cycle): 0 from `p ≥ 1`, else `max(0, ½(1 + cos(π·((1·p) mod 1))))`;
/// - `polynomial` (power 1, `lr_end` 1e-7): `((lr − lr_end)·(1 − p)^power + lr_end) / lr`, and
///   `lr_end / lr` after `total`.
/// `tutorial_train.py` uses none (constant). Limitations: diffusers' `num_cycles`, `power` and
/// `lr_end` keep their defaults; `piecewise_constant` is not offered.
public enum LearningRateSchedule: Equatable, Sendable {
  case constant
  case constantWithWarmup(steps: Int)
  case linear(warmup: Int, total: Int)
  case cosine(warmup: Int, total: Int)
  case cosineWithRestarts(warmup: Int, total: Int)
  /// `endFactor` is `lr_end / lr` (diffusers refuses `lr ≤ lr_end`).
  case polynomial(warmup: Int, total: Int, endFactor: Double)

  /// The names diffusers' training scripts accept for `--lr_scheduler` (those offered here).
  public static let names = ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"]

  /// The schedule diffusers' `get_scheduler(name, …)` makes.
  ///
  /// - Throws: `AutogradError.invalidArgument` for an unknown name, negative step counts, or, for
  ///   `polynomial`, a base rate at or below its `lr_end` (1e-7) or no steps after the warm-up
  ///   (where diffusers divides by zero).
  public init(name: String, warmupSteps: Int, totalSteps: Int, learningRate: Double) throws {
    guard warmupSteps >= 0, totalSteps >= 0 else {
      throw AutogradError.invalidArgument("learning-rate schedule: warm-up \(warmupSteps) and total \(totalSteps) steps must be ≥ 0")
    }
    switch name {
    case "constant": self = .constant
    case "constant_with_warmup": self = .constantWithWarmup(steps: warmupSteps)
    case "linear": self = .linear(warmup: warmupSteps, total: totalSteps)
    case "cosine": self = .cosine(warmup: warmupSteps, total: totalSteps)
    case "cosine_with_restarts": self = .cosineWithRestarts(warmup: warmupSteps, total: totalSteps)
    case "polynomial":
      let end = 1e-7
      guard learningRate > end else {
        throw AutogradError.invalidArgument("learning-rate schedule polynomial: the learning rate \(learningRate) must be above lr_end \(end)")
      }
      guard totalSteps > warmupSteps else {
        throw AutogradError.invalidArgument("learning-rate schedule polynomial: \(totalSteps) total steps must be more than the \(warmupSteps) warm-up steps")
      }
      self = .polynomial(warmup: warmupSteps, total: totalSteps, endFactor: end / learningRate)
    default:
      throw AutogradError.invalidArgument("unknown learning-rate schedule '\(name)' (one of \(Self.names.joined(separator: ", ")))")
    }
  }

  /// The factor of the base rate for optimiser step `step` (0-based).
  public func factor(step: Int) -> Double {
    let k = Double(step)
    func warm(_ warmup: Int) -> Double? { step < warmup ? k / Double(max(1, warmup)) : nil }
    func progress(_ warmup: Int, _ total: Int) -> Double { (k - Double(warmup)) / Double(max(1, total - warmup)) }
    switch self {
    case .constant: return 1
    case .constantWithWarmup(let warmup): return warm(warmup) ?? 1
    case .linear(let warmup, let total):
      return warm(warmup) ?? max(0, Double(total - step) / Double(max(1, total - warmup)))
    case .cosine(let warmup, let total):
      if let w = warm(warmup) { return w }
      return max(0, 0.5 * (1 + cos(Double.pi * 2 * 0.5 * progress(warmup, total))))
    case .cosineWithRestarts(let warmup, let total):
      if let w = warm(warmup) { return w }
      let p = progress(warmup, total)
      if p >= 1 { return 0 }
      return max(0, 0.5 * (1 + cos(Double.pi * (p.truncatingRemainder(dividingBy: 1)))))
    case .polynomial(let warmup, let total, let end):
      if let w = warm(warmup) { return w }
      if step > total { return end }
      let remaining = 1 - Double(step - warmup) / Double(total - warmup)
      return (1 - end) * remaining + end
    }
  }
}
