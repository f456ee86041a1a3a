import Foundation
import Schedulers

/// The A1111-style "parameters" text stored in every PNG the CLI writes, so that a result can be
/// reproduced (`prompt\nNegative prompt: …\nSteps: …, Sampler: …, CFG scale: …, Seed: …, Size: WxH, Model: …`).
public enum ParametersText {
  public static func describe(
    _ p: GenerationParameters, width: Int, height: Int, model: String, schedulerName: String,
    extra: [(String, String)] = []
  ) -> String {
    var lines = [p.prompt]
    if !p.negativePrompt.isEmpty { lines.append("Negative prompt: \(p.negativePrompt)") }
    var fields: [(String, String)] = [
      ("Steps", "\(p.steps)"), ("Sampler", schedulerName), ("CFG scale", format(p.guidanceScale)),
      ("Seed", "\(p.seed)"), ("Size", "\(width)x\(height)"), ("Model", model),
    ]
    if p.clipSkip > 0 { fields.append(("Clip skip", "\(p.clipSkip + 1)")) }
    if p.latents != nil { fields.append(("Initial latents", "given")) }
    fields += extra
    lines.append(fields.map { "\($0.0): \($0.1)" }.joined(separator: ", "))
    return lines.joined(separator: "\n")
  }

  static func format(_ x: Float) -> String {
    x == x.rounded() ? String(format: "%.1f", x) : "\(x)"
  }
}

extension SchedulerKind {
  /// The sampler's name as A1111 writes it.
  public var displayName: String {
    switch self {
    case .ddim: "DDIM"
    case .pndm: "PLMS"
    case .euler: "Euler"
    case .eulerAncestral: "Euler a"
    case .dpmpp2m: "DPM++ 2M"
    case .dpmpp2mKarras: "DPM++ 2M Karras"
    }
  }

  /// Display name for a diffusers scheduler class (the folder's default sampler).
  public static func displayName(forClass name: String) -> String {
    switch name {
    case "PNDMScheduler": "PLMS"
    case "DDIMScheduler": "DDIM"
    case "EulerDiscreteScheduler": "Euler"
    case "EulerAncestralDiscreteScheduler": "Euler a"
    case "DPMSolverMultistepScheduler": "DPM++ 2M"
    default: name
    }
  }
}
