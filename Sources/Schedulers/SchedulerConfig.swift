import Foundation

/// The contents of a diffusers `scheduler_config.json`, every key optional.
///
/// matches: diffusers `ConfigMixin.from_config` (0.42.1) as the scheduler classes use it. A key that
/// is absent (or `null`) takes the default of the class that is being built, not of the class named
/// in `_class_name`: `EulerDiscreteScheduler.from_config(<SD1.5 PNDM config>)` runs with Euler's
/// own `timestep_spacing = "linspace"`. Keys a class does not take are ignored by that class (as
/// `from_config` drops them), so one config can build every scheduler. Unknown keys are ignored.
///
/// Known limitations: an explicit JSON `null` is treated like an absent key (diffusers would pass
/// `None` to the constructor, which only matters for keys whose default is not `None`).
public struct SchedulerConfig: Codable, Sendable, Equatable {
  /// `_class_name`: the diffusers class the folder was saved with (SD1.5: `PNDMScheduler`).
  public var className: String?
  public var numTrainTimesteps: Int?
  public var betaStart: Double?
  public var betaEnd: Double?
  /// `linear`, `scaled_linear` or `squaredcos_cap_v2`.
  public var betaSchedule: String?
  public var trainedBetas: [Double]?
  /// `epsilon`, `v_prediction` or `sample` (which classes accept which: see each scheduler).
  public var predictionType: String?
  /// `leading`, `trailing` or `linspace`.
  public var timestepSpacing: String?
  public var stepsOffset: Int?
  public var setAlphaToOne: Bool?
  public var clipSample: Bool?
  public var clipSampleRange: Double?
  public var thresholding: Bool?
  public var skipPrkSteps: Bool?
  public var rescaleBetasZeroSnr: Bool?
  // Euler / DPM-Solver sigma options.
  public var useKarrasSigmas: Bool?
  public var useExponentialSigmas: Bool?
  public var useBetaSigmas: Bool?
  public var useLuLambdas: Bool?
  public var useFlowSigmas: Bool?
  public var sigmaMin: Double?
  public var sigmaMax: Double?
  public var interpolationType: String?
  public var timestepType: String?
  public var finalSigmasType: String?
  // DPM-Solver options.
  public var solverOrder: Int?
  public var algorithmType: String?
  public var solverType: String?
  public var lowerOrderFinal: Bool?
  public var eulerAtFinal: Bool?
  public var lambdaMinClipped: Double?
  public var varianceType: String?
  public var useDynamicShifting: Bool?
  // LCMScheduler / TCDScheduler
  public var originalInferenceSteps: Int?
  public var timestepScaling: Double?

  public init() {}

  enum CodingKeys: String, CodingKey {
    case className = "_class_name"
    case numTrainTimesteps = "num_train_timesteps"
    case betaStart = "beta_start"
    case betaEnd = "beta_end"
    case betaSchedule = "beta_schedule"
    case trainedBetas = "trained_betas"
    case predictionType = "prediction_type"
    case timestepSpacing = "timestep_spacing"
    case stepsOffset = "steps_offset"
    case setAlphaToOne = "set_alpha_to_one"
    case clipSample = "clip_sample"
    case clipSampleRange = "clip_sample_range"
    case thresholding
    case skipPrkSteps = "skip_prk_steps"
    case rescaleBetasZeroSnr = "rescale_betas_zero_snr"
    case useKarrasSigmas = "use_karras_sigmas"
    case useExponentialSigmas = "use_exponential_sigmas"
    case useBetaSigmas = "use_beta_sigmas"
    case useLuLambdas = "use_lu_lambdas"
    case useFlowSigmas = "use_flow_sigmas"
    case sigmaMin = "sigma_min"
    case sigmaMax = "sigma_max"
    case interpolationType = "interpolation_type"
    case timestepType = "timestep_type"
    case finalSigmasType = "final_sigmas_type"
    case solverOrder = "solver_order"
    case algorithmType = "algorithm_type"
    case solverType = "solver_type"
    case lowerOrderFinal = "lower_order_final"
    case eulerAtFinal = "euler_at_final"
    case lambdaMinClipped = "lambda_min_clipped"
    case varianceType = "variance_type"
    case useDynamicShifting = "use_dynamic_shifting"
    case originalInferenceSteps = "original_inference_steps"
    case timestepScaling = "timestep_scaling"
  }

  /// Decodes `scheduler_config.json` text. Accepts Python's `Infinity`/`NaN` literals (as written by
  /// `json.dump`, e.g. `"lambda_min_clipped": -Infinity`).
  ///
  /// The literals are turned into strings and decoded with the standard (non-JSON5) decoder's
  /// non-conforming-float strategy: Foundation's JSON5 reader traps on some malformed input (e.g.
  /// bytes that are not UTF-8), and a config file is untrusted input.
  public init(jsonData: Data) throws {
    let decoder = JSONDecoder()
    decoder.nonConformingFloatDecodingStrategy = .convertFromString(
      positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    do {
      self = try decoder.decode(SchedulerConfig.self, from: Self.quotingPythonFloatLiterals(jsonData))
    } catch let error as DecodingError {
      throw SchedulerError.invalidConfigJSON(Self.describe(error))
    }
  }

  /// `Infinity`, `-Infinity` and `NaN` outside strings (what Python's `json.dump` writes for those
  /// floats) become the strings `"Infinity"`, `"-Infinity"` and `"NaN"`; everything else is copied.
  static func quotingPythonFloatLiterals(_ data: Data) -> Data {
    let bytes = [UInt8](data)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count + 16)
    var inString = false
    var escaped = false
    var i = 0
    let literals: [[UInt8]] = [Array("-Infinity".utf8), Array("Infinity".utf8), Array("NaN".utf8)]
    while i < bytes.count {
      let b = bytes[i]
      if inString {
        if escaped { escaped = false } else if b == 0x5C { escaped = true } else if b == 0x22 { inString = false }
        out.append(b)
        i += 1
        continue
      }
      if b == 0x22 {
        inString = true
      } else if let literal = literals.first(where: { bytes[i...].starts(with: $0) }) {
        out.append(0x22)
        out.append(contentsOf: literal)
        out.append(0x22)
        i += literal.count
        continue
      }
      out.append(b)
      i += 1
    }
    return Data(out)
  }

  /// Reads and decodes a `scheduler_config.json` file.
  public init(contentsOf url: URL) throws {
    let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? 0
    guard size <= 16 << 20 else {
      throw SchedulerError.invalidConfigJSON("\(url.path): \(size) bytes, more than the 16 MiB a config may have")
    }
    let data: Data
    do {
      data = try Data(contentsOf: url)
    } catch {
      throw SchedulerError.invalidConfigJSON("\(url.path): \(error.localizedDescription)")
    }
    try self.init(jsonData: data)
  }

  /// The SD1.5 scheduler config (`runwayml/stable-diffusion-v1-5/scheduler/scheduler_config.json`).
  public static let stableDiffusion15: SchedulerConfig = {
    var c = SchedulerConfig()
    c.className = "PNDMScheduler"
    c.betaStart = 0.00085
    c.betaEnd = 0.012
    c.betaSchedule = "scaled_linear"
    c.numTrainTimesteps = 1000
    c.setAlphaToOne = false
    c.skipPrkSteps = true
    c.stepsOffset = 1
    c.clipSample = false
    return c
  }()

  /// The config as diffusers' Stable Diffusion pipelines patch it when a scheduler is passed to
  /// their constructor (`from_pretrained(..., scheduler=...)`): `steps_offset` forced to 1 and
  /// `clip_sample` forced to false (the pipeline checks the scheduler's resolved config, so an
  /// absent `steps_offset` also becomes 1). Not applied when a scheduler is assigned afterwards
  /// (`pipe.scheduler = X.from_config(...)`), which is the usual way of switching samplers.
  public func applyingPipelineFixups() -> SchedulerConfig {
    var c = self
    c.stepsOffset = 1
    c.clipSample = false
    return c
  }

  /// Most training timesteps accepted (diffusers' schedulers are trained with 1000; the tables
  /// this many entries size are a few megabytes).
  public static let maximumTrainTimesteps = 1_000_000

  /// Checks every number of the config against the range the schedulers can use, before any table
  /// is sized or indexed by it: `num_train_timesteps` in 2…1,000,000, `steps_offset` in
  /// 0..<`num_train_timesteps`, betas finite in [0, 1), `clip_sample_range` finite and positive,
  /// sigmas finite and non-negative, `solver_order` 1…3, `lambda_min_clipped` not NaN.
  /// Every scheduler calls it (through its noise schedule); `scheduler` names the class in errors.
  public func checkRanges(scheduler: String) throws(SchedulerError) {
    func fail(_ key: String, _ value: Any, _ reason: String) -> SchedulerError {
      .invalidValue(scheduler: scheduler, key: key, value: "\(value)", reason: reason)
    }
    let n = numTrainTimesteps ?? 1000
    guard (2...Self.maximumTrainTimesteps).contains(n) else {
      throw fail("num_train_timesteps", n, "must be in 2…\(Self.maximumTrainTimesteps)")
    }
    if let stepsOffset, !(0..<n).contains(stepsOffset) {
      throw fail("steps_offset", stepsOffset, "must be in 0..<\(n) (num_train_timesteps)")
    }
    for (key, beta) in [("beta_start", betaStart), ("beta_end", betaEnd)] {
      if let beta, !(beta.isFinite && beta >= 0 && beta < 1) { throw fail(key, beta, "must be in [0, 1)") }
    }
    if let trainedBetas, let i = trainedBetas.firstIndex(where: { !($0.isFinite && $0 >= 0 && $0 < 1) }) {
      throw fail("trained_betas[\(i)]", trainedBetas[i], "must be in [0, 1)")
    }
    if let clipSampleRange, !(clipSampleRange.isFinite && clipSampleRange > 0) {
      throw fail("clip_sample_range", clipSampleRange, "must be a finite number above 0")
    }
    for (key, sigma) in [("sigma_min", sigmaMin), ("sigma_max", sigmaMax)] {
      if let sigma, !(sigma.isFinite && sigma >= 0) { throw fail(key, sigma, "must be a finite number ≥ 0") }
    }
    if let solverOrder, !(1...3).contains(solverOrder) { throw fail("solver_order", solverOrder, "must be 1, 2 or 3") }
    if let lambdaMinClipped, lambdaMinClipped.isNaN { throw fail("lambda_min_clipped", lambdaMinClipped, "must be a number") }
    if let originalInferenceSteps, !(1...n).contains(originalInferenceSteps) {
      throw fail("original_inference_steps", originalInferenceSteps, "must be in 1…\(n) (num_train_timesteps)")
    }
    if let timestepScaling, !(timestepScaling.isFinite && timestepScaling > 0 && timestepScaling <= 1e6) {
      throw fail("timestep_scaling", timestepScaling, "must be a finite number in (0, 1e6]")
    }
  }

  private static func describe(_ error: DecodingError) -> String {
    switch error {
    case .typeMismatch(let type, let context):
      "key \(path(context)): expected \(type) (\(context.debugDescription))"
    case .valueNotFound(let type, let context):
      "key \(path(context)): missing \(type)"
    case .keyNotFound(let key, _):
      "missing key \(key.stringValue)"
    case .dataCorrupted(let context):
      "malformed JSON at \(path(context)): \(context.debugDescription)"
    @unknown default:
      "\(error)"
    }
  }

  private static func path(_ context: DecodingError.Context) -> String {
    let p = context.codingPath.map(\.stringValue).joined(separator: ".")
    return p.isEmpty ? "<root>" : p
  }
}
