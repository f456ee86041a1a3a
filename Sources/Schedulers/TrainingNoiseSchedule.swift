import TensorCore

/// The forward (noising) process a model is trained with: the base model's beta schedule, one
/// timestep per sample, and the training target its `prediction_type` asks for.
///
/// matches: diffusers `DDPMScheduler.from_pretrained(base, subfolder="scheduler")` as IP-Adapter's
/// `tutorial_train*.py` use it — `add_noise` (`√ᾱ_t·x₀ + √(1−ᾱ_t)·ε`, float32) and
/// `get_velocity` (`√ᾱ_t·ε − √(1−ᾱ_t)·x₀`) per sample. Limitations: `epsilon` and `v_prediction`
/// targets only (`sample` prediction is refused).
public struct TrainingNoiseSchedule: Sendable {
  /// What the UNet learns to predict.
  public enum Target: String, Sendable { case epsilon, vPrediction = "v_prediction" }

  let schedule: NoiseSchedule
  public let target: Target

  /// - Throws: `SchedulerError` naming the bad key of `config` (from `scheduler/scheduler_config.json`).
  public init(config: SchedulerConfig) throws {
    schedule = try NoiseSchedule(config: config, scheduler: "DDPMScheduler")
    let name = config.predictionType ?? "epsilon"
    guard let target = Target(rawValue: name) else {
      throw SchedulerError.unsupportedValue(
        scheduler: "DDPMScheduler", key: "prediction_type", value: name, supported: ["epsilon", "v_prediction"])
    }
    self.target = target
  }

  /// `num_train_timesteps`: timesteps are drawn from `0..<count`.
  public var timestepCount: Int { schedule.count }

  /// Per sample `b`: `√ᾱ_{t_b}·x_b + √(1−ᾱ_{t_b})·n_b` for `[B, …]` tensors.
  public func addNoise(_ x: Tensor, noise: Tensor, timesteps: [Int]) throws -> Tensor {
    try perSample(x, noise, timesteps, "addNoise") { a, b, x, n in a * x + b * n }
  }

  /// The training target for `x` noised with `noise` at `timesteps`: the noise itself (ε) or the
  /// velocity `√ᾱ·ε − √(1−ᾱ)·x`.
  public func target(_ x: Tensor, noise: Tensor, timesteps: [Int]) throws -> Tensor {
    switch target {
    case .epsilon:
      try TensorMath.checkShapes("TrainingNoiseSchedule.target", x, noise)
      return noise
    case .vPrediction: return try perSample(x, noise, timesteps, "target") { a, b, x, n in a * n - b * x }
    }
  }

  private func perSample(
    _ x: Tensor, _ noise: Tensor, _ timesteps: [Int], _ name: String, _ f: (Float, Float, Float, Float) -> Float
  ) throws -> Tensor {
    try TensorMath.checkShapes("TrainingNoiseSchedule.\(name)", x, noise)
    guard x.rank >= 1, x.shape[0] == timesteps.count else {
      throw SchedulerError.invalidValue(
        scheduler: "DDPMScheduler", key: "timesteps", value: "\(timesteps.count)", reason: "needs one per sample of \(x.shape)")
    }
    for t in timesteps where !(0..<schedule.count).contains(t) {
      throw SchedulerError.invalidValue(
        scheduler: "DDPMScheduler", key: "timesteps", value: "\(t)", reason: "must be in 0..<\(schedule.count)")
    }
    let per = x.count / max(timesteps.count, 1)
    let out = Tensor(uninitializedShape: x.shape)
    let (xs, ns) = (x.asFloat32(), noise.asFloat32())
    let (xp, np, o) = (xs.floatPointer, ns.floatPointer, out.mutableFloatPointer)
    for (row, t) in timesteps.enumerated() {
      let alpha = schedule.alphasCumprod[t]
      let (a, b) = (alpha.squareRoot(), (1 - alpha).squareRoot())
      for i in row * per..<(row + 1) * per { o[i] = f(a, b, xp[i], np[i]) }
    }
    return out
  }
}
