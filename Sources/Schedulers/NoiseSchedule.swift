import Foundation

/// The training noise schedule shared by all schedulers: betas and their cumulative alpha product.
///
/// matches: the `__init__` of diffusers' DDIM/PNDM/Euler/EulerAncestral/DPMSolverMultistep
/// schedulers (0.42.1), computed in float32 as torch does (`torch.linspace`, `torch.cumprod`),
/// including `betas_for_alpha_bar` (cosine, in float64 then rounded) and
/// `rescale_zero_terminal_snr`.
struct NoiseSchedule: Sendable {
  enum BetaSchedule: String, CaseIterable {
    case linear
    case scaledLinear = "scaled_linear"
    case squaredcosCapV2 = "squaredcos_cap_v2"
  }

  let betas: [Float]
  /// `alphas_cumprod`, float32.
  var alphasCumprod: [Float]

  var count: Int { alphasCumprod.count }

  /// Reads the beta keys of `config` with the class defaults of diffusers' schedulers
  /// (`num_train_timesteps` 1000, `beta_start` 0.0001, `beta_end` 0.02, `linear`).
  /// `hasZeroSNROption`: whether the class takes `rescale_betas_zero_snr` (PNDM does not, so
  /// `from_config` drops the key).
  init(config: SchedulerConfig, scheduler: String, hasZeroSNROption: Bool = true) throws {
    try config.checkRanges(scheduler: scheduler)
    let n = config.numTrainTimesteps ?? 1000
    var betas: [Float]
    if let trained = config.trainedBetas {
      guard trained.count == n else {
        throw SchedulerError.invalidValue(
          scheduler: scheduler, key: "trained_betas", value: "\(trained.count) values",
          reason: "needs num_train_timesteps = \(n) values")
      }
      betas = trained.map { Float($0) }
    } else {
      let name = config.betaSchedule ?? "linear"
      guard let schedule = BetaSchedule(rawValue: name) else {
        throw SchedulerError.unsupportedValue(
          scheduler: scheduler, key: "beta_schedule", value: name,
          supported: BetaSchedule.allCases.map(\.rawValue))
      }
      let start = config.betaStart ?? 0.0001
      let end = config.betaEnd ?? 0.02
      switch schedule {
      case .linear:
        betas = NumericCompat.torchLinspace(Float(start), Float(end), n)
      case .scaledLinear:
        betas = NumericCompat.torchLinspace(
          Float(Foundation.pow(start, 0.5)), Float(Foundation.pow(end, 0.5)), n
        ).map { $0 * $0 }
      case .squaredcosCapV2:
        betas = Self.cosineBetas(n)
      }
    }
    // A product that underflows to 0 (or a beta table that is not a probability) makes every
    // sigma infinite: refuse it here, naming the keys, rather than produce NaN timesteps.
    let plain = NumericCompat.torchCumprod(betas.map { 1 - $0 })
    if let last = plain.last, !(last > 0 && last.isFinite) {
      let k = plain.firstIndex { !($0 > 0 && $0.isFinite) } ?? plain.count - 1
      throw SchedulerError.invalidValue(
        scheduler: scheduler, key: "num_train_timesteps", value: "\(n)",
        reason: "with these betas alphas_cumprod reaches \(plain[k]) at step \(k) (the noise schedule runs out)")
    }
    if hasZeroSNROption && (config.rescaleBetasZeroSnr ?? false) {
      betas = Self.rescaleZeroTerminalSNR(betas)
    }
    self.betas = betas
    alphasCumprod = NumericCompat.torchCumprod(betas.map { 1 - $0 })
  }

  /// `betas_for_alpha_bar(n)` with the cosine transform, max beta 0.999.
  static func cosineBetas(_ n: Int) -> [Float] {
    func alphaBar(_ t: Double) -> Double {
      let c = Foundation.cos((t + 0.008) / 1.008 * Double.pi / 2)
      return c * c
    }
    return (0..<n).map { i in
      let t1 = Double(i) / Double(n)
      let t2 = Double(i + 1) / Double(n)
      return Float(Swift.min(1 - alphaBar(t2) / alphaBar(t1), 0.999))
    }
  }

  /// `rescale_zero_terminal_snr`: shifts and scales sqrt(alphas_cumprod) so the last is zero.
  static func rescaleZeroTerminalSNR(_ betas: [Float]) -> [Float] {
    let cumprod = NumericCompat.torchCumprod(betas.map { 1 - $0 })
    var root = cumprod.map { $0.squareRoot() }
    let first = root[0]
    let last = root[root.count - 1]
    let scale = first / (first - last)
    root = root.map { ($0 - last) * scale }
    let bar = root.map { $0 * $0 }
    var alphas = [bar[0]]
    for i in 1..<bar.count { alphas.append(bar[i] / bar[i - 1]) }
    return alphas.map { 1 - $0 }
  }

  /// `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5`, float32 (Euler/DPM sigma table, ascending).
  var sigmas: [Float] {
    alphasCumprod.map { ((1 - $0) / $0).squareRoot() }
  }

  /// `alphas_cumprod[t]` with Python indexing (diffusers can ask for `[-1]`, the last entry).
  func alphaCumprod(at t: Int) -> Float {
    alphasCumprod[NumericCompat.pythonIndex(t, count: count)]
  }
}
