import TensorCore
import TorchRandom

/// Denoising diffusion implicit models, deterministic (eta = 0).
///
/// matches: diffusers `DDIMScheduler` (0.42.1) with `step(..., eta=0.0)` as the Stable Diffusion
/// pipelines call it. Config keys (class defaults in brackets): `num_train_timesteps` [1000],
/// `beta_start` [0.0001], `beta_end` [0.02], `beta_schedule` [linear], `trained_betas`,
/// `clip_sample` [true], `clip_sample_range` [1.0], `set_alpha_to_one` [true], `steps_offset` [0],
/// `prediction_type` [epsilon; also v_prediction, sample], `timestep_spacing` [leading],
/// `rescale_betas_zero_snr` [false].
///
/// Known limitations: `thresholding = true` and eta > 0 are not implemented (throw / absent).
public struct DDIMScheduler: Scheduler {
  public static let className = "DDIMScheduler"

  public let timesteps: [Float]
  public let initNoiseSigma: Float = 1
  public let order = 1
  public let numInferenceSteps: Int

  private let schedule: NoiseSchedule
  private let integerTimesteps: [Int]
  private let finalAlphaCumprod: Float
  private let prediction: SchedulerOption.Prediction
  private let clipRange: Float?
  private let numTrainTimesteps: Int
  private var nextStep: Int?

  public init(config: SchedulerConfig, steps: Int) throws {
    let name = Self.className
    schedule = try NoiseSchedule(config: config, scheduler: name)
    numTrainTimesteps = schedule.count
    try SchedulerOption.steps(steps, trainTimesteps: numTrainTimesteps)
    try SchedulerOption.require(config.thresholding, equals: false, key: "thresholding", scheduler: name)
    prediction = try SchedulerOption.prediction(
      config, supported: [.epsilon, .vPrediction, .sample], scheduler: name)
    clipRange = (config.clipSample ?? true) ? Float(config.clipSampleRange ?? 1) : nil
    finalAlphaCumprod = (config.setAlphaToOne ?? true) ? 1 : schedule.alphasCumprod[0]
    numInferenceSteps = steps

    let spacing = try SchedulerOption.spacing(config, default: .leading, scheduler: name)
    let n = numTrainTimesteps
    switch spacing {
    case .linspace:
      integerTimesteps = NumericCompat.linspace(0, Double(n - 1), steps)
        .map { Int(NumericCompat.round($0)) }.reversed()
    case .leading:
      let ratio = n / steps
      let offset = config.stepsOffset ?? 0
      integerTimesteps = (0..<steps).reversed().map { $0 * ratio + offset }
    case .trailing:
      integerTimesteps = NumericCompat.arange(Double(n), 0, -(Double(n) / Double(steps)))
        .map { Int(NumericCompat.round($0)) - 1 }
    }
    try SchedulerOption.checkTimesteps(integerTimesteps, trainTimesteps: n, config: config, scheduler: name)
    timesteps = integerTimesteps.map { Float($0) }
  }

  public func scaleModelInput(_ sample: Tensor, stepIndex: Int) throws -> Tensor {
    try checkStepIndex(stepIndex)
    return sample
  }

  public mutating func step(
    modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator
  ) throws -> Tensor {
    try beginStep(stepIndex, sample: sample, modelOutput: modelOutput, nextStep: &nextStep)

    let timestep = integerTimesteps[stepIndex]
    let prevTimestep = timestep - numTrainTimesteps / numInferenceSteps
    let alphaProdT = schedule.alphaCumprod(at: timestep)
    let alphaProdTPrev = prevTimestep >= 0 ? schedule.alphaCumprod(at: prevTimestep) : finalAlphaCumprod
    let betaProdT = 1 - alphaProdT
    let sqrtAlpha = alphaProdT.squareRoot()
    let sqrtBeta = betaProdT.squareRoot()
    // eta = 0: std_dev_t = 0, so the direction coefficient is (1 - alpha_prev - 0) ** 0.5.
    let directionCoefficient = (1 - alphaProdTPrev - 0).squareRoot()
    let sqrtAlphaPrev = alphaProdTPrev.squareRoot()
    let clip = clipRange

    func finish(_ x0: Float, _ eps: Float) -> Float {
      var x0 = x0
      if let r = clip { x0 = Swift.min(Swift.max(x0, -r), r) }
      return sqrtAlphaPrev * x0 + directionCoefficient * eps
    }

    switch prediction {
    case .epsilon:
      return TensorMath.map(sample, modelOutput) { s, m in
        finish((s - sqrtBeta * m) / sqrtAlpha, m)
      }
    case .sample:
      return TensorMath.map(sample, modelOutput) { s, m in
        finish(m, (s - sqrtAlpha * m) / sqrtBeta)
      }
    case .vPrediction:
      return TensorMath.map(sample, modelOutput) { s, m in
        finish(sqrtAlpha * s - sqrtBeta * m, sqrtAlpha * m + sqrtBeta * s)
      }
    }
  }

  public func addNoise(original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor {
    try checkStepIndex(stepIndex)
    try TensorMath.checkShapes("DDIMScheduler.addNoise", original, noise)
    return addNoiseAtTimestep(
      schedule, integerTimesteps[stepIndex], original: original, noise: noise)
  }
}

/// diffusers' `DDPMScheduler.add_noise` (used by DDIM and PNDM):
/// `alphas_cumprod[t] ** 0.5 * original + (1 - alphas_cumprod[t]) ** 0.5 * noise`.
func addNoiseAtTimestep(
  _ schedule: NoiseSchedule, _ timestep: Int, original: Tensor, noise: Tensor
) -> Tensor {
  let alpha = schedule.alphaCumprod(at: timestep)
  let a = alpha.squareRoot()
  let b = (1 - alpha).squareRoot()
  return TensorMath.map(original, noise) { x, n in a * x + b * n }
}
