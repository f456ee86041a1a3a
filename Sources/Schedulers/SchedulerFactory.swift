import TorchRandom
/// The samplers the engine offers, by CLI name.
///
/// matches: the usual diffusers recipes for swapping a pipeline's scheduler,
/// `X.from_config(pipe.scheduler.config, **overrides)`:
/// - `ddim`: `DDIMScheduler.from_config(config)`
/// - `pndm`: `PNDMScheduler.from_config(config)`
/// - `euler`: `EulerDiscreteScheduler.from_config(config)`
/// - `euler-a`: `EulerAncestralDiscreteScheduler.from_config(config)`
/// - `dpmpp-2m`: `DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++",
///   solver_order=2, use_karras_sigmas=False)`
/// - `dpmpp-2m-karras`: the same with `use_karras_sigmas=True`
/// - `lcm`: `LCMScheduler.from_config(config)` (LCM-LoRA, LCM-distilled models)
/// - `tcd`: `TCDScheduler.from_config(config)` (TCD-LoRA; `eta` from the generation)
public enum SchedulerKind: String, CaseIterable, Sendable {
  case ddim
  case pndm
  case euler
  case eulerAncestral = "euler-a"
  case dpmpp2m = "dpmpp-2m"
  case dpmpp2mKarras = "dpmpp-2m-karras"
  case lcm
  case tcd

  /// Parses a CLI name (`ddim|pndm|euler|euler-a|dpmpp-2m|dpmpp-2m-karras|lcm|tcd`).
  public init(cliName: String) throws {
    guard let kind = SchedulerKind(rawValue: cliName) else {
      throw SchedulerError.unknownScheduler(name: cliName, known: Self.allCases.map(\.rawValue))
    }
    self = kind
  }

  /// The CLI name.
  public var cliName: String { rawValue }

  /// The diffusers class this kind builds.
  public var className: String {
    switch self {
    case .ddim: DDIMScheduler.className
    case .pndm: PNDMScheduler.className
    case .euler: EulerDiscreteScheduler.className
    case .eulerAncestral: EulerAncestralDiscreteScheduler.className
    case .dpmpp2m, .dpmpp2mKarras: DPMSolverMultistepScheduler.className
    case .lcm: LCMScheduler.className
    case .tcd: TCDScheduler.className
    }
  }

  /// `config` with this kind's `from_config` keyword overrides applied.
  public func applyingOverrides(to config: SchedulerConfig) -> SchedulerConfig {
    var c = config
    switch self {
    case .dpmpp2m, .dpmpp2mKarras:
      c.algorithmType = "dpmsolver++"
      c.solverOrder = 2
      c.useKarrasSigmas = self == .dpmpp2mKarras
    case .ddim, .pndm, .euler, .eulerAncestral, .lcm, .tcd:
      break
    }
    return c
  }
}

/// The scheduler classes that `_class_name` may name.
public let implementedSchedulerClasses = [
  DDIMScheduler.className, PNDMScheduler.className, EulerDiscreteScheduler.className,
  EulerAncestralDiscreteScheduler.className, DPMSolverMultistepScheduler.className, LCMScheduler.className,
  TCDScheduler.className,
]

/// A scheduler of `kind` built from a folder's `scheduler_config.json`, set up for `steps`
/// inference steps (`from_config` + `set_timesteps(steps)`). `noiseLayout` is the layout of the
/// latents the loop passes in (only samplers that draw noise use it). `eta` is the pipelines'
/// `eta` argument: TCD's gamma; any other scheduler refuses a non-zero one.
public func makeScheduler(
  kind: SchedulerKind, config: SchedulerConfig, steps: Int, noiseLayout: LatentLayout = .nchw, eta: Float? = nil
) throws -> any Scheduler {
  try makeScheduler(
    className: kind.className, config: kind.applyingOverrides(to: config), steps: steps,
    noiseLayout: noiseLayout, eta: eta)
}

/// The folder's own scheduler: the class named by the config's `_class_name` (SD1.5:
/// `PNDMScheduler`) with all of the config's options.
public func makeScheduler(
  config: SchedulerConfig, steps: Int, noiseLayout: LatentLayout = .nchw, eta: Float? = nil
) throws -> any Scheduler {
  guard let name = config.className else {
    throw SchedulerError.invalidConfigJSON("_class_name is missing; pass a scheduler kind instead")
  }
  return try makeScheduler(className: name, config: config, steps: steps, noiseLayout: noiseLayout, eta: eta)
}

/// A scheduler of the diffusers class `className` (e.g. `"EulerDiscreteScheduler"`).
public func makeScheduler(
  className: String, config: SchedulerConfig, steps: Int, noiseLayout: LatentLayout = .nchw, eta: Float? = nil
) throws -> any Scheduler {
  if let eta, eta != 0, className != TCDScheduler.className {
    throw SchedulerError.unsupportedValue(scheduler: className, key: "eta", value: "\(eta)", supported: ["0 (eta applies to TCDScheduler)"])
  }
  switch className {
  case DDIMScheduler.className:
    return try DDIMScheduler(config: config, steps: steps)
  case PNDMScheduler.className:
    return try PNDMScheduler(config: config, steps: steps)
  case EulerDiscreteScheduler.className:
    return try EulerDiscreteScheduler(config: config, steps: steps)
  case EulerAncestralDiscreteScheduler.className:
    return try EulerAncestralDiscreteScheduler(config: config, steps: steps, noiseLayout: noiseLayout)
  case DPMSolverMultistepScheduler.className:
    return try DPMSolverMultistepScheduler(config: config, steps: steps)
  case LCMScheduler.className:
    return try LCMScheduler(config: config, steps: steps, noiseLayout: noiseLayout)
  case TCDScheduler.className:
    return try TCDScheduler(config: config, steps: steps, eta: eta ?? 0, noiseLayout: noiseLayout)
  default:
    throw SchedulerError.unknownSchedulerClass(name: className, known: implementedSchedulerClasses)
  }
}
