import ArgumentParser
import IPAdapter
import Imaging
import NN
import Pipelines

/// Budgets and safety switches shared by the commands that read images and weights.
struct LimitOptions: ParsableArguments {
  @Option(help: "Most pixels of the generated image and of any resized copy of an input image (default \(ImageLimits.default.maxPixels) = 4096²).")
  var maxPixels: Int = ImageLimits.default.maxPixels

  @Option(help: "Most pixels an input image file may have; larger ones are refused from their header (default \(ImageLimits.default.maxInputPixels)).")
  var maxInputPixels: Int = ImageLimits.default.maxInputPixels

  @Flag(help: "Accept weight files holding NaN/infinity and let a generation whose latents become NaN/infinite finish (a black image) instead of stopping with an error.")
  var allowNan = false

  func validate() throws {
    guard maxPixels >= 64 else { throw CLIError.invalid("--max-pixels", "\(maxPixels) must be at least 64") }
    guard maxInputPixels >= 1 else { throw CLIError.invalid("--max-input-pixels", "\(maxInputPixels) must be at least 1") }
  }

  var limits: ImageLimits { ImageLimits(maxInputPixels: maxInputPixels, maxPixels: maxPixels) }

  /// The CLI's words for a library error that a flag of this group changes.
  static func hint(for error: Error) -> String? {
    switch error {
    case ImageIOError.tooLarge: return "--max-input-pixels raises the limit for input images, --max-pixels for images made from them"
    case PipelineError.nonFiniteLatents: return "--allow-nan lets the run finish anyway"
    case PipelineError.invalidArgument(name: "width × height", _): return "--max-pixels raises the limit"
    case let e as WeightLoadingError where !e.nonFinite.isEmpty: return "--allow-nan loads such files anyway"
    case IPAdapterError.missingImageEncoder: return "--image-encoder DIR"
    case PipelineError.invalidArgument(let name, _) where name.hasPrefix("imagePrompts["):
      return ImagePromptOptions.flag(forParameter: name).map { "see \($0)" }
    default: return nil
    }
  }
}
