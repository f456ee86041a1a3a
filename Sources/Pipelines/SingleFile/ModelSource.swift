import Foundation
import Models
import TensorCore
import Weights

/// Where a `--model` path points: a diffusers pipeline folder or a single-file checkpoint.
///
/// matches: the dispatch of diffusers between `DiffusionPipeline.from_pretrained` (folders with
/// `model_index.json`) and `from_single_file` (files), made on the local path only.
/// Limitations: hub references are resolved to local paths before (by the CLI's `ModelResolution`).
public enum ModelSource: Sendable, Equatable {
  /// A folder with `model_index.json` (and the component folders).
  case diffusersFolder(URL)
  /// A checkpoint file (`.safetensors` or a torch zip `.ckpt`/`.pt`/`.bin`, recognised by content).
  case singleFile(URL)

  /// The folder or file.
  public var url: URL {
    switch self {
    case .diffusersFolder(let url), .singleFile(let url): url
    }
  }

  /// Classifies `url`: a folder with `model_index.json` (or that file itself) → `.diffusersFolder`;
  /// a checkpoint file → `.singleFile`; anything else → `ModelSourceError`.
  public static func resolve(_ url: URL) throws -> ModelSource {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: url.path, isDirectory: &isDir) else { throw ModelSourceError.notFound(path: url.path) }
    if isDir.boolValue {
      if fm.fileExists(atPath: url.appendingPathComponent("model_index.json").path) { return .diffusersFolder(url) }
      let contents = (try? fm.contentsOfDirectory(atPath: url.path)) ?? []
      let checkpoints = contents.filter { ["safetensors", "ckpt", "pt", "pth", "bin"].contains(($0 as NSString).pathExtension) }
      throw ModelSourceError.folderWithoutModelIndex(
        path: url.path, isComponent: contents.contains("config.json"), checkpoints: checkpoints.sorted())
    }
    if url.lastPathComponent == "model_index.json" { return .diffusersFolder(url.deletingLastPathComponent()) }
    let format: CheckpointFormat
    do { format = try CheckpointFormat.detect(path: url.path) } catch {
      throw ModelSourceError.unreadable(path: url.path, reason: error.description)
    }
    guard format != .unknown else { throw ModelSourceError.notACheckpoint(path: url.path) }
    return .singleFile(url)
  }
}

/// Why a `--model` path is neither a diffusers folder nor a checkpoint file; each case names the
/// path and what to give instead.
///
/// matches: no reference (diffusers fails later, in `from_pretrained`/`from_single_file`); the
/// checkpoint test is `CheckpointFormat.detect` (content, not extension).
public enum ModelSourceError: Error, CustomStringConvertible, Equatable, Sendable {
  case notFound(path: String)
  /// A folder without `model_index.json`: one component folder (`isComponent`), or a folder of
  /// checkpoints (`checkpoints` lists them).
  case folderWithoutModelIndex(path: String, isComponent: Bool, checkpoints: [String])
  case notACheckpoint(path: String)
  case unreadable(path: String, reason: String)

  public var description: String {
    switch self {
    case .notFound(let path): "model not found: \(path)"
    case .folderWithoutModelIndex(let path, let isComponent, let checkpoints):
      if isComponent {
        "\(path) is one component of a pipeline (it has config.json but no model_index.json); give the pipeline folder above it"
      } else if checkpoints.isEmpty {
        "\(path) is not a diffusers pipeline folder (no model_index.json) and holds no checkpoint file"
      } else {
        "\(path) is not a diffusers pipeline folder (no model_index.json); to use a single-file checkpoint give the file, e.g. "
          + (path as NSString).appendingPathComponent(checkpoints[0])
      }
    case .notACheckpoint(let path):
      "\(path) is neither a diffusers pipeline folder nor a checkpoint file (not safetensors, not a torch zip)"
    case .unreadable(let path, let reason): "cannot read \(path): \(reason)"
    }
  }
}

extension StableDiffusionPipeline {
  /// Loads what `ModelSource.resolve` found, optionally with a separate VAE file.
  /// - Parameters:
  ///   - configs: for single files only (default: the bundled SD1.5 configs).
  public static func load(
    _ source: ModelSource, vae: URL? = nil, configs: URL = BundledConfigs.stableDiffusion15,
    ema: EMAChoice = .preferEMA, precision: ComputePrecision = .float32, allowNonFiniteWeights: Bool = false
  ) throws -> StableDiffusionPipeline {
    switch source {
    case .diffusersFolder(let folder):
      if let vae {
        return try load(folder: folder, vae: vae, precision: precision, allowNonFiniteWeights: allowNonFiniteWeights)
      }
      return try StableDiffusionPipeline(folder: folder, precision: precision, allowNonFiniteWeights: allowNonFiniteWeights)
    case .singleFile(let file):
      return try load(
        singleFile: file, vae: vae, configs: configs, ema: ema, precision: precision,
        allowNonFiniteWeights: allowNonFiniteWeights)
    }
  }
}
