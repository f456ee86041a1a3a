import TensorCore
import TorchRandom

/// Pseudo numerical methods for diffusion models: PLMS (linear multistep), optionally after the
/// Runge-Kutta (PRK) warm-up. The scheduler of the SD1.5 folder (`skip_prk_steps: true`).
///
/// matches: diffusers `PNDMScheduler` (0.42.1). Config keys (class defaults in brackets):
/// `num_train_timesteps` [1000], `beta_start` [0.0001], `beta_end` [0.02], `beta_schedule`
/// [linear], `trained_betas`, `skip_prk_steps` [false], `set_alpha_to_one` [false],
/// `prediction_type` [epsilon; also v_prediction], `timestep_spacing` [leading],
/// `steps_offset` [0].
///
/// Like diffusers, the multistep history is counted from the first `step` call, whatever step
/// index the loop starts at (image-to-image), and `timesteps` has `steps + 1` entries with PLMS
/// (the second timestep is repeated) or more with the PRK warm-up.
public struct PNDMScheduler: Scheduler {
  public static let className = "PNDMScheduler"

  public let timesteps: [Float]
  public let initNoiseSigma: Float = 1
  public let order = 1
  public let numInferenceSteps: Int

  private let schedule: NoiseSchedule
  private let integerTimesteps: [Int]
  private let prkCount: Int
  private let skipPRK: Bool
  private let finalAlphaCumprod: Float
  private let prediction: SchedulerOption.Prediction
  private let stepRatio: Int

  // Loop state (diffusers: counter, ets, cur_sample, cur_model_output).
  private var counter = 0
  private var ets: [Tensor] = []
  private var currentSample: Tensor?
  private var currentModelOutput: Tensor?
  private var nextStep: Int?

  public init(config: SchedulerConfig, steps: Int) throws {
    let name = Self.className
    schedule = try NoiseSchedule(config: config, scheduler: name, hasZeroSNROption: false)
    let n = schedule.count
    try SchedulerOption.steps(steps, trainTimesteps: n)
    prediction = try SchedulerOption.prediction(config, supported: [.epsilon, .vPrediction], scheduler: name)
    finalAlphaCumprod = (config.setAlphaToOne ?? false) ? 1 : schedule.alphasCumprod[0]
    skipPRK = config.skipPrkSteps ?? false
    guard skipPRK || steps >= 4 else {
      throw SchedulerError.invalidValue(
        scheduler: name, key: "skip_prk_steps", value: "false",
        reason: "the Runge-Kutta warm-up needs at least 4 inference steps (got \(steps))")
    }
    numInferenceSteps = steps
    stepRatio = n / steps

    // `_timesteps`, ascending.
    let base: [Int]
    switch try SchedulerOption.spacing(config, default: .leading, scheduler: name) {
    case .linspace:
      base = NumericCompat.linspace(0, Double(n - 1), steps).map { Int(NumericCompat.round($0)) }
    case .leading:
      base = (0..<steps).map { $0 * (n / steps) + (config.stepsOffset ?? 0) }
    case .trailing:
      base = NumericCompat.arange(Double(n), 0, -(Double(n) / Double(steps)))
        .map { Int(NumericCompat.round($0)) }.reversed().map { $0 - 1 }
    }

    var prk: [Int] = []
    var plms: [Int]
    if skipPRK {
      // concatenate([_ts[:-1], _ts[-2:-1], _ts[-1:]])[::-1]
      plms = Array(base.dropLast())
      if base.count >= 2 { plms.append(base[base.count - 2]) }
      plms.append(base[base.count - 1])
      plms.reverse()
    } else {
      // _ts[-4:].repeat(2) + tile([0, ratio // 2], 4), then [:-1].repeat(2)[1:-1][::-1]
      let last = Array(base.suffix(4))
      var repeated: [Int] = []
      for (i, t) in last.flatMap({ [$0, $0] }).enumerated() {
        repeated.append(t + (i % 2 == 0 ? 0 : n / steps / 2))
      }
      let doubled = repeated.dropLast().flatMap { [$0, $0] }
      prk = Array(doubled.dropFirst().dropLast()).reversed()
      plms = Array(base.dropLast(3)).reversed()
    }
    prkCount = prk.count
    integerTimesteps = prk + plms
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
    if counter < prkCount && !skipPRK {
      return stepPRK(modelOutput, timestep, sample)
    }
    return try stepPLMS(modelOutput, timestep, sample)
  }

  private mutating func stepPRK(_ modelOutput: Tensor, _ timestep: Int, _ sample: Tensor) -> Tensor {
    let diffToPrev = counter % 2 != 0 ? 0 : stepRatio / 2
    let prevTimestep = timestep - diffToPrev
    let t = integerTimesteps[counter / 4 * 4]
    var output = modelOutput
    let sixth = Float(1.0 / 6.0)
    let third = Float(1.0 / 3.0)
    switch counter % 4 {
    case 0:
      currentModelOutput = accumulate(currentModelOutput, sixth, modelOutput)
      ets.append(modelOutput)
      currentSample = sample
    case 1, 2:
      currentModelOutput = accumulate(currentModelOutput, third, modelOutput)
    default:
      output = accumulate(currentModelOutput, sixth, modelOutput)
      currentModelOutput = nil
    }
    let base = currentSample ?? sample
    let prev = previousSample(base, t, prevTimestep, output)
    counter += 1
    return prev
  }

  /// `cur_model_output + c * model_output`, where an unset `cur_model_output` is the integer 0.
  private func accumulate(_ current: Tensor?, _ c: Float, _ m: Tensor) -> Tensor {
    guard let current else { return TensorMath.map(m) { 0 + c * $0 } }
    return TensorMath.map(current, m) { a, x in a + c * x }
  }

  private mutating func stepPLMS(_ modelOutput: Tensor, _ timestep: Int, _ sample: Tensor) throws -> Tensor {
    if !skipPRK && ets.count < 3 {
      throw SchedulerError.invalidValue(
        scheduler: Self.className, key: "skip_prk_steps", value: "false",
        reason: "PLMS steps need the 12 PRK warm-up steps first")
    }
    var t = timestep
    var prevTimestep = timestep - stepRatio
    if counter != 1 {
      ets = Array(ets.suffix(3))
      ets.append(modelOutput)
    } else {
      prevTimestep = timestep
      t = timestep + stepRatio
    }

    var x = sample
    let output: Tensor
    if ets.count == 1 && counter == 0 {
      output = modelOutput
      currentSample = sample
    } else if ets.count == 1 && counter == 1 {
      output = TensorMath.map(modelOutput, ets[0]) { m, e in (m + e) / 2 }
      x = currentSample ?? sample
      currentSample = nil
    } else if ets.count == 2 {
      output = TensorMath.map(ets[1], ets[0]) { e1, e2 in (3 * e1 - e2) / 2 }
    } else if ets.count == 3 {
      output = TensorMath.map(ets[2], ets[1], ets[0]) { e1, e2, e3 in
        (23 * e1 - 16 * e2 + 5 * e3) / 12
      }
    } else {
      let c = Float(1.0 / 24.0)
      output = TensorMath.map(ets[3], ets[2], ets[1], ets[0]) { e1, e2, e3, e4 in
        c * (55 * e1 - 59 * e2 + 37 * e3 - 9 * e4)
      }
    }
    let prev = previousSample(x, t, prevTimestep, output)
    counter += 1
    return prev
  }

  /// `_get_prev_sample`: formula (9) of the PNDM paper.
  private func previousSample(_ sample: Tensor, _ t: Int, _ prevT: Int, _ modelOutput: Tensor) -> Tensor {
    let alphaProdT = schedule.alphaCumprod(at: t)
    let alphaProdTPrev = prevT >= 0 ? schedule.alphaCumprod(at: prevT) : finalAlphaCumprod
    let betaProdT = 1 - alphaProdT
    let betaProdTPrev = 1 - alphaProdTPrev
    var eps = modelOutput
    if prediction == .vPrediction {
      let a = alphaProdT.squareRoot()
      let b = betaProdT.squareRoot()
      eps = TensorMath.map(modelOutput, sample) { m, s in a * m + b * s }
    }
    let sampleCoefficient = (alphaProdTPrev / alphaProdT).squareRoot()
    let denominator =
      alphaProdT * betaProdTPrev.squareRoot() + (alphaProdT * betaProdT * alphaProdTPrev).squareRoot()
    let difference = alphaProdTPrev - alphaProdT
    return TensorMath.map(sample, eps) { s, m in
      sampleCoefficient * s - difference * m / denominator
    }
  }

  public func addNoise(original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor {
    try checkStepIndex(stepIndex)
    try TensorMath.checkShapes("PNDMScheduler.addNoise", original, noise)
    return addNoiseAtTimestep(schedule, integerTimesteps[stepIndex], original: original, noise: noise)
  }
}
