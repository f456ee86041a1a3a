import TensorCore
import TorchRandom

/// Latent consistency models: a few steps (typically 2–8) with an LCM-distilled model or an
/// LCM-LoRA, guidance ≤ 2.
///
/// matches: diffusers `LCMScheduler` (0.42.1) driven as `StableDiffusionPipeline` drives any
/// scheduler: `set_timesteps(steps)` takes `steps` evenly spaced indices of the
/// `original_inference_steps`-long distillation schedule `k·(1…original) − 1` (k =
/// `num_train_timesteps // original`), reversed; a step is the consistency function
/// `denoised = c_out · x̂₀ + c_skip · x` (boundary scalings from `timestep_scaling`, σ_data 0.5, in
/// float32 as torch computes them from the integer timestep) and, except at the last step,
/// re-noising to the next timestep with fresh noise from the generator. Config keys (class
/// defaults in brackets): `num_train_timesteps` [1000], `beta_start` [0.00085], `beta_end`
/// [0.012], `beta_schedule` [scaled_linear], `trained_betas`, `original_inference_steps` [50],
/// `clip_sample` [false], `clip_sample_range` [1.0], `prediction_type` [epsilon; also
/// v_prediction, sample], `timestep_scaling` [10.0], `rescale_betas_zero_snr` [false];
/// `timestep_spacing` (one of the known values), `steps_offset` and `set_alpha_to_one` are
/// accepted and (as in diffusers) do not change the result.
///
/// Known limitations: `thresholding`; custom timesteps; LCM-distilled UNets that take a guidance
/// embedding (`time_cond_proj_dim`) are refused by the UNet loader.
public struct LCMScheduler: Scheduler {
  public static let className = "LCMScheduler"

  public let timesteps: [Float]
  public let initNoiseSigma: Float = 1
  public let order = 1
  public let numInferenceSteps: Int
  /// The layout of the sample tensors (for the re-noising draw).
  public let noiseLayout: LatentLayout

  private let setup: FewStep.Setup
  private var schedule: NoiseSchedule { setup.schedule }
  private var integerTimesteps: [Int] { setup.integerTimesteps }
  private let clipRange: Float?
  private let timestepScaling: Float
  private var nextStep: Int?

  public init(config: SchedulerConfig, steps: Int, noiseLayout: LatentLayout = .nchw) throws {
    setup = try FewStep.Setup(config: config, steps: steps, scheduler: Self.className)
    let c = setup.config
    clipRange = (c.clipSample ?? false) ? Float(c.clipSampleRange ?? 1) : nil
    timestepScaling = Float(c.timestepScaling ?? 10)
    timesteps = setup.integerTimesteps.map(Float.init)
    numInferenceSteps = steps
    self.noiseLayout = noiseLayout
  }

  public func scaleModelInput(_ sample: Tensor, stepIndex: Int) throws -> Tensor {
    try checkStepIndex(stepIndex)
    return sample
  }

  /// `get_scalings_for_boundary_condition_discrete(t)`: float32, as torch from the integer
  /// timestep tensor.
  func boundaryScalings(_ t: Int) -> (skip: Float, out: Float) {
    let scaled = Float(t) * timestepScaling
    let denominator = scaled * scaled + 0.25
    return (0.25 / denominator, scaled / denominator.squareRoot())
  }

  public mutating func step(
    modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator
  ) throws -> Tensor {
    try beginStep(stepIndex, sample: sample, modelOutput: modelOutput, nextStep: &nextStep)
    let t = integerTimesteps[stepIndex]
    let last = stepIndex == integerTimesteps.count - 1
    let prev = last ? t : integerTimesteps[stepIndex + 1]
    let alphaT = schedule.alphaCumprod(at: t)
    let alphaPrev = schedule.alphaCumprod(at: prev)
    let x0 = FewStep.predictedOriginal(setup.prediction, sample: sample, modelOutput: modelOutput, alpha: alphaT, clip: clipRange)
    let (skip, out) = boundaryScalings(t)
    let denoised = TensorMath.map(x0, sample) { x, s in out * x + skip * s }
    guard !last else { return denoised }
    let noise = generator.randn(like: modelOutput.shape, layout: noiseLayout)
    let a = alphaPrev.squareRoot()
    let b = (1 - alphaPrev).squareRoot()
    return TensorMath.map(denoised, noise) { d, z in a * d + b * z }
  }

  public func addNoise(original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor {
    try checkStepIndex(stepIndex)
    try TensorMath.checkShapes("LCMScheduler.addNoise", original, noise)
    return addNoiseAtTimestep(schedule, integerTimesteps[stepIndex], original: original, noise: noise)
  }
}

/// The parts LCMScheduler and TCDScheduler share.
enum FewStep {
  /// The class defaults applied, the training schedule, the timesteps and the prediction type.
  struct Setup: Sendable {
    let config: SchedulerConfig
    let schedule: NoiseSchedule
    let integerTimesteps: [Int]
    let prediction: SchedulerOption.Prediction

    init(config: SchedulerConfig, steps: Int, scheduler name: String) throws {
      let c = FewStep.withClassDefaults(config)
      schedule = try NoiseSchedule(config: c, scheduler: name)
      try SchedulerOption.require(c.thresholding, equals: false, key: "thresholding", scheduler: name)
      prediction = try SchedulerOption.prediction(c, supported: [.epsilon, .vPrediction, .sample], scheduler: name)
      integerTimesteps = try FewStep.timesteps(c, steps: steps, scheduler: name)
      self.config = c
    }
  }

  /// The class defaults of both (`scaled_linear` betas 0.00085…0.012) where the config is silent.
  static func withClassDefaults(_ config: SchedulerConfig) -> SchedulerConfig {
    var c = config
    c.betaStart = c.betaStart ?? 0.00085
    c.betaEnd = c.betaEnd ?? 0.012
    c.betaSchedule = c.betaSchedule ?? "scaled_linear"
    return c
  }

  /// `set_timesteps(steps)`: `steps` evenly spaced indices (floor of `linspace(0, L, steps,
  /// endpoint=False)`) into the reversed distillation schedule `k·(1…original) − 1`.
  static func timesteps(_ c: SchedulerConfig, steps: Int, scheduler: String) throws -> [Int] {
    let n = c.numTrainTimesteps ?? 1000
    try SchedulerOption.steps(steps, trainTimesteps: n)
    // Unused by these classes, but a value no class knows is a mistake in the config.
    _ = try SchedulerOption.spacing(c, default: .leading, scheduler: scheduler)
    let original = c.originalInferenceSteps ?? 50
    guard original <= n else {
      throw SchedulerError.invalidValue(
        scheduler: scheduler, key: "original_inference_steps", value: "\(original)",
        reason: "cannot exceed num_train_timesteps \(n)")
    }
    guard steps >= 1, steps <= original else {
      throw SchedulerError.invalidValue(
        scheduler: scheduler, key: "steps", value: "\(steps)",
        reason: "must be in 1…\(original) (original_inference_steps: the schedule is a subset of the distillation schedule)")
    }
    let k = n / original
    let origin = (1...original).map { $0 * k - 1 }.reversed().map { $0 }
    // numpy: floor(linspace(0, L, steps, endpoint=False)) = floor(i · (L / steps)).
    let step = Double(origin.count) / Double(steps)
    return (0..<steps).map { origin[Int((Double($0) * step).rounded(.down))] }
  }

  /// x̂₀ from the model output (float32, torch's operation order), clipped when configured.
  static func predictedOriginal(
    _ prediction: SchedulerOption.Prediction, sample: Tensor, modelOutput: Tensor, alpha: Float, clip: Float?
  ) -> Tensor {
    let sa = alpha.squareRoot()
    let sb = (1 - alpha).squareRoot()
    func clipped(_ x: Float) -> Float {
      guard let r = clip else { return x }
      return Swift.min(Swift.max(x, -r), r)
    }
    switch prediction {
    case .epsilon: return TensorMath.map(sample, modelOutput) { s, m in clipped((s - sb * m) / sa) }
    case .sample: return TensorMath.map(sample, modelOutput) { _, m in clipped(m) }
    case .vPrediction: return TensorMath.map(sample, modelOutput) { s, m in clipped(sa * s - sb * m) }
    }
  }
}
