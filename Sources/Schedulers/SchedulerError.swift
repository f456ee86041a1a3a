/// Errors raised while configuring or running a scheduler.
///
/// Every case names what was wrong and what would be accepted, so the message can be shown to a
/// user as is (`description`).
public enum SchedulerError: Error, CustomStringConvertible, Equatable, Sendable {
  /// A scheduler name (CLI `--scheduler`) that is not one of `SchedulerKind`'s names.
  case unknownScheduler(name: String, known: [String])
  /// A `_class_name` in `scheduler_config.json` that this package does not implement.
  case unknownSchedulerClass(name: String, known: [String])
  /// A config key whose value the named scheduler class does not support here.
  case unsupportedValue(scheduler: String, key: String, value: String, supported: [String])
  /// A config value outside its valid range (e.g. `num_train_timesteps` < 1).
  case invalidValue(scheduler: String, key: String, value: String, reason: String)
  /// `scheduler_config.json` could not be decoded.
  case invalidConfigJSON(String)
  /// An inference step count that is < 1 or larger than `num_train_timesteps`.
  case invalidStepCount(steps: Int, numTrainTimesteps: Int)
  /// An image-to-image strength outside [0, 1].
  case invalidStrength(Double)
  /// A step index outside `0..<timesteps.count`.
  case stepIndexOutOfRange(index: Int, count: Int)
  /// `step` was not called with consecutive step indices (multistep schedulers keep history).
  case stepOutOfOrder(scheduler: String, expected: Int, got: Int)
  /// Two tensors that must have the same shape do not.
  case shapeMismatch(operation: String, expected: [Int], actual: [Int])

  public var description: String {
    switch self {
    case .unknownScheduler(let name, let known):
      "unknown scheduler '\(name)'; choose one of: \(known.joined(separator: ", "))"
    case .unknownSchedulerClass(let name, let known):
      "scheduler class '\(name)' (from _class_name) is not implemented; implemented classes: "
        + known.joined(separator: ", ")
    case .unsupportedValue(let scheduler, let key, let value, let supported):
      "\(scheduler): unsupported \(key) = \(value); supported: \(supported.joined(separator: ", "))"
    case .invalidValue(let scheduler, let key, let value, let reason):
      "\(scheduler): invalid \(key) = \(value): \(reason)"
    case .invalidConfigJSON(let message):
      "cannot read scheduler_config.json: \(message)"
    case .invalidStepCount(let steps, let numTrainTimesteps):
      "number of inference steps must be in 1...\(numTrainTimesteps) (num_train_timesteps), got \(steps)"
    case .invalidStrength(let strength):
      "strength must be in [0, 1], got \(strength)"
    case .stepIndexOutOfRange(let index, let count):
      "step index \(index) is outside the schedule's \(count) timesteps"
    case .stepOutOfOrder(let scheduler, let expected, let got):
      "\(scheduler).step called with step index \(got) but the next step is \(expected); "
        + "create a new scheduler for a new denoising loop"
    case .shapeMismatch(let operation, let expected, let actual):
      "\(operation): expected shape \(expected), got \(actual)"
    }
  }
}
