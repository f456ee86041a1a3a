import Foundation
import TensorCore
import TorchRandom

/// Euler's method on the probability-flow ODE in sigma space (k-diffusion "Euler").
///
/// matches: diffusers `EulerDiscreteScheduler` (0.42.1) with the default `step` arguments
/// (`s_churn = 0`, so no noise is added and the generator is not used). Config keys (class
/// defaults in brackets): `num_train_timesteps` [1000], `beta_start` [0.0001], `beta_end` [0.02],
/// `beta_schedule` [linear], `trained_betas`, `prediction_type` [epsilon; also v_prediction,
/// sample/original_sample], `timestep_spacing` [linspace], `steps_offset` [0],
/// `use_karras_sigmas` [false], `sigma_min`/`sigma_max` [none], `final_sigmas_type` [zero; also
/// sigma_min], `rescale_betas_zero_snr` [false], `interpolation_type` [linear],
/// `timestep_type` [discrete].
///
/// Known limitations: `use_exponential_sigmas`, `use_beta_sigmas`, `interpolation_type =
/// log_linear` and continuous v-prediction timesteps throw `SchedulerError.unsupportedValue`.
/// Karras timesteps use libm `log` where numpy uses its SIMD log (last-bit differences in the
/// fractional timesteps).
public struct EulerDiscreteScheduler: Scheduler {
  public static let className = "EulerDiscreteScheduler"

  public let timesteps: [Float]
  /// The float32 sigmas, one more than `timesteps` (the last is the final sigma).
  public let sigmas: [Float]
  public let initNoiseSigma: Float
  public let order = 1
  public let numInferenceSteps: Int

  private let prediction: SchedulerOption.Prediction
  private var nextStep: Int?

  public init(config: SchedulerConfig, steps: Int) throws {
    let name = Self.className
    var schedule = try NoiseSchedule(config: config, scheduler: name)
    let n = schedule.count
    try SchedulerOption.steps(steps, trainTimesteps: n)
    prediction = try SchedulerOption.prediction(
      config, supported: [.epsilon, .vPrediction, .sample], scheduler: name,
      aliases: ["original_sample": .sample])
    try SchedulerOption.require(config.useExponentialSigmas, equals: false, key: "use_exponential_sigmas", scheduler: name)
    try SchedulerOption.require(config.useBetaSigmas, equals: false, key: "use_beta_sigmas", scheduler: name)
    if let interpolation = config.interpolationType, interpolation != "linear" {
      throw SchedulerError.unsupportedValue(
        scheduler: name, key: "interpolation_type", value: interpolation, supported: ["linear"])
    }
    if let type = config.timestepType, type != "discrete" && !(type == "continuous" && prediction != .vPrediction) {
      throw SchedulerError.unsupportedValue(
        scheduler: name, key: "timestep_type", value: type, supported: ["discrete"])
    }
    if config.rescaleBetasZeroSnr ?? false {
      schedule.alphasCumprod[n - 1] = Float(1.0 / 16_777_216.0)  // 2**-24
    }
    let spacing = try SchedulerOption.spacing(config, default: .linspace, scheduler: name)
    numInferenceSteps = steps

    var times = EulerSchedule.timesteps(
      spacing: spacing, trainTimesteps: n, steps: steps, stepsOffset: config.stepsOffset ?? 0)
    let table = schedule.sigmas
    var sigmas64 = EulerSchedule.interpolatedSigmas(times, table: table)
    if config.useKarrasSigmas ?? false {
      let logSigmas = table.map { Foundation.log($0) }
      sigmas64 = NumericCompat.karrasSigmas(
        sigmaMin: config.sigmaMin ?? sigmas64[sigmas64.count - 1],
        sigmaMax: config.sigmaMax ?? sigmas64[0], count: steps)
      times = sigmas64.map { Float(NumericCompat.sigmaToT($0, logSigmas: logSigmas)) }
    }
    let last: Float
    switch config.finalSigmasType ?? "zero" {
    case "zero": last = 0
    case "sigma_min":
      let a = schedule.alphasCumprod[0]
      last = ((1 - a) / a).squareRoot()
    case let other:
      throw SchedulerError.unsupportedValue(
        scheduler: name, key: "final_sigmas_type", value: other, supported: ["zero", "sigma_min"])
    }
    sigmas = sigmas64.map { Float($0) } + [last]
    timesteps = times
    initNoiseSigma = EulerSchedule.initNoiseSigma(sigmas: sigmas, spacing: spacing)
  }

  /// `sample / (sigma**2 + 1) ** 0.5`.
  public func scaleModelInput(_ sample: Tensor, stepIndex: Int) throws -> Tensor {
    try checkStepIndex(stepIndex)
    let sigma = sigmas[stepIndex]
    let d = (sigma * sigma + 1).squareRoot()
    return TensorMath.map(sample) { $0 / d }
  }

  public mutating func step(
    modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator
  ) throws -> Tensor {
    try beginStep(stepIndex, sample: sample, modelOutput: modelOutput, nextStep: &nextStep)

    let sigma = sigmas[stepIndex]
    let sigmaHat = sigma * (0 + 1)  // gamma = 0 (s_churn = 0)
    let dt = sigmas[stepIndex + 1] - sigmaHat
    switch prediction {
    case .epsilon:
      return TensorMath.map(sample, modelOutput) { s, m in
        let x0 = s - sigmaHat * m
        let derivative = (s - x0) / sigmaHat
        return s + derivative * dt
      }
    case .vPrediction:
      let c = sigma * sigma + 1
      let a = -sigma / c.squareRoot()
      return TensorMath.map(sample, modelOutput) { s, m in
        let x0 = m * a + s / c
        let derivative = (s - x0) / sigmaHat
        return s + derivative * dt
      }
    case .sample:
      return TensorMath.map(sample, modelOutput) { s, m in
        let derivative = (s - m) / sigmaHat
        return s + derivative * dt
      }
    }
  }

  /// `original + noise * sigmas[stepIndex]`.
  public func addNoise(original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor {
    try checkStepIndex(stepIndex)
    try TensorMath.checkShapes("EulerDiscreteScheduler.addNoise", original, noise)
    let sigma = sigmas[stepIndex]
    return TensorMath.map(original, noise) { x, n in x + n * sigma }
  }
}
