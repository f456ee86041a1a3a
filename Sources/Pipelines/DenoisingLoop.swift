import Foundation
import Models
import Schedulers
import TensorCore
import TorchRandom

/// Progress of a running generation, reported after every denoising step.
public struct StepProgress: Sendable {
  /// Steps finished so far (1-based) and the total of this run.
  public var step: Int
  public var total: Int
  /// Wall time since the first step began.
  public var elapsed: Double
  public var secondsPerStep: Double { step > 0 ? elapsed / Double(step) : 0 }
  public var estimatedRemaining: Double { secondsPerStep * Double(total - step) }
}

/// Called after every step; return `false` to cancel the generation (`PipelineError.cancelled`).
public typealias ProgressHandler = (StepProgress) -> Bool

/// Where the loop is: `index` into the scheduler's timesteps, `position` and `count` within this
/// run (image-to-image starts past 0; windows like ControlNet's start/end use position/count, as
/// diffusers' `controlnet_keep` does over the truncated timesteps).
public struct StepContext: Sendable {
  public var index: Int
  public var position: Int
  public var count: Int
  public var timestep: Float

  /// diffusers' window rule: active unless `position/count < start` or `(position+1)/count > end`.
  public func isInside(start: Double, end: Double) -> Bool {
    !(Double(position) / Double(count) < start || Double(position + 1) / Double(count) > end)
  }
}

/// Things a pipeline adds to the one denoising loop (image prompts, ControlNet, inpainting…).
/// Every method has a neutral default, so an extension implements only what it changes.
public protocol DenoisingExtension: AnyObject {
  /// Adjusts the cross-attention conditioning for step `index` (e.g. switch an image prompt off
  /// outside its step window). Called with the conditioning of the previous extension.
  func conditioning(_ base: CrossAttentionConditioning, step: StepContext) throws -> CrossAttentionConditioning
  /// Residuals added to the UNet's skip connections (ControlNet). `input` is the scaled latent
  /// batch (4 channels, before any extra inpainting channels).
  func controlResiduals(input: Tensor, step: StepContext) throws -> ControlResiduals?
  /// Extra channels concatenated to the (scaled) UNet input, e.g. an inpainting UNet's mask and
  /// masked-image latents.
  func extraInputChannels(for input: Tensor, step: StepContext) throws -> Tensor?
  /// Post-processes the latents after the scheduler step (e.g. inpainting's blending).
  func afterStep(_ latents: Tensor, step: StepContext, scheduler: any Scheduler) throws -> Tensor
}

extension DenoisingExtension {
  public func conditioning(_ base: CrossAttentionConditioning, step: StepContext) throws -> CrossAttentionConditioning { base }
  public func controlResiduals(input: Tensor, step: StepContext) throws -> ControlResiduals? { nil }
  public func extraInputChannels(for input: Tensor, step: StepContext) throws -> Tensor? { nil }
  public func afterStep(_ latents: Tensor, step: StepContext, scheduler: any Scheduler) throws -> Tensor { latents }
}

/// The single denoising loop every pipeline and sampler runs through.
///
/// matches: the loop of diffusers' `StableDiffusionPipeline.__call__` (0.42.1): classifier-free
/// guidance as one batch of 2 (unconditional first), skipped when `guidanceScale <= 1`;
/// `scale_model_input`; `noise_uncond + g·(noise_text − noise_uncond)`; `scheduler.step`.
/// Latents are NHWC `[1, h, w, 4]`; the scheduler draws its noise in torch's NCHW order.
public struct DenoisingLoop {
  public var unet: UNet2DConditionModel
  public var guidanceScale: Float
  /// diffusers' `guidance_rescale` (0 = off; see `rescale`).
  public var guidanceRescale: Float = 0
  public var extensions: [any DenoisingExtension]
  /// Stop with `PipelineError.nonFiniteLatents` (naming `modelName` and the step) as soon as a
  /// step produces NaN or infinity; false lets the run finish (diffusers' behaviour: a black image).
  public var stopOnNonFinite = true
  /// Named in `nonFiniteLatents` errors.
  public var modelName = "the model"
  /// Called after every step with (steps done, steps of this run, the NHWC latents): previews.
  public var afterEachStep: ((Int, Int, Tensor) throws -> Void)?

  public init(unet: UNet2DConditionModel, guidanceScale: Float, extensions: [any DenoisingExtension] = []) {
    self.unet = unet
    self.guidanceScale = guidanceScale
    self.extensions = extensions
  }

  /// Whether the unconditional half of the batch is computed.
  public var usesGuidance: Bool { guidanceScale > 1 }

  /// Runs steps `startIndex..<scheduler.timesteps.count` from `latents`.
  /// - Parameters:
  ///   - initial: the starting latents, NHWC `[1, h, w, 4]`.
  ///   - scheduler: the sampler, advanced step by step.
  ///   - startIndex: the first step (past 0 for image-to-image).
  ///   - endIndex: one past the last step (`denoising_end`); nil runs to the end.
  ///   - conditioning: text (and image-prompt) keys/values; batch 2 with guidance
  ///     (unconditional first), else 1.
  ///   - generator: the noise source of stochastic samplers.
  ///   - progress: called after every step; returning false stops with `PipelineError.cancelled`.
  public func run(
    latents initial: Tensor, scheduler: inout any Scheduler, startIndex: Int = 0, endIndex: Int? = nil,
    conditioning: CrossAttentionConditioning, generator: inout TorchGenerator,
    progress: ProgressHandler? = nil
  ) throws -> Tensor {
    let expectedBatch = usesGuidance ? 2 : 1
    guard conditioning.batch == expectedBatch else {
      throw PipelineError.invalidArgument(
        name: "conditioning", reason: "batch \(conditioning.batch), expected \(expectedBatch)")
    }
    var latents = initial
    let timesteps = scheduler.timesteps
    let end = min(endIndex ?? timesteps.count, timesteps.count)
    guard startIndex < end else {
      throw PipelineError.invalidArgument(name: "steps", reason: "no denoising step between \(startIndex) and \(end)")
    }
    let total = end - startIndex
    let start = Date()
    for index in startIndex..<end {
      try CancellationToken.checkCurrent()
      let step = StepContext(index: index, position: index - startIndex, count: total, timestep: timesteps[index])
      var stepConditioning = conditioning
      for e in extensions { stepConditioning = try e.conditioning(stepConditioning, step: step) }
      let batched = usesGuidance ? try Ops.concatRows([latents, latents]) : latents
      var input = try scheduler.scaleModelInput(batched, stepIndex: index)
      var residuals: ControlResiduals?
      for e in extensions {
        if let r = try e.controlResiduals(input: input, step: step) {
          residuals = try residuals.map { try Self.sum($0, r) } ?? r
        }
      }
      for e in extensions {
        if let extra = try e.extraInputChannels(for: input, step: step) { input = try Ops.concatLast(input, extra) }
      }
      let prediction = try unet(input, timestep: step.timestep, conditioning: stepConditioning, controlResiduals: residuals)
      var noise: Tensor
      if usesGuidance {
        let uncond = prediction.slice(rows: 0..<1)
        let text = prediction.slice(rows: 1..<2)
        noise = try Self.guide(uncond: uncond, text: text, scale: guidanceScale)
        if guidanceRescale > 0 { noise = try Self.rescale(noise, text: text, factor: guidanceRescale) }
      } else {
        noise = prediction
      }
      latents = try scheduler.step(modelOutput: noise, stepIndex: index, sample: latents, generator: &generator)
      for e in extensions { latents = try e.afterStep(latents, step: step, scheduler: scheduler) }
      if stopOnNonFinite, NonFinite.firstIndex(latents) != nil {
        throw PipelineError.nonFiniteLatents(model: modelName, step: index - startIndex + 1, total: total)
      }
      let done = index - startIndex + 1
      if let progress {
        let report = StepProgress(step: done, total: total, elapsed: Date().timeIntervalSince(start))
        if !progress(report) { throw PipelineError.cancelled(afterStep: done) }
      }
      try afterEachStep?(done, total, latents)
    }
    return latents
  }

  /// `uncond + scale · (text − uncond)` in diffusers' operator order.
  static func guide(uncond: Tensor, text: Tensor, scale: Float) throws -> Tensor {
    let diff = try Ops.sub(text, uncond)
    return try Ops.add(uncond, Ops.scale(diff, scale))
  }

  /// `r · cfg · (std(text) / std(cfg)) + (1 − r) · cfg` with unbiased standard deviations over
  /// all elements, accumulated in double as torch does on the CPU.
  ///
  /// matches: diffusers `rescale_noise_cfg` (arXiv 2305.08891 §3.4), batch 1.
  static func rescale(_ cfg: Tensor, text: Tensor, factor: Float) throws -> Tensor {
    func std(_ t: Tensor) -> Float {
      t.asFloat32().withUnsafeFloats { v in
        guard v.count > 1 else { return 0 }
        var mean = 0.0
        for x in v { mean += Double(x) }
        mean /= Double(v.count)
        var sq = 0.0
        for x in v { sq += (Double(x) - mean) * (Double(x) - mean) }
        return Float((sq / Double(v.count - 1)).squareRoot())
      }
    }
    let ratio = std(text) / std(cfg)
    let rescaled = Ops.scale(cfg, ratio)
    return try Ops.add(Ops.scale(rescaled, factor), Ops.scale(cfg, Float(1 - Double(factor))))
  }

  static func sum(_ a: ControlResiduals, _ b: ControlResiduals) throws -> ControlResiduals {
    ControlResiduals(
      down: try zip(a.down, b.down).map { try Ops.add($0, $1) }, mid: try Ops.add(a.mid, b.mid))
  }
}
