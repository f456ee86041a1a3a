/// Why a generation could not run; every case names the argument or file and what is wrong.
public enum PipelineError: Error, CustomStringConvertible, Equatable {
  case invalidArgument(name: String, reason: String)
  case missingComponent(folder: String, component: String)
  case notAPipelineFolder(path: String)
  case cancelled(afterStep: Int)
  /// The latents held NaN or infinity after `step` of `total` (a damaged model, an extreme
  /// guidance scale or VAE overflow); `model` names the model. Stopped so that no black image is
  /// written; `allowNaN` lets such a run finish.
  case nonFiniteLatents(model: String, step: Int, total: Int)

  public var description: String {
    switch self {
    case .invalidArgument(let name, let reason): "invalid \(name): \(reason)"
    case .missingComponent(let folder, let component):
      "\(folder) has no '\(component)' folder (a diffusers Stable Diffusion pipeline needs it)"
    case .notAPipelineFolder(let path):
      "\(path) is not a diffusers pipeline folder (no model_index.json)"
    case .cancelled(let step): "generation cancelled after step \(step)"
    case .nonFiniteLatents(let model, let step, let total):
      "the latents became NaN or infinite at step \(step) of \(total) with model \(model): its weights or the settings "
        + "(guidance scale, strength) produce non-finite values; allowNaN lets the run finish anyway"
    }
  }
}
