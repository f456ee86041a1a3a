import Foundation
import IPAdapter
import Imaging
import Models
import TensorCore

/// One ControlNet of a generation: the model, its control image (a hint such as Canny edges, or
/// the preprocessed result), its strength and its step window.
public struct ControlNetUnit: Sendable {
  public var model: ControlNetModel
  /// Shown in the PNG parameters (usually the folder name).
  public var name: String
  public var image: Image
  /// `controlnet_conditioning_scale`.
  public var scale: Float
  /// diffusers' `guess_mode`: the ControlNet sees only the conditional half, with residuals scaled
  /// from 0.1 (shallow) to 1.0 (deep); the unconditional half gets none.
  public var guessMode: Bool
  /// `control_guidance_start` / `control_guidance_end` as fractions of the steps.
  public var start: Double
  public var end: Double
  /// What the ControlNet's cross-attention reads: nil = the text embeddings (diffusers); set =
  /// these tokens instead, the unconditional ones for the unconditional half (InstantID's
  /// IdentityNet reads the face tokens its adapter projects).
  public var crossAttentionTokens: ImagePromptEmbeds?
  /// A region `[H, W]` at the output size: every residual is multiplied by it, resized bilinearly
  /// to the residual's resolution (InstantID's `enhance_face_region` on IdentityNet).
  public var residualMask: Tensor?

  public init(
    model: ControlNetModel, name: String, image: Image, scale: Float = 1, guessMode: Bool = false,
    start: Double = 0, end: Double = 1
  ) {
    (self.model, self.name, self.image, self.scale) = (model, name, image, scale)
    (self.guessMode, self.start, self.end) = (guessMode, start, end)
  }
}

/// Runs one ControlNet at every step inside its window and hands its residuals to the UNet.
///
/// matches: diffusers `StableDiffusionControlNetPipeline` and `StableDiffusionXLControlNetPipeline`
/// (0.42.1; SDXL ControlNets get the UNet's pooled text and time ids, in guess mode the
/// conditional row only): control image prepared by
/// `VaeImageProcessor(do_convert_rgb=True, do_normalize=False)` at the output size; the ControlNet
/// is given the text embeddings only (never image-prompt tokens — IP-Adapter's `CNAttnProcessor`
/// contract), unless the unit names its own tokens (InstantID's IdentityNet:
/// `encoder_hidden_states=prompt_image_emb`); `cond_scale = scale × keep(i)`; guess mode with
/// guidance feeds only the conditional latents and pads the residuals with zeros for the
/// unconditional half. Steps outside the window
/// skip the ControlNet entirely (diffusers runs it with scale 0, which adds exactly zero).
final class ControlNetExtension: DenoisingExtension {
  let unit: ControlNetUnit
  let conditioning: CrossAttentionConditioning
  let embedding: Tensor
  let guidance: Bool

  init(
    unit: ControlNetUnit, textEmbeddings: Tensor, textTime: TextTimeConditions? = nil, guidance: Bool, width: Int,
    height: Int, maxPixels: Int, unet: UNet2DConditionModel
  ) throws {
    try unit.model.validate(against: unet)
    guard unit.scale.isFinite else {
      throw PipelineError.invalidArgument(name: "control scale", reason: "\(unit.scale) is not a finite number")
    }
    guard unit.start >= 0, unit.end <= 1, unit.start < unit.end else {
      throw PipelineError.invalidArgument(
        name: "control window", reason: "start \(unit.start) and end \(unit.end) must satisfy 0 ≤ start < end ≤ 1")
    }
    self.unit = unit
    self.guidance = guidance
    let conditionalOnly = guidance && unit.guessMode
    var context = textEmbeddings
    if let tokens = unit.crossAttentionTokens {
      context = guidance ? try Ops.concatRows([tokens.unconditional, tokens.conditional]) : tokens.conditional
    }
    let text = conditionalOnly ? context.slice(rows: 1..<2) : context
    let time = textTime.map {
      conditionalOnly ? TextTimeConditions(textEmbeds: $0.textEmbeds.slice(rows: 1..<2), timeIds: [$0.timeIds[1]]) : $0
    }
    conditioning = try unit.model.makeConditioning(encoderHiddenStates: text, textTime: time)
    var processor = VaeImageProcessor(vaeScaleFactor: 8, doNormalize: false, doConvertRGB: true)
    processor.maxPixels = maxPixels
    embedding = try unit.model.embedControlImage(processor.preprocess(unit.image, height: height, width: width))
  }

  func controlResiduals(input: Tensor, step: StepContext) throws -> ControlResiduals? {
    guard step.isInside(start: unit.start, end: unit.end) else { return nil }
    let controlInput = guidance && unit.guessMode ? input.slice(rows: 1..<2) : input
    var r = try unit.model(
      controlInput, timestep: step.timestep, conditioning: conditioning, controlEmbedding: embedding,
      scale: unit.scale, guessMode: unit.guessMode)
    if let mask = unit.residualMask {
      r = ControlResiduals(down: try r.down.map { try masked($0, by: mask) }, mid: try masked(r.mid, by: mask))
    }
    guard guidance && unit.guessMode else { return r }
    func padded(_ t: Tensor) throws -> Tensor { try Ops.concatRows([Tensor.zeros(t.shape), t]) }
    return ControlResiduals(down: try r.down.map(padded), mid: try padded(r.mid))
  }

  /// Mask planes resized to each residual resolution met (computed once per size).
  private var maskPlanes: [[Int]: [Float]] = [:]

  /// An NHWC residual `[B, h, w, C]` times the mask resized to `h × w`.
  private func masked(_ residual: Tensor, by mask: Tensor) throws -> Tensor {
    guard residual.rank == 4, mask.rank == 2 else {
      throw PipelineError.invalidArgument(name: "ControlNet residual mask", reason: "mask \(mask.shape) for residual \(residual.shape)")
    }
    let (b, h, w, c) = (residual.shape[0], residual.shape[1], residual.shape[2], residual.shape[3])
    let plane: [Float]
    if let cached = maskPlanes[[h, w]] {
      plane = cached
    } else {
      plane = IPAdapterMasks.bilinearResize(mask.scalars(), height: mask.shape[0], width: mask.shape[1], toHeight: h, toWidth: w)
      maskPlanes[[h, w]] = plane
    }
    let src = residual.asFloat32()
    let out = Tensor(uninitializedShape: residual.shape)
    let (s, d) = (src.floatPointer, out.mutableFloatPointer)
    for n in 0..<b {
      for p in 0..<(h * w) {
        let k = plane[p]
        let base = (n * h * w + p) * c
        for ch in 0..<c { d[base + ch] = s[base + ch] * k }
      }
    }
    withExtendedLifetime(src) {}
    return out
  }
}
