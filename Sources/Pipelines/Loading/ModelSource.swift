import Foundation
import Hub
import Models
import TensorCore
import Weights

/// A model to load: a diffusers pipeline folder, a single-file checkpoint, or a Hugging Face hub
/// reference to either (fetched into the shared hub cache when loaded).
///
/// matches: the dispatch of diffusers between `DiffusionPipeline.from_pretrained` (folders with
/// `model_index.json`, hub repos) and `from_single_file` (files); hub references follow
/// huggingface_hub's cache layout (see `HubClient`).
public enum ModelSource: Sendable, Equatable {
  /// A folder with `model_index.json` (and the component folders).
  case diffusersFolder(URL)
  /// A checkpoint file (`.safetensors` or a torch zip `.ckpt`/`.pt`/`.bin`, recognised by content).
  case singleFile(URL)
  /// A hub repo (a diffusers pipeline) or one file of a repo (a single-file checkpoint).
  case hub(HubReference)

  /// The local folder or file; nil for a hub reference not yet fetched.
  public var localURL: URL? {
    switch self {
    case .diffusersFolder(let url), .singleFile(let url): url
    case .hub: nil
    }
  }

  /// Parses what a user typed: an existing local path is classified with `resolve(_:)`; otherwise
  /// `org/name[@revision]` or `org/name/path/to/file[@revision]` is a hub reference.
  /// - Throws: `ModelSourceError` for a local path that is no model, `HubError.invalidReference`
  ///   for text that is neither.
  public static func parse(_ text: String) throws -> ModelSource {
    let reference = try HubReference.parse(text)
    return try reference.localURL.map(resolve) ?? .hub(reference)
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
