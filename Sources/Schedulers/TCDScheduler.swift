import TensorCore
import TorchRandom

/// Trajectory consistency distillation: few-step sampling (TCD-LoRA models) with a stochastic
/// "gamma" (`eta`) that mixes in fresh noise at every step but the last.
///
/// matches: diffusers `TCDScheduler` (0.42.1) as `StableDiffusionPipeline` /
/// `StableDiffusionXLPipeline` drive it with `eta` (the pipelines' `eta` argument, passed to
/// `step`): the same timesteps as `LCMScheduler`; a step predicts x̂₀ and ε̂, moves them to
/// `s = floor((1 − eta) · t_prev)` (`pred_noised_sample`), and for eta > 0 re-noises from `s` to
/// `t_prev` with `√(ᾱ_prev/ᾱ_s)` and `√(1 − ᾱ_prev/ᾱ_s)` and noise from the generator. Config keys
/// as `LCMScheduler` (`timestep_scaling` is not used).
///
/// Known limitations: `thresholding`; custom timesteps.
public struct TCDScheduler: Scheduler {
  public static let className = "TCDScheduler"

  public let timesteps: [Float]
  public let initNoiseSigma: Float = 1
  public let order = 1
  public let numInferenceSteps: Int
  /// `eta` (gamma) in [0, 1]: 0 (the pipelines' default) is deterministic; TCD's examples use 0.3.
  public let eta: Float
  public let noiseLayout: LatentLayout

  private let setup: FewStep.Setup
  private var schedule: NoiseSchedule { setup.schedule }
  private var integerTimesteps: [Int] { setup.integerTimesteps }
  private var nextStep: Int?

  public init(config: SchedulerConfig, steps: Int, eta: Float = 0, noiseLayout: LatentLayout = .nchw) throws {
    setup = try FewStep.Setup(config: config, steps: steps, scheduler: Self.className)
    guard eta.isFinite, (0...1).contains(eta) else {
      throw SchedulerError.invalidValue(scheduler: Self.className, key: "eta", value: "\(eta)", reason: "must be in [0, 1]")
    }
    timesteps = setup.integerTimesteps.map(Float.init)
    numInferenceSteps = steps
    self.eta = eta
    self.noiseLayout = noiseLayout
  }

  public func scaleModelInput(_ sample: Tensor, stepIndex: Int) throws -> Tensor {
    try checkStepIndex(stepIndex)
    return sample
  }

  public mutating func step(
    modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator
  ) throws -> Tensor {
    try beginStep(stepIndex, sample: sample, modelOutput: modelOutput, nextStep: &nextStep)
    let t = integerTimesteps[stepIndex]
    let last = stepIndex == integerTimesteps.count - 1
    let prev = last ? 0 : integerTimesteps[stepIndex + 1]
    // torch: floor(float32(1 − eta) · t_prev) as a long.
    let s = Int((Float(1 - Double(eta)) * Float(prev)).rounded(.down))
    let alphaT = schedule.alphaCumprod(at: t)
    let alphaPrev = schedule.alphaCumprod(at: prev)
    let alphaS = schedule.alphaCumprod(at: s)
    let (sa, sb) = (alphaT.squareRoot(), (1 - alphaT).squareRoot())
    let (ssa, ssb) = (alphaS.squareRoot(), (1 - alphaS).squareRoot())
    let noised: Tensor
    switch setup.prediction {
    case .epsilon:
      noised = TensorMath.map(sample, modelOutput) { x, m in ssa * ((x - sb * m) / sa) + ssb * m }
    case .sample:
      noised = TensorMath.map(sample, modelOutput) { x, m in ssa * m + ssb * ((x - sa * m) / sb) }
    case .vPrediction:
      noised = TensorMath.map(sample, modelOutput) { x, m in ssa * (sa * x - sb * m) + ssb * (sa * m + sb * x) }
    }
    guard eta > 0, !last else { return noised }
    let noise = generator.randn(like: modelOutput.shape, layout: noiseLayout)
    let ratio = alphaPrev / alphaS
    let (a, b) = (ratio.squareRoot(), (1 - ratio).squareRoot())
    return TensorMath.map(noised, noise) { d, z in a * d + b * z }
  }

  public func addNoise(original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor {
    try checkStepIndex(stepIndex)
    try TensorMath.checkShapes("TCDScheduler.addNoise", original, noise)
    return addNoiseAtTimestep(schedule, integerTimesteps[stepIndex], original: original, noise: noise)
  }
}
