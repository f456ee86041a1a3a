import TensorCore
import TorchRandom

/// A noise scheduler (sampler) driven by one denoising loop for all samplers.
///
/// matches: the part of diffusers' `SchedulerMixin` interface that `StableDiffusionPipeline`,
/// `StableDiffusionImg2ImgPipeline` and `StableDiffusionInpaintPipeline` use (0.42.1):
/// `timesteps`, `init_noise_sigma`, `order`, `scale_model_input`, `step`, `add_noise`,
/// `set_begin_index` (via the step index).
///
/// Steps are addressed by their index into `timesteps` instead of by timestep value. A scheduler
/// is made for one loop: text-to-image runs `stepIndex` 0, 1, …, `timesteps.count - 1`;
/// image-to-image starts at `startIndex(strength:)` (diffusers' `get_timesteps` +
/// `set_begin_index`) and runs to the end. `step` must be called with consecutive indices.
///
/// ```swift
/// var scheduler = try makeScheduler(kind: .eulerAncestral, config: config, steps: 30)
/// var latents = generator.randn(nchw: [1, 4, 64, 64], layout: .nchw)  // * initNoiseSigma
/// for i in 0..<scheduler.timesteps.count {
///   let input = try scheduler.scaleModelInput(latents, stepIndex: i)
///   let eps = unet(input, scheduler.timesteps[i])  // + classifier-free guidance
///   latents = try scheduler.step(modelOutput: eps, stepIndex: i, sample: latents, generator: &generator)
/// }
/// ```
///
/// Tensors are treated as flat float32 arrays with a shape: all scheduler math is elementwise, so
/// any layout works as long as model output and sample share it. The one layout-aware operation is
/// the ancestral noise draw, which follows `noiseLayout`.
public protocol Scheduler: Sendable {
  /// The diffusers class this scheduler reproduces (`DDIMScheduler`, …), named in errors.
  static var className: String { get }
  /// diffusers' `scheduler.timesteps` as float32 (integral values except Euler's).
  var timesteps: [Float] { get }
  /// diffusers' `init_noise_sigma`: text-to-image multiplies the initial noise by it.
  var initNoiseSigma: Float { get }
  /// diffusers' `order` (1 for every scheduler here); image-to-image starts at `t_start * order`.
  var order: Int { get }
  /// The number of inference steps the scheduler was made for (the pipeline's
  /// `num_inference_steps`; `timesteps.count` can differ, e.g. PNDM has one more).
  var numInferenceSteps: Int { get }

  /// `scale_model_input(sample, timesteps[stepIndex])`: the UNet input for this step.
  func scaleModelInput(_ sample: Tensor, stepIndex: Int) throws -> Tensor

  /// `step(model_output, timesteps[stepIndex], sample, generator=generator).prev_sample`.
  /// `generator` is only drawn from by ancestral samplers (once per step, every step).
  mutating func step(
    modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator
  ) throws -> Tensor

  /// `add_noise(original, noise, timesteps[stepIndex])` as image-to-image / inpainting call it
  /// (for sigma schedulers: with the begin index or the current step index at `stepIndex`).
  func addNoise(original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor
}

extension Scheduler {
  /// The first step index of image-to-image / inpainting at `strength`: diffusers'
  /// `get_timesteps` (`init_timestep = min(int(N * strength), N)`,
  /// `t_start = max(N - init_timestep, 0)`, first index `t_start * order`).
  public func startIndex(strength: Double) throws -> Int {
    guard strength >= 0 && strength <= 1 else { throw SchedulerError.invalidStrength(strength) }
    let n = numInferenceSteps
    let initTimestep = Swift.min(Int(Double(n) * strength), n)
    let tStart = Swift.max(n - initTimestep, 0)
    return tStart * order
  }

  /// The checks every `step` begins with, in this order: `index` addresses `timesteps`, the
  /// sample and the model output have one shape, and steps come in order (`nextStep`, nil before
  /// the first step, is then advanced).
  func beginStep(_ index: Int, sample: Tensor, modelOutput: Tensor, nextStep: inout Int?) throws {
    try checkStepIndex(index)
    try TensorMath.checkShapes("\(Self.className).step", sample, modelOutput)
    if let expected = nextStep, expected != index {
      throw SchedulerError.stepOutOfOrder(scheduler: Self.className, expected: expected, got: index)
    }
    nextStep = index + 1
  }

  /// Throws unless `index` addresses `timesteps`.
  func checkStepIndex(_ index: Int) throws {
    guard index >= 0 && index < timesteps.count else {
      throw SchedulerError.stepIndexOutOfRange(index: index, count: timesteps.count)
    }
  }
}

/// How each scheduler class names and validates its options.
enum SchedulerOption {
  /// diffusers' `timestep_spacing`.
  enum Spacing: String, CaseIterable {
    case leading, trailing, linspace
  }

  /// diffusers' `prediction_type`.
  enum Prediction: String, CaseIterable {
    case epsilon
    case vPrediction = "v_prediction"
    case sample
  }

  static func spacing(_ config: SchedulerConfig, default value: Spacing, scheduler: String) throws
    -> Spacing
  {
    let name = config.timestepSpacing ?? value.rawValue
    guard let spacing = Spacing(rawValue: name) else {
      throw SchedulerError.unsupportedValue(
        scheduler: scheduler, key: "timestep_spacing", value: name,
        supported: Spacing.allCases.map(\.rawValue))
    }
    return spacing
  }

  static func prediction(
    _ config: SchedulerConfig, supported: [Prediction], scheduler: String,
    aliases: [String: Prediction] = [:]
  ) throws -> Prediction {
    let name = config.predictionType ?? "epsilon"
    if let p = Prediction(rawValue: name), supported.contains(p) { return p }
    if let p = aliases[name] { return p }
    throw SchedulerError.unsupportedValue(
      scheduler: scheduler, key: "prediction_type", value: name,
      supported: supported.map(\.rawValue) + aliases.keys.sorted())
  }

  /// Throws if a boolean option the class has is set to a value not implemented here.
  static func require(
    _ value: Bool?, equals expected: Bool, key: String, scheduler: String
  ) throws {
    if let value, value != expected {
      throw SchedulerError.unsupportedValue(
        scheduler: scheduler, key: key, value: "\(value)", supported: ["\(expected)"])
    }
  }

  /// Every integer timestep of a schedule must index the training tables with Python's indexing
  /// (-n..<n: diffusers' `trailing` spacing can produce -1, which reads the last entry). Outside
  /// it diffusers raises an IndexError, e.g. for 1000 `leading` steps with `steps_offset` 1.
  static func checkTimesteps(_ timesteps: [Int], trainTimesteps n: Int, config: SchedulerConfig, scheduler: String) throws {
    if let bad = timesteps.first(where: { !(-n..<n).contains($0) }) {
      throw SchedulerError.invalidValue(
        scheduler: scheduler, key: "steps_offset", value: "\(config.stepsOffset ?? 0)",
        reason: "with \(timesteps.count) steps it puts timestep \(bad) outside the \(n) training timesteps; use fewer steps")
    }
  }

  static func steps(_ steps: Int, trainTimesteps: Int) throws {
    guard steps >= 1 && steps <= trainTimesteps else {
      throw SchedulerError.invalidStepCount(steps: steps, numTrainTimesteps: trainTimesteps)
    }
  }
}
