import Foundation
import Schedulers

/// The A1111-style "parameters" text stored in every PNG the CLI writes, so that a result can be
/// reproduced (`prompt\nNegative prompt: …\nSteps: …, Sampler: …, CFG scale: …, Seed: …, Size: WxH, Model: …`).
public enum ParametersText {
  public static func describe(
    _ p: GenerationParameters, width: Int, height: Int, model: String, schedulerName: String,
    guidanceScale: Float? = nil, extra: [(String, String)] = []
  ) -> String {
    var lines = [p.prompt]
    if let negative = p.negativePrompt, !negative.isEmpty { lines.append("Negative prompt: \(negative)") }
    var fields: [(String, String)] = [
      ("Steps", "\(p.steps)"), ("Sampler", schedulerName), ("CFG scale", format(guidanceScale ?? p.guidanceScale ?? 7.5)),
      ("Seed", "\(p.seed)"), ("Size", "\(width)x\(height)"), ("Model", model),
    ]
    if p.clipSkip > 0 { fields.append(("Clip skip", "\(p.clipSkip + 1)")) }
    if let eta = p.eta, eta != 0 { fields.append(("Eta", format(eta))) }
    if p.guidanceRescale > 0 { fields.append(("CFG rescale", format(p.guidanceRescale))) }
    if let s = p.prompt2, !s.isEmpty { fields.append(("Prompt 2", quoted(s))) }
    if let s = p.negativePrompt2, !s.isEmpty { fields.append(("Negative prompt 2", quoted(s))) }
    func size(_ s: PixelSize?) -> String? { s.map { "\($0.width)x\($0.height)" } }
    func crop(_ c: CropOffset?) -> String? { c.map { "\($0.top),\($0.left)" } }
    for (name, value) in [
      ("Original size", size(p.originalSize)), ("Target size", size(p.targetSize)), ("Crop top-left", crop(p.cropTopLeft)),
      ("Negative original size", size(p.negativeOriginalSize)), ("Negative target size", size(p.negativeTargetSize)),
      ("Negative crop top-left", crop(p.negativeCropTopLeft)),
    ] {
      if let value { fields.append((name, value)) }
    }
    if let end = p.denoisingEnd { fields.append(("Denoising end", "\(end)")) }
    if let start = p.denoisingStart { fields.append(("Denoising start", "\(start)")) }
    if let a = p.aestheticScore { fields.append(("Aesthetic score", format(a))) }
    if let a = p.negativeAestheticScore { fields.append(("Negative aesthetic score", format(a))) }
    if p.initLatents != nil { fields.append(("Init latents", "given")) }
    if p.latents != nil { fields.append(("Initial latents", "given")) }
    fields += extra
    lines.append(fields.map { "\($0.0): \($0.1)" }.joined(separator: ", "))
    return lines.joined(separator: "\n")
  }

  /// A value that may hold commas, quoted as A1111 quotes such fields.
  static func quoted(_ s: String) -> String {
    "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
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
    case .lcm: "LCM"
    case .tcd: "TCD"
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
    case "LCMScheduler": "LCM"
    case "TCDScheduler": "TCD"
    default: name
    }
  }
}
