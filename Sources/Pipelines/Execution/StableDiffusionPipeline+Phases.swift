import Foundation
import IPAdapter
import Imaging
import TensorCore

/// Encoded text prompts, reusable across generations that share the prompt, negative prompt,
/// `clipSkip` and guidance (e.g. many seeds): pass it as `conditioning:` to skip the text encoder.
///
/// matches: the `prompt_embeds`/`negative_prompt_embeds` of diffusers' `encode_prompt`, stacked
/// `[negative, prompt]` when guided (`[B, 77, hidden]`, B = 2 or 1); for SDXL also the
/// `pooled_prompt_embeds`/`negative_pooled_prompt_embeds`.
public struct TextConditioning: Sendable {
  /// `[2, tokens, hidden]` (unconditional first) with guidance, else `[1, tokens, hidden]`.
  public let embeddings: Tensor
  /// SDXL: the second encoder's projected pooled output, `[B, projection_dim]` (nil otherwise).
  public let pooled: Tensor?
  public let prompt: String
  public let negativePrompt: String?
  public let prompt2: String?
  public let negativePrompt2: String?
  public let clipSkip: Int
  /// Whether the unconditional half is present (guidance scale > 1).
  public let guided: Bool
  /// The tokenizer's truncation warnings.
  public let warnings: [String]

  /// Refuses use with a generation it was not encoded for.
  func check(against p: GenerationParameters, guidanceScale: Float) throws {
    let guided = guidanceScale > 1
    var mismatches: [String] = []
    if p.prompt != prompt { mismatches.append("prompt") }
    if guided, p.negativePrompt != negativePrompt { mismatches.append("negativePrompt") }
    if p.prompt2 != prompt2 { mismatches.append("prompt2") }
    if guided, p.negativePrompt2 != negativePrompt2 { mismatches.append("negativePrompt2") }
    if p.clipSkip != clipSkip { mismatches.append("clipSkip") }
    if guided != self.guided { mismatches.append("guidance (\(self.guided ? "encoded with" : "encoded without") the unconditional half)") }
    guard mismatches.isEmpty else {
      throw PipelineError.invalidArgument(
        name: "conditioning",
        reason: "it was encoded for other parameters (\(mismatches.joined(separator: ", ")) differ); encode it with encodeText(for:) from these parameters")
    }
  }
}

extension StableDiffusionPipeline {
  func encodeTextNow(_ p: GenerationParameters) throws -> TextConditioning {
    let guided = guidanceScale(for: p) > 1
    let embeddings: Tensor
    var pooled: Tensor?
    let warnings: [String]
    if let xl = sdxl {
      (embeddings, pooled, warnings) = try encodeSDXLPrompts(
        xl, prompt: p.prompt, prompt2: p.prompt2, negativePrompt: p.negativePrompt, negativePrompt2: p.negativePrompt2,
        guidance: guided, clipSkip: p.clipSkip)
    } else {
      (embeddings, warnings) = try encodePrompts(
        prompt: p.prompt, negativePrompt: p.negativePrompt ?? "", guidance: guided, clipSkip: p.clipSkip)
    }
    return TextConditioning(
      embeddings: embeddings, pooled: pooled, prompt: p.prompt, negativePrompt: p.negativePrompt, prompt2: p.prompt2,
      negativePrompt2: p.negativePrompt2, clipSkip: p.clipSkip, guided: guided, warnings: warnings)
  }

  // MARK: - synchronous phases (wait for the pipeline's queue on the calling thread)

  /// Encodes the text prompts of `parameters` (phase 1 of a generation), for reuse across
  /// generations with the same prompts.
  public func encodeText(for parameters: GenerationParameters) throws -> TextConditioning {
    try compute.sync { try encodeTextNow(parameters) }
  }

  /// Generates one image from text and, optionally, image prompts (IP-Adapter), an init image
  /// (image-to-image) with a mask (inpainting), and ControlNets. Blocks the calling thread; the
  /// pipeline runs one call at a time (see `ComputeQueue`).
  /// - Parameters:
  ///   - parameters: what to generate.
  ///   - conditioning: the text encoded before with `encodeText(for:)` (must match `parameters`).
  ///   - imagePrompts: adapters with their projected tokens and scales; their keys/values are
  ///     computed once here and attended to at every step. Build them once (`ImagePromptBuilder`)
  ///     to reuse the image encoding across generations.
  ///   - controlNets: structure control; each ControlNet sees the text tokens only.
  ///   - extensions: further per-step additions to the denoising loop.
  ///   - options: memory policy (previews are for the async calls).
  ///   - progress: after every step; returning false stops with `PipelineError.cancelled`.
  public func generate(
    _ parameters: GenerationParameters, conditioning: TextConditioning? = nil, imagePrompts: [ImagePrompt] = [],
    controlNets: [ControlNetUnit] = [], extensions: [any DenoisingExtension] = [],
    options: GenerationOptions = GenerationOptions(), progress: ProgressHandler? = nil
  ) throws -> GenerationResult {
    try compute.sync {
      try generateNow(
        parameters, conditioning: conditioning, imagePrompts: imagePrompts, controlNets: controlNets,
        extensions: extensions, options: options, progress: progress, preview: nil)
    }
  }

  /// Denoises without decoding (phases 1–2): the final latents, NCHW `[1, 4, H/8, W/8]`, for
  /// `decode(_:)` later or elsewhere.
  public func denoise(
    _ parameters: GenerationParameters, conditioning: TextConditioning? = nil, imagePrompts: [ImagePrompt] = [],
    controlNets: [ControlNetUnit] = [], options: GenerationOptions = GenerationOptions(), progress: ProgressHandler? = nil
  ) throws -> Tensor {
    try compute.sync {
      try validate(parameters)
      let (width, height) = try resolveSize(parameters)
      let text = try conditioning.map { c in try c.check(against: parameters, guidanceScale: guidanceScale(for: parameters)); return c }
        ?? encodeTextNow(parameters)
      let latents = try denoiseNow(
        parameters, text: text, width: width, height: height, imagePrompts: imagePrompts, controlNets: controlNets,
        extensions: [], options: options, progress: progress, preview: nil)
      return try Ops.nhwcToNchw(latents.nhwc)
    }
  }

  /// VAE-decodes latents NCHW `[1, 4, h, w]` (as `GenerationResult.latents` or `denoise`
  /// return them) into an 8-bit RGB image (phase 3).
  ///
  /// matches: diffusers `vae.decode(latents / scaling_factor)` then `VaeImageProcessor.postprocess`
  /// (after `enable_vae_tiling()` as `vaeTiling` says).
  public func decode(_ latents: Tensor, vaeTiling: VAETilingMode = .off) throws -> Image {
    try checkLatents(latents)
    return try compute.sync { try decodeNHWC(try Ops.nchwToNhwc(latents), tiling: vaeTiling) }
  }

  func checkLatents(_ latents: Tensor) throws {
    let c = vae.config.latentChannels
    guard latents.rank == 4, latents.shape[0] == 1, latents.shape[1] == c, latents.shape[2] > 0, latents.shape[3] > 0
    else {
      throw PipelineError.invalidArgument(name: "latents", reason: "must be NCHW [1, \(c), h, w], got \(latents.shape)")
    }
  }

  // MARK: - async phases (queued on the pipeline, cancellable)

  /// `encodeText(for:)` without blocking a thread; honours task cancellation between encoder layers.
  public func encodeText(for parameters: GenerationParameters) async throws -> TextConditioning {
    try await compute.run { try self.encodeTextNow(parameters) }
  }

  /// Generates one image without blocking a thread. Cancelling the calling task stops the work at
  /// its next checkpoint (every denoising step, encoder layer and VAE block) with
  /// `CancellationError`; nothing is returned then.
  /// - Parameters:
  ///   - parameters: what to generate.
  ///   - conditioning: text encoded before with `encodeText(for:)` (must match `parameters`).
  ///   - imagePrompts: prepared image prompts (`ImagePromptBuilder`).
  ///   - controlNets: loaded ControlNets.
  ///   - options: memory policy and previews.
  ///   - events: called on the compute thread, in order: `.step` after every step and `.preview`
  ///     when `options.previewEvery` asks for one (never `.finished`: that is the return value).
  public func generate(
    _ parameters: GenerationParameters, conditioning: TextConditioning? = nil, imagePrompts: [ImagePrompt] = [],
    controlNets: [ControlNetUnit] = [], options: GenerationOptions = GenerationOptions(),
    events: (@Sendable (GenerationEvent) -> Void)? = nil
  ) async throws -> GenerationResult {
    try await compute.run {
      try self.generateNow(
        parameters, conditioning: conditioning, imagePrompts: imagePrompts, controlNets: controlNets, extensions: [],
        options: options, progress: events.map { sink in { sink(.step($0)); return true } },
        preview: events.map { sink in { sink(.preview($0)) } })
    }
  }

  /// The generation as an asynchronous sequence of events: `.step` after every step, `.preview`
  /// as asked for, then `.finished` with the result. Stopping the iteration (or cancelling the task
  /// that iterates) cancels the generation.
  public func generationEvents(
    _ parameters: GenerationParameters, conditioning: TextConditioning? = nil, imagePrompts: [ImagePrompt] = [],
    controlNets: [ControlNetUnit] = [], options: GenerationOptions = GenerationOptions()
  ) -> AsyncThrowingStream<GenerationEvent, Error> {
    AsyncThrowingStream(bufferingPolicy: .unbounded) { continuation in
      let task = Task {
        do {
          let result = try await self.generate(
            parameters, conditioning: conditioning, imagePrompts: imagePrompts, controlNets: controlNets,
            options: options, events: { continuation.yield($0) })
          continuation.yield(.finished(result))
          continuation.finish()
        } catch {
          continuation.finish(throwing: error)
        }
      }
      continuation.onTermination = { _ in task.cancel() }
    }
  }

  /// `decode(_:)` without blocking a thread.
  public func decode(_ latents: Tensor, vaeTiling: VAETilingMode = .off) async throws -> Image {
    try checkLatents(latents)
    return try await compute.run { try self.decodeNHWC(try Ops.nchwToNhwc(latents), tiling: vaeTiling) }
  }
}
