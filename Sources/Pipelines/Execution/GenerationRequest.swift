import Foundation
import Hub
import Imaging
import Models
import NN
import TensorCore

/// How a control image becomes the ControlNet's hint.
public enum ControlPreprocess: Sendable, Equatable {
  /// The image is the hint already.
  case none
  /// OpenCV-compatible Canny edges with these thresholds (`Canny.controlImage`).
  case canny(low: Double, high: Double)
}

/// One ControlNet of a request, as an app describes it (`ControlNetUnit` is the loaded form).
public struct ControlNetSpec: Sendable {
  /// A diffusers ControlNet folder (config.json + weights), or a hub repo / sub-folder of one.
  public var model: HubReference
  public var image: Image
  /// `controlnet_conditioning_scale`.
  public var scale: Float = 1
  public var preprocess: ControlPreprocess = .none
  /// diffusers' `guess_mode`.
  public var guessMode = false
  /// `control_guidance_start` / `control_guidance_end`, fractions of the steps.
  public var start = 0.0
  public var end = 1.0
  /// A region `[H, W]` at the output size every residual is multiplied by (`ControlNetUnit.residualMask`).
  public var residualMask: Tensor?

  public init(model: HubReference, image: Image, scale: Float = 1) {
    self.model = model
    self.image = image
    self.scale = scale
  }
}

/// Everything one generation needs, described with files and images rather than loaded models:
/// what `StableDiffusionPipeline.generate(_ request:)` builds and runs in one call.
public struct GenerationRequest: Sendable {
  public var parameters: GenerationParameters
  public var imagePrompts: [ImagePromptSpec] = []
  public var controlNets: [ControlNetSpec] = []
  /// Identity-preserving generation (SDXL): the InstantID face adapter and IdentityNet, added to
  /// the image prompts and ControlNets above.
  public var instantID: InstantIDSpec?
  public var options = GenerationOptions()
  /// Limits and hub settings for the image prompts and ControlNets (its `maxPixels` should match
  /// `parameters.maxPixels`; `generate(_ request:)` uses the smaller).
  public var builder = ImagePromptBuilder()

  public init(parameters: GenerationParameters) { self.parameters = parameters }
}

extension StableDiffusionPipeline {
  /// Loads the request's ControlNets (prepared for the pipeline's precision), fetching hub
  /// references first.
  public func loadControlNets(_ specs: [ControlNetSpec], builder: ImagePromptBuilder = ImagePromptBuilder()) async throws
    -> [ControlNetUnit]
  {
    var folders: [URL] = []
    var client = builder.hub
    for spec in specs {
      if let local = spec.model.localURL {
        folders.append(local)
      } else {
        let hub = client ?? HubClient()
        client = hub
        folders.append(try await hub.resolveFolder(spec.model, files: .controlNet, progress: builder.downloadProgress))
      }
    }
    let located = folders
    let prepare = PrepareOptions(precision: precision, allowNonFiniteWeights: builder.allowNonFiniteWeights)
    return try await compute.run {
      try zip(specs, located).enumerated().map { i, pair in
        let (spec, folder) = pair
        let model = try ModelLoader.controlNet(folder, prepare: prepare)
        var image = spec.image
        if case .canny(let low, let high) = spec.preprocess {
          guard low >= 0, high >= low else {
            throw PipelineError.invalidArgument(
              name: "controlNets[\(i)].preprocess", reason: "Canny needs 0 ≤ low ≤ high, got \(low) and \(high)")
          }
          image = try Canny.controlImage(from: image, low: low, high: high)
        }
        var unit = ControlNetUnit(
          model: model, name: Self.displayName(spec.model, folder: folder), image: image, scale: spec.scale, guessMode: spec.guessMode, start: spec.start,
          end: spec.end)
        unit.residualMask = spec.residualMask
        return unit
      }
    }
  }

  /// The name a ControlNet gets in the PNG parameters: its folder's, or the hub repo's or
  /// sub-folder's.
  static func displayName(_ reference: HubReference, folder: URL) -> String {
    switch reference {
    case .local: folder.lastPathComponent
    case .repo(let id, _): String(id.split(separator: "/").last ?? Substring(id))
    case .file(_, let path, _): String(path.split(separator: "/").last ?? Substring(path))
    }
  }

  /// Builds the request's image prompts and ControlNets and generates: the one call behind
  /// `ipadapter generate`. Cancellable; `events` as in `generate(_:conditioning:…)`.
  public func generate(_ request: GenerationRequest, events: (@Sendable (GenerationEvent) -> Void)? = nil) async throws
    -> GenerationResult
  {
    var builder = request.builder
    builder.maxPixels = min(builder.maxPixels, request.parameters.maxPixels)
    var parameters = request.parameters
    var specs = request.imagePrompts
    var controlSpecs = request.controlNets
    var facePrompt: Int?
    if let spec = request.instantID {
      facePrompt = try await prepareInstantID(spec, parameters: &parameters, imagePrompts: &specs, controlNets: &controlSpecs)
    }
    let prompts = try await builder.build(specs, for: self, parameters: parameters)
    var units = try await loadControlNets(controlSpecs, builder: builder)
    if let facePrompt {
      // IdentityNet (the first ControlNet) reads the face tokens of the InstantID adapter (the last
      // prompt); other ControlNets read the text, as in the reference's multi-ControlNet pipeline.
      units[0].crossAttentionTokens = prompts.prompts[facePrompt].embeds
      units[0].name = "IdentityNet"
    }
    var result = try await generate(
      parameters, imagePrompts: prompts.prompts, controlNets: units, options: request.options, events: events)
    result.warnings = prompts.warnings + result.warnings
    return result
  }
}
