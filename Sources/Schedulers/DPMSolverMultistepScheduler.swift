import Foundation
import TensorCore
import TorchRandom

/// DPM-Solver++ multistep (orders 1–3), the "DPM++ 2M" / "DPM++ 2M Karras" samplers.
///
/// matches: diffusers `DPMSolverMultistepScheduler` (0.42.1) with `algorithm_type = "dpmsolver++"`.
/// Config keys (class defaults in brackets): `num_train_timesteps` [1000], `beta_start` [0.0001],
/// `beta_end` [0.02], `beta_schedule` [linear], `trained_betas`, `solver_order` [2; 1–3],
/// `prediction_type` [epsilon; also v_prediction, sample], `algorithm_type` [dpmsolver++; `deis`
/// is mapped to it as diffusers does], `solver_type` [midpoint; also heun; `logrho`/`bh1`/`bh2`
/// map to midpoint], `lower_order_final` [true], `euler_at_final` [false], `use_karras_sigmas`
/// [false], `final_sigmas_type` [zero; also sigma_min], `lambda_min_clipped` [-inf],
/// `timestep_spacing` [linspace], `steps_offset` [0], `rescale_betas_zero_snr` [false].
///
/// Known limitations: `dpmsolver`/`sde-dpmsolver(++)` algorithms, thresholding, learned variance,
/// Lu lambdas and exponential/beta/flow sigmas throw `SchedulerError.unsupportedValue`. Scalar
/// coefficients use libm `log`/`exp` in float32 where torch uses its vectorised versions (last-bit
/// differences).
public struct DPMSolverMultistepScheduler: Scheduler {
  public static let className = "DPMSolverMultistepScheduler"

  public let timesteps: [Float]
  /// The float32 sigmas, one more than `timesteps` (the last is the final sigma).
  public let sigmas: [Float]
  public let initNoiseSigma: Float = 1
  public let order = 1
  public let numInferenceSteps: Int

  private let prediction: SchedulerOption.Prediction
  private let solverOrder: Int
  private let heun: Bool
  private let lowerOrderFinal: Bool
  private let eulerAtFinal: Bool
  private let finalSigmaIsZero: Bool

  // Loop state (diffusers: model_outputs, lower_order_nums).
  private var modelOutputs: [Tensor?]
  private var lowerOrderNums = 0
  private var nextStep: Int?

  public init(config: SchedulerConfig, steps: Int) throws {
    let name = Self.className
    var schedule = try NoiseSchedule(config: config, scheduler: name)
    let n = schedule.count
    try SchedulerOption.steps(steps, trainTimesteps: n)
    try Self.checkUnsupported(config)
    prediction = try SchedulerOption.prediction(
      config, supported: [.epsilon, .vPrediction, .sample], scheduler: name)
    solverOrder = config.solverOrder ?? 2
    guard (1...3).contains(solverOrder) else {
      throw SchedulerError.unsupportedValue(
        scheduler: name, key: "solver_order", value: "\(solverOrder)", supported: ["1", "2", "3"])
    }
    switch config.solverType ?? "midpoint" {
    case "midpoint", "logrho", "bh1", "bh2": heun = false
    case "heun": heun = true
    case let other:
      throw SchedulerError.unsupportedValue(
        scheduler: name, key: "solver_type", value: other, supported: ["midpoint", "heun"])
    }
    lowerOrderFinal = config.lowerOrderFinal ?? true
    eulerAtFinal = config.eulerAtFinal ?? false
    if config.rescaleBetasZeroSnr ?? false {
      schedule.alphasCumprod[n - 1] = Float(1.0 / 16_777_216.0)  // 2**-24
    }
    numInferenceSteps = steps

    let lastTimestep = n - Self.clippedIndex(schedule, lambdaMin: config.lambdaMinClipped ?? -.infinity)
    var times: [Double]
    switch try SchedulerOption.spacing(config, default: .linspace, scheduler: name) {
    case .linspace:
      times = NumericCompat.linspace(0, Double(lastTimestep - 1), steps + 1)
        .map(NumericCompat.round).reversed().dropLast()
    case .leading:
      let ratio = lastTimestep / (steps + 1)
      let offset = config.stepsOffset ?? 0
      times = (0...steps).reversed().dropLast().map { Double($0 * ratio + offset) }
    case .trailing:
      times = NumericCompat.arange(Double(lastTimestep), 0, -(Double(n) / Double(steps)))
        .map { NumericCompat.round($0) - 1 }
    }

    let table = schedule.sigmas
    var sigmas64: [Double]
    if config.useKarrasSigmas ?? false {
      let logSigmas = table.map { Foundation.log($0) }
      sigmas64 = NumericCompat.karrasSigmas(
        sigmaMin: Double(table[0]), sigmaMax: Double(table[n - 1]), count: steps)
      times = sigmas64.map { NumericCompat.sigmaToT($0, logSigmas: logSigmas) }
      if config.betaSchedule != "squaredcos_cap_v2" { times = times.map(NumericCompat.round) }
    } else {
      sigmas64 = EulerSchedule.interpolatedSigmas(times.map { Float($0) }, table: table)
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
    finalSigmaIsZero = (config.finalSigmasType ?? "zero") == "zero"
    sigmas = sigmas64.map { Float($0) } + [last]
    // torch.from_numpy(timesteps).to(torch.int64) truncates toward zero.
    guard times.allSatisfy({ $0.isFinite }), sigmas.allSatisfy({ $0.isFinite }) else {
      throw SchedulerError.invalidValue(
        scheduler: name, key: "num_train_timesteps", value: "\(n)", reason: "the noise schedule gives non-finite sigmas")
    }
    timesteps = times.map { Float(Int64($0)) }
    modelOutputs = Array(repeating: nil, count: solverOrder)
  }

  private static func checkUnsupported(_ config: SchedulerConfig) throws {
    let name = className
    let algorithm = config.algorithmType ?? "dpmsolver++"
    guard algorithm == "dpmsolver++" || algorithm == "deis" else {
      throw SchedulerError.unsupportedValue(
        scheduler: name, key: "algorithm_type", value: algorithm, supported: ["dpmsolver++", "deis"])
    }
    try SchedulerOption.require(config.thresholding, equals: false, key: "thresholding", scheduler: name)
    try SchedulerOption.require(config.useLuLambdas, equals: false, key: "use_lu_lambdas", scheduler: name)
    try SchedulerOption.require(config.useExponentialSigmas, equals: false, key: "use_exponential_sigmas", scheduler: name)
    try SchedulerOption.require(config.useBetaSigmas, equals: false, key: "use_beta_sigmas", scheduler: name)
    try SchedulerOption.require(config.useFlowSigmas, equals: false, key: "use_flow_sigmas", scheduler: name)
    if let variance = config.varianceType {
      throw SchedulerError.unsupportedValue(
        scheduler: name, key: "variance_type", value: variance, supported: ["null"])
    }
  }

  /// `torch.searchsorted(torch.flip(lambda_t, [0]), lambda_min_clipped)`.
  private static func clippedIndex(_ schedule: NoiseSchedule, lambdaMin: Double) -> Int {
    if lambdaMin == -.infinity { return 0 }
    let lambdas = schedule.alphasCumprod.reversed().map { a in
      Foundation.log(a.squareRoot()) - Foundation.log((1 - a).squareRoot())
    }
    let bound = Float(lambdaMin)
    return lambdas.firstIndex { $0 >= bound } ?? lambdas.count
  }

  public func scaleModelInput(_ sample: Tensor, stepIndex: Int) throws -> Tensor {
    try checkStepIndex(stepIndex)
    return sample
  }

  /// `_sigma_to_alpha_sigma_t`: alpha = 1 / (sigma^2 + 1)^0.5, sigma_t = sigma * alpha.
  private func alphaSigma(_ index: Int) -> (alpha: Float, sigma: Float) {
    let s = sigmas[index]
    let alpha = 1 / (s * s + 1).squareRoot()
    return (alpha, s * alpha)
  }

  private func lambda(_ p: (alpha: Float, sigma: Float)) -> Float {
    Foundation.log(p.alpha) - Foundation.log(p.sigma)
  }

  public mutating func step(
    modelOutput: Tensor, stepIndex i: Int, sample: Tensor, generator: inout TorchGenerator
  ) throws -> Tensor {
    try beginStep(i, sample: sample, modelOutput: modelOutput, nextStep: &nextStep)

    let count = timesteps.count
    let useLowerOrderFinal =
      i == count - 1 && (eulerAtFinal || (lowerOrderFinal && count < 15) || finalSigmaIsZero)
    let useLowerOrderSecond = i == count - 2 && lowerOrderFinal && count < 15

    let x0 = convertModelOutput(modelOutput, i, sample)
    for k in 0..<(solverOrder - 1) { modelOutputs[k] = modelOutputs[k + 1] }
    modelOutputs[solverOrder - 1] = x0

    let prev: Tensor
    if solverOrder == 1 || lowerOrderNums < 1 || useLowerOrderFinal {
      prev = firstOrderUpdate(x0, i, sample)
    } else if solverOrder == 2 || lowerOrderNums < 2 || useLowerOrderSecond {
      prev = secondOrderUpdate(i, sample)
    } else {
      prev = thirdOrderUpdate(i, sample)
    }
    if lowerOrderNums < solverOrder { lowerOrderNums += 1 }
    return prev
  }

  /// `convert_model_output` for dpmsolver++: the predicted clean sample x0.
  private func convertModelOutput(_ m: Tensor, _ i: Int, _ sample: Tensor) -> Tensor {
    switch prediction {
    case .epsilon:
      let (a, s) = alphaSigma(i)
      return TensorMath.map(sample, m) { x, e in (x - s * e) / a }
    case .sample:
      return m
    case .vPrediction:
      let (a, s) = alphaSigma(i)
      return TensorMath.map(sample, m) { x, v in a * x - s * v }
    }
  }

  private func firstOrderUpdate(_ x0: Tensor, _ i: Int, _ sample: Tensor) -> Tensor {
    let t = alphaSigma(i + 1)
    let s = alphaSigma(i)
    let h = lambda(t) - lambda(s)
    let ratio = t.sigma / s.sigma
    let c = t.alpha * (Foundation.exp(-h) - 1)
    return TensorMath.map(sample, x0) { x, d in ratio * x - c * d }
  }

  private func secondOrderUpdate(_ i: Int, _ sample: Tensor) -> Tensor {
    let t = alphaSigma(i + 1)
    let s0 = alphaSigma(i)
    let s1 = alphaSigma(i - 1)
    let (lt, ls0, ls1) = (lambda(t), lambda(s0), lambda(s1))
    let h = lt - ls0
    let h0 = ls0 - ls1
    let r0 = h0 / h
    let m0 = modelOutputs[solverOrder - 1]!
    let m1 = modelOutputs[solverOrder - 2]!
    let invR0 = 1 / r0
    let ratio = t.sigma / s0.sigma
    let expm1 = Foundation.exp(-h) - 1
    let c0 = t.alpha * expm1
    if heun {
      let c1 = t.alpha * (expm1 / h + 1)
      return TensorMath.map(sample, m0, m1) { x, a, b in
        let d1 = invR0 * (a - b)
        return ratio * x - c0 * a + c1 * d1
      }
    }
    let c1 = 0.5 * (t.alpha * expm1)
    return TensorMath.map(sample, m0, m1) { x, a, b in
      let d1 = invR0 * (a - b)
      return ratio * x - c0 * a - c1 * d1
    }
  }

  private func thirdOrderUpdate(_ i: Int, _ sample: Tensor) -> Tensor {
    let t = alphaSigma(i + 1)
    let s0 = alphaSigma(i)
    let s1 = alphaSigma(i - 1)
    let s2 = alphaSigma(i - 2)
    let (lt, ls0, ls1, ls2) = (lambda(t), lambda(s0), lambda(s1), lambda(s2))
    let h = lt - ls0
    let h0 = ls0 - ls1
    let h1 = ls1 - ls2
    let r0 = h0 / h
    let r1 = h1 / h
    let m0 = modelOutputs[solverOrder - 1]!
    let m1 = modelOutputs[solverOrder - 2]!
    let m2 = modelOutputs[solverOrder - 3]!
    let (invR0, invR1) = (1 / r0, 1 / r1)
    let w1 = r0 / (r0 + r1)
    let w2 = 1 / (r0 + r1)
    let ratio = t.sigma / s0.sigma
    let expm1 = Foundation.exp(-h) - 1
    let c0 = t.alpha * expm1
    let c1 = t.alpha * (expm1 / h + 1)
    let c2 = t.alpha * ((Foundation.exp(-h) - 1 + h) / (h * h) - 0.5)
    return TensorMath.map(sample, m0, m1, m2) { x, a, b, c in
      let d10 = invR0 * (a - b)
      let d11 = invR1 * (b - c)
      let d1 = d10 + w1 * (d10 - d11)
      let d2 = w2 * (d10 - d11)
      return ratio * x - c0 * a + c1 * d1 - c2 * d2
    }
  }

  /// `alpha_t * original + sigma_t * noise` at `sigmas[stepIndex]`.
  public func addNoise(original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor {
    try checkStepIndex(stepIndex)
    try TensorMath.checkShapes("DPMSolverMultistepScheduler.addNoise", original, noise)
    let (a, s) = alphaSigma(stepIndex)
    return TensorMath.map(original, noise) { x, n in a * x + s * n }
  }
}
