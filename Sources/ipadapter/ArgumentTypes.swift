import ArgumentParser
import IPAdapter
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
