import Foundation
import NN
import TensorCore
import Weights

/// Problems finding or opening a model's weight files.
public enum ModelFileError: Error, CustomStringConvertible, Equatable {
  case missingFolder(path: String)
  case noWeights(folder: String, tried: [String])
  case badIndex(path: String, reason: String)
  /// A weights variant that is not a plain name (it becomes part of file names).
  case badVariant(String)

  public var description: String {
    switch self {
    case .missingFolder(let path): "model folder not found: \(path)"
    case .noWeights(let folder, let tried):
      "no weight file in \(folder) (looked for \(tried.joined(separator: ", ")))"
    case .badIndex(let path, let reason): "\(path): \(reason)"
    case .badVariant(let v):
      "invalid weights variant '\(v)': a variant is 1 to 32 ASCII letters, digits, '-' or '_' (e.g. fp16)"
    }
  }
}

/// Builds models from diffusers/transformers folders (`config.json` + weights).
///
/// Weight files are looked up as diffusers does: `<name>.safetensors`, then the `fp16` variant,
/// then a sharded `<name>.safetensors.index.json`. Files are memory-mapped; tensors stay in their
/// stored dtype until a layer packs them for its kernel.
public enum ModelLoader {
  /// Opens the weights of a component folder whose files are named `stem` (e.g.
  /// `diffusion_pytorch_model` or `model`). With `variant` (diffusers' `variant="fp16"`) the
  /// `stem.{variant}.*` files come first, then the plain ones.
  public static func openWeights(in folder: URL, stem: String, variant: String? = nil) throws -> any TensorArchive {
    if let variant { try checkVariant(variant) }
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: folder.path, isDirectory: &isDir), isDir.boolValue else {
      throw ModelFileError.missingFolder(path: folder.path)
    }
    let candidates = variant.map { ["\(stem).\($0).safetensors", "\(stem).safetensors"] }
      ?? ["\(stem).safetensors", "\(stem).fp16.safetensors"]
    for name in candidates where fm.fileExists(atPath: folder.appendingPathComponent(name).path) {
      return try SafeTensorsFile(path: folder.appendingPathComponent(name).path)
    }
    let indexes = variant.map { ["\(stem).safetensors.index.\($0).json", "\(stem).safetensors.index.json"] }
      ?? ["\(stem).safetensors.index.json", "\(stem).safetensors.index.fp16.json"]
    for index in indexes {
      let url = folder.appendingPathComponent(index)
      if fm.fileExists(atPath: url.path) { return try openSharded(index: url) }
    }
    // PyTorch pickles (transformers names them pytorch_model.bin), read without executing code.
    var pickles = stem == "model" ? ["pytorch_model.bin", "model.bin"] : ["\(stem).bin"]
    if let variant { pickles = pickles.map { ($0 as NSString).deletingPathExtension + ".\(variant).bin" } + pickles }
    for name in pickles where fm.fileExists(atPath: folder.appendingPathComponent(name).path) {
      return try openCheckpoint(path: folder.appendingPathComponent(name).path)
    }
    throw ModelFileError.noWeights(
      folder: folder.path, tried: candidates + ["\(stem).safetensors.index.json"] + pickles)
  }

  /// Throws `ModelFileError.badVariant` unless `variant` is 1–32 ASCII letters, digits, `-` or
  /// `_` (diffusers' variants: `fp16`, `bf16`, `ema`…): it is joined into weight file names.
  public static func checkVariant(_ variant: String) throws {
    let ok = (1...32).contains(variant.utf8.count)
      && variant.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D || $0 == 0x5F }
    if !ok { throw ModelFileError.badVariant(variant) }
  }

  /// Opens the shards listed in a `weight_map` index file.
  public static func openSharded(index url: URL) throws -> any TensorArchive {
    struct Index: Decodable { var weight_map: [String: String] }
    let index: Index
    let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? 0
    guard size <= 64 << 20 else { throw ModelFileError.badIndex(path: url.path, reason: "\(size) bytes is more than 64 MiB") }
    do {
      index = try JSONDecoder().decode(Index.self, from: Data(contentsOf: url))
    } catch {
      throw ModelFileError.badIndex(path: url.path, reason: "cannot read weight_map: \(error)")
    }
    let files = Set(index.weight_map.values).sorted()
    // Shards are files beside the index: a name cannot reach another folder.
    for name in files where name.isEmpty || name == "." || name == ".." || name.contains("/") || name.contains("\\") {
      throw ModelFileError.badIndex(path: url.path, reason: "weight_map names '\(name)', which is not a file name in this folder")
    }
    let folder = url.deletingLastPathComponent()
    let parts: [any TensorArchive] = try files.map {
      try SafeTensorsFile(path: folder.appendingPathComponent($0).path)
    }
    return try CompositeArchive(parts, names: files)
  }

  /// `unet/` → `UNet2DConditionModel`.
  public static func unet(
    _ folder: URL, prepare: PrepareOptions = PrepareOptions(), variant: String? = nil
  ) throws -> UNet2DConditionModel {
    let configURL = folder.appendingPathComponent("config.json")
    let config = try ConfigFile.load(UNet2DConditionConfig.self, from: configURL)
    let model = try UNet2DConditionModel(config: config, path: configURL.path)
    let archive = try openWeights(in: folder, stem: "diffusion_pytorch_model", variant: variant)
    try model.loadWeights(from: archive, source: folder.path, options: LoadOptions(prepare: prepare))
    return model
  }

  /// `vae/` → `AutoencoderKL` (legacy `query/key/value/proj_attn` attention names accepted).
  public static func vae(
    _ folder: URL, prepare: PrepareOptions = PrepareOptions(), variant: String? = nil
  ) throws -> AutoencoderKL {
    let configURL = folder.appendingPathComponent("config.json")
    let config = try ConfigFile.load(AutoencoderKLConfig.self, from: configURL)
    let model = try AutoencoderKL(config: config, path: configURL.path)
    let archive = try KeyTables.legacyVAEAttention(
      try openWeights(in: folder, stem: "diffusion_pytorch_model", variant: variant))
    try model.loadWeights(from: archive, source: folder.path, options: LoadOptions(prepare: prepare))
    return model
  }

  /// `text_encoder/` → `CLIPTextModel` (keys with or without `text_model.`).
  /// - Parameter withProjection: a `CLIPTextModelWithProjection` (SDXL's `text_encoder_2`).
  public static func textEncoder(
    _ folder: URL, prepare: PrepareOptions = PrepareOptions(), withProjection: Bool = false, variant: String? = nil
  ) throws -> CLIPTextModel {
    let configURL = folder.appendingPathComponent("config.json")
    let config = try ConfigFile.load(CLIPTextConfig.self, from: configURL)
    let model = try CLIPTextModel(config: config, path: configURL.path, withProjection: withProjection)
    let archive = try openWeights(in: folder, stem: "model", variant: variant)
    try model.load(from: archive, source: folder.path, prepare: prepare)
    return model
  }
}

/// Declarative key tables for checkpoints that name the same tensors differently.
public enum KeyTables {
  /// diffusers' deprecated VAE attention names → current ones (`_convert_deprecated_attention_blocks`).
  public static let legacyVAEAttentionNames: [(old: String, new: String)] = [
    ("query.", "to_q."), ("key.", "to_k."), ("value.", "to_v."), ("proj_attn.", "to_out.0."),
  ]

  /// Renames legacy VAE attention keys if the archive uses them; otherwise returns it unchanged.
  public static func legacyVAEAttention(_ archive: any TensorArchive) throws -> any TensorArchive {
    let marker = ".attentions.0."
    guard archive.keys.contains(where: { $0.contains(marker + "query.") }) else { return archive }
    return try RenamedArchive(archive) { key, _ in
      guard let range = key.range(of: marker) else { return (key, nil) }
      let tail = key[range.upperBound...]
      for (old, new) in legacyVAEAttentionNames where tail.hasPrefix(old) {
        return (key[..<range.upperBound] + new + tail.dropFirst(old.count), nil)
      }
      return (key, nil)
    }
  }
}
