/// Why a single-file checkpoint (or a separate VAE file) cannot be used; every case names the
/// file and the key or component involved, and says what to do.
///
/// matches: the checks diffusers' `infer_diffusers_model_type` and `from_single_file` make, as
/// refusals instead of downloads of another pipeline's configuration.
public enum SingleFileError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The file is a checkpoint of a model family this engine does not run (SD 2.x, the SDXL
  /// refiner, a ControlNet, an InstructPix2Pix/upscaler UNet); `evidence` is the key (and shape) that shows it.
  case unsupportedModel(path: String, family: String, evidence: String)
  /// The file has no `model.diffusion_model.*` UNet; `found` describes what it seems to hold.
  case notAStableDiffusionCheckpoint(path: String, found: String)
  /// Keys wrapped in more nested `state_dict.` levels than any real checkpoint has.
  case tooDeeplyWrapped(path: String, depth: Int, limit: Int)
  /// A component the pipeline needs is absent (`prefix` is where it was looked for).
  case missingComponent(path: String, component: String, prefix: String, hint: String)
  /// A separate VAE file whose keys are neither diffusers (`encoder.down_blocks.…`) nor LDM
  /// (`encoder.down.…`, optionally under `first_stage_model.`); `sample` lists a few of its keys.
  case unrecognizedVAELayout(path: String, sample: [String])

  public var description: String {
    switch self {
    case .unsupportedModel(let path, let family, let evidence):
      "\(path) is a \(family) checkpoint (\(evidence)); only Stable Diffusion 1.x and SDXL base (text-to-image or inpainting) single files are supported"
    case .notAStableDiffusionCheckpoint(let path, let found):
      "\(path) is not a Stable Diffusion single-file checkpoint: it has no 'model.diffusion_model.*' UNet weights (\(found))"
    case .tooDeeplyWrapped(let path, let depth, let limit):
      "\(path) wraps its tensors in \(depth) nested 'state_dict' levels (at most \(limit) are accepted)"
    case .missingComponent(let path, let component, let prefix, let hint):
      "\(path) has no \(component) weights (no '\(prefix)*' keys); \(hint)"
    case .unrecognizedVAELayout(let path, let sample):
      "\(path) is not a VAE file: expected diffusers keys 'encoder.down_blocks.…' or LDM keys 'encoder.down.…' "
        + "(optionally under 'first_stage_model.'), found \(sample.isEmpty ? "no tensors" : sample.joined(separator: ", "))"
    }
  }
}
