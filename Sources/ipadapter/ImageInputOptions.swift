import ArgumentParser
import Foundation
import Hub
import Imaging
import NN
import Models
import Pipelines

/// Image-to-image and inpainting flags of `generate`.
struct InitImageOptions: ParsableArguments {
  @Option(help: "Start from this image (image-to-image); the output size defaults to its size rounded down to a multiple of 8 (with --width/--height it is resized with Pillow's LANCZOS filter).")
  var initImage: String?

  @Option(help: "How much of the schedule to run from the init image, in (0, 1] (default 0.8, SDXL 0.3; with --mask 1.0, SDXL 0.9999, as diffusers).")
  var strength: Double?

  @Option(help: "Inpainting mask (white = repaint), with --init-image; resized to the output size if needed, binarised at 50 %.")
  var mask: String?

  @Option(help: "Gaussian blur of the mask in pixels before it is binarised (diffusers' mask_processor.blur; default 0 = none).")
  var maskBlur: Double?

  func validate() throws {
    if let initImage, !FileManager.default.fileExists(atPath: initImage) {
      throw CLIError.invalid("--init-image", "file not found: \(initImage)")
    }
    if let mask {
      guard initImage != nil else { throw CLIError.invalid("--mask", "needs --init-image") }
      guard FileManager.default.fileExists(atPath: mask) else { throw CLIError.invalid("--mask", "file not found: \(mask)") }
    }
    if let maskBlur {
      guard mask != nil else { throw CLIError.invalid("--mask-blur", "needs --mask") }
      guard maskBlur.isFinite, maskBlur >= 0 else { throw CLIError.invalid("--mask-blur", "\(maskBlur) must be ≥ 0") }
    }
    if let strength {
      guard initImage != nil else { throw CLIError.invalid("--strength", "needs --init-image") }
      guard strength > 0, strength <= 1 else { throw CLIError.invalid("--strength", "\(strength) must be in (0, 1]") }
    }
  }

  /// Fills the init image, mask and strength; returns warnings to print (mask resized).
  func apply(to p: inout GenerationParameters, limits: ImageLimits = .default) throws -> [String] {
    var warnings: [String] = []
    guard let initImage else { return [] }
    let image = try Image(contentsOfFile: initImage, limits: limits)
    p.initImage = image
    p.strength = strength
    if let mask {
      let m = try Image(contentsOfFile: mask, limits: limits)
      if m.width != image.width || m.height != image.height {
        warnings.append(
          "warning: --mask is \(m.width)×\(m.height) but --init-image is \(image.width)×\(image.height); the mask is resized to the output size")
      }
      p.mask = m
      p.maskBlur = maskBlur ?? 0
    }
    return warnings
  }
}

/// ControlNet flags of `generate` (repeatable: the i-th --control-image/--control-scale belongs
/// to the i-th --controlnet; one value applies to all).
struct ControlNetOptions: ParsableArguments {
  @Option(help: "A diffusers ControlNet folder (config.json + weights); repeat for several.")
  var controlnet: [String] = []

  @Option(help: "The control image (hint) of each --controlnet, in order.")
  var controlImage: [String] = []

  @Option(help: "controlnet_conditioning_scale: one for all or one per --controlnet (default 1.0).")
  var controlScale: [Float] = []

  @Option(help: "Turn the control image into a hint first: 'none' or 'canny' (one for all or one per --controlnet).")
  var controlPreprocess: [ControlPreprocessChoice] = []

  @Option(help: "Canny lower threshold (OpenCV semantics).")
  var cannyLow: Double = 100

  @Option(help: "Canny upper threshold (OpenCV semantics).")
  var cannyHigh: Double = 200

  @Option(help: "Fraction of the steps after which ControlNets start (control_guidance_start).")
  var controlStart: Double = 0

  @Option(help: "Fraction of the steps after which ControlNets stop (control_guidance_end).")
  var controlEnd: Double = 1

  @Flag(help: "ControlNet guess mode: it sees only the conditional half, residuals scaled 0.1→1 by depth.")
  var guessMode = false

  func validate() throws {
    if controlnet.isEmpty {
      if !controlImage.isEmpty { throw CLIError.invalid("--control-image", "needs --controlnet") }
      return
    }
    guard controlImage.count == controlnet.count else {
      throw CLIError.invalid("--control-image", "give one per --controlnet (\(controlnet.count)), got \(controlImage.count)")
    }
    for f in controlImage where !FileManager.default.fileExists(atPath: f) {
      throw CLIError.invalid("--control-image", "file not found: \(f)")
    }
    for d in controlnet where !((try? HubReference.parse(d))?.isRemote ?? false) && !FileManager.default.fileExists(atPath: d) {
      throw CLIError.invalid("--controlnet", "folder not found: \(d)")
    }
    _ = try ImagePromptOptions.perAdapter(controlScale, count: controlnet.count, option: "--control-scale")
    _ = try ImagePromptOptions.perAdapter(controlPreprocess, count: controlnet.count, option: "--control-preprocess")
    guard controlStart >= 0, controlEnd <= 1, controlStart < controlEnd else {
      throw CLIError.invalid("--control-start/--control-end", "need 0 ≤ start < end ≤ 1, got \(controlStart) and \(controlEnd)")
    }
    guard cannyLow >= 0, cannyHigh >= cannyLow else {
      throw CLIError.invalid("--canny-low/--canny-high", "need 0 ≤ low ≤ high, got \(cannyLow) and \(cannyHigh)")
    }
  }

  /// The library's description of the ControlNets (control images read).
  func specs(limits: LimitOptions = LimitOptions()) throws -> [ControlNetSpec] {
    try validate()
    let scales = try ImagePromptOptions.perAdapter(controlScale, count: controlnet.count, option: "--control-scale")
    let preprocess = try ImagePromptOptions.perAdapter(controlPreprocess, count: controlnet.count, option: "--control-preprocess")
    return try controlnet.enumerated().map { i, model in
      var spec = ControlNetSpec(
        model: try HubReference.parse(model), image: try Image(contentsOfFile: controlImage[i], limits: limits.limits),
        scale: scales[i] ?? 1)
      if preprocess[i] == .canny { spec.preprocess = .canny(low: cannyLow, high: cannyHigh) }
      spec.guessMode = guessMode
      spec.start = controlStart
      spec.end = controlEnd
      return spec
    }
  }
}
