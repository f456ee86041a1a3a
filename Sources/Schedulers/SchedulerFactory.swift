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
public enum SchedulerKind: String, CaseIterable, Sendable {
  case ddim
  case pndm
  case euler
  case eulerAncestral = "euler-a"
  case dpmpp2m = "dpmpp-2m"
  case dpmpp2mKarras = "dpmpp-2m-karras"

  /// Parses a CLI name (`ddim|pndm|euler|euler-a|dpmpp-2m|dpmpp-2m-karras`).
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
    case .ddim, .pndm, .euler, .eulerAncestral:
      break
    }
    return c
  }
}

/// The scheduler classes that `_class_name` may name.
public let implementedSchedulerClasses = [
  DDIMScheduler.className, PNDMScheduler.className, EulerDiscreteScheduler.className,
  EulerAncestralDiscreteScheduler.className, DPMSolverMultistepScheduler.className,
]

/// A scheduler of `kind` built from a folder's `scheduler_config.json`, set up for `steps`
/// inference steps (`from_config` + `set_timesteps(steps)`). `noiseLayout` is the layout of the
/// latents the loop passes in (only ancestral samplers draw noise).
public func makeScheduler(
  kind: SchedulerKind, config: SchedulerConfig, steps: Int, noiseLayout: LatentLayout = .nchw
) throws -> any Scheduler {
  try makeScheduler(
    className: kind.className, config: kind.applyingOverrides(to: config), steps: steps,
    noiseLayout: noiseLayout)
}

/// The folder's own scheduler: the class named by the config's `_class_name` (SD1.5:
/// `PNDMScheduler`) with all of the config's options.
public func makeScheduler(
  config: SchedulerConfig, steps: Int, noiseLayout: LatentLayout = .nchw
) throws -> any Scheduler {
  guard let name = config.className else {
    throw SchedulerError.invalidConfigJSON("_class_name is missing; pass a scheduler kind instead")
  }
  return try makeScheduler(className: name, config: config, steps: steps, noiseLayout: noiseLayout)
}

/// A scheduler of the diffusers class `className` (e.g. `"EulerDiscreteScheduler"`).
public func makeScheduler(
  className: String, config: SchedulerConfig, steps: Int, noiseLayout: LatentLayout = .nchw
) throws -> any Scheduler {
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
  default:
    throw SchedulerError.unknownSchedulerClass(name: className, known: implementedSchedulerClasses)
  }
}
