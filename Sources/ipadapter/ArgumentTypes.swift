import Foundation
import ArgumentParser
import IPAdapter
import Pipelines
import Schedulers
import TensorCore

// The library's enums as typed flag values: ArgumentParser parses and refuses them (listing the
// accepted values), and `IPAdapterCLI.main` prints its errors on one line like every other error.

extension SchedulerKind: ExpressibleByArgument {}
extension ComputePrecision: ExpressibleByArgument {}

/// Names with the library's spellings and aliases (`layout` for composition, `ease-in-out`, …).
extension IPAdapterBlockPreset: ExpressibleByArgument {
  public init?(argument: String) { try? self.init(name: argument) }
}

extension ComfyWeightType: ExpressibleByArgument {
  public init?(argument: String) { try? self.init(name: argument) }
}

extension IPAdapterCombineMode: ExpressibleByArgument {
  public init?(argument: String) { try? self.init(name: argument) }
}

extension IPAdapterEmbedsScaling: ExpressibleByArgument {
  public init?(argument: String) { try? self.init(name: argument) }
}

/// `--ip-uncond`: the unconditional image convention.
enum UnconditionalImageChoice: String, CaseIterable, ExpressibleByArgument {
  /// Zero features (diffusers and the original code).
  case zeros
  /// ComfyUI's black image.
  case black
  /// ComfyUI's IPAdapter Noise (fade).
  case noise
}

/// `--control-preprocess`: how a control image becomes the hint.
enum ControlPreprocessChoice: String, CaseIterable, ExpressibleByArgument {
  case none
  case canny
}

/// `bench models --checkpoint-dtype`: how the random checkpoint files are stored.
enum CheckpointDtypeChoice: String, CaseIterable, ExpressibleByArgument {
  case fp16
  case fp32
}

/// `WxH` (e.g. `1024x768`): SDXL's `--original-size`, `--target-size` and their negative forms.
extension PixelSize: ExpressibleByArgument {
  public init?(argument: String) {
    let parts = argument.lowercased().split(separator: "x", omittingEmptySubsequences: false)
    guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]), w > 0, h > 0 else { return nil }
    self.init(width: w, height: h)
  }

  public static var defaultValueDescription: String { "WxH" }
}

/// `TOP,LEFT` (e.g. `0,0`): SDXL's `--crop-top-left` and `--negative-crop-top-left`.
extension CropOffset: ExpressibleByArgument {
  public init?(argument: String) {
    let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
    guard parts.count == 2, let top = Int(parts[0].trimmingCharacters(in: .whitespaces)),
      let left = Int(parts[1].trimmingCharacters(in: .whitespaces)), top >= 0, left >= 0
    else { return nil }
    self.init(top: top, left: left)
  }
}
