import TensorCore
import TorchRandom

/// Ancestral Euler sampling (k-diffusion "Euler a"): an Euler step to a lower sigma followed by
/// fresh noise from the generator, every step.
///
/// matches: diffusers `EulerAncestralDiscreteScheduler` (0.42.1), including its noise draw
/// (`randn_tensor(model_output.shape, generator=generator)`: one `torch.randn` over the whole
/// NCHW shape per step, also on the last step). Config keys (class defaults in brackets):
/// `num_train_timesteps` [1000], `beta_start` [0.0001], `beta_end` [0.02], `beta_schedule`
/// [linear], `trained_betas`, `prediction_type` [epsilon; also v_prediction],
/// `timestep_spacing` [linspace], `steps_offset` [0], `rescale_betas_zero_snr` [false].
///
/// `noiseLayout` says how the sample tensors are laid out, so the noise lands on the elements torch
/// would give it: with `.nhwc` a `[N, H, W, C]` sample receives the transpose of a torch
/// `[N, C, H, W]` draw. Tensors that are not 4-D are filled in order.
public struct EulerAncestralDiscreteScheduler: Scheduler {
  public static let className = "EulerAncestralDiscreteScheduler"

  public let timesteps: [Float]
  /// The float32 sigmas, one more than `timesteps` (the last is 0).
  public let sigmas: [Float]
  public let initNoiseSigma: Float
  public let order = 1
  public let numInferenceSteps: Int
  public let noiseLayout: LatentLayout

  private let prediction: SchedulerOption.Prediction
  private var nextStep: Int?

  public init(config: SchedulerConfig, steps: Int, noiseLayout: LatentLayout = .nchw) throws {
    let name = Self.className
    var schedule = try NoiseSchedule(config: config, scheduler: name)
    let n = schedule.count
    try SchedulerOption.steps(steps, trainTimesteps: n)
    prediction = try SchedulerOption.prediction(config, supported: [.epsilon, .vPrediction], scheduler: name)
    if config.rescaleBetasZeroSnr ?? false {
      schedule.alphasCumprod[n - 1] = Float(1.0 / 16_777_216.0)  // 2**-24
    }
    let spacing = try SchedulerOption.spacing(config, default: .linspace, scheduler: name)
    numInferenceSteps = steps
    self.noiseLayout = noiseLayout

    let times = EulerSchedule.timesteps(
      spacing: spacing, trainTimesteps: n, steps: steps, stepsOffset: config.stepsOffset ?? 0)
    let sigmas64 = EulerSchedule.interpolatedSigmas(times, table: schedule.sigmas)
    sigmas = sigmas64.map { Float($0) } + [0]
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
    let sigmaFrom = sigma
    let sigmaTo = sigmas[stepIndex + 1]
    let from2 = sigmaFrom * sigmaFrom
    let to2 = sigmaTo * sigmaTo
    let sigmaUp = (to2 * (from2 - to2) / from2).squareRoot()
    let sigmaDown = (to2 - sigmaUp * sigmaUp).squareRoot()
    let dt = sigmaDown - sigma

    let euler: Tensor
    switch prediction {
    case .epsilon:
      euler = TensorMath.map(sample, modelOutput) { s, m in
        let x0 = s - sigma * m
        let derivative = (s - x0) / sigma
        return s + derivative * dt
      }
    case .vPrediction, .sample:  // (.sample is rejected by init, as diffusers raises for it)
      let c = sigma * sigma + 1
      let a = -sigma / c.squareRoot()
      euler = TensorMath.map(sample, modelOutput) { s, m in
        let x0 = m * a + s / c
        let derivative = (s - x0) / sigma
        return s + derivative * dt
      }
    }
    let noise = generator.randn(like: modelOutput.shape, layout: noiseLayout)
    return TensorMath.map(euler, noise) { x, z in x + z * sigmaUp }
  }

  /// `original + noise * sigmas[stepIndex]`.
  public func addNoise(original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor {
    try checkStepIndex(stepIndex)
    try TensorMath.checkShapes("EulerAncestralDiscreteScheduler.addNoise", original, noise)
    let sigma = sigmas[stepIndex]
    return TensorMath.map(original, noise) { x, n in x + n * sigma }
  }
}
