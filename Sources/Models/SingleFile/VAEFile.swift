import NN
import Weights

/// The key layout of a separately distributed VAE file, detected from its keys.
///
/// matches: diffusers' distinction between `AutoencoderKL.from_single_file` (LDM keys, prefixes
/// `LDM_VAE_KEYS`) and `from_pretrained` weights (diffusers keys), 0.42.1.
public enum VAEFileLayout: Sendable, Equatable, CustomStringConvertible {
  /// diffusers names (`encoder.down_blocks.0.resnets.0.conv1.weight`), under `prefix` (usually "").
  case diffusers(prefix: String)
  /// LDM names (`encoder.down.0.block.0.conv1.weight`), under `prefix`: "" for VAE-only files
  /// (`vae-ft-mse-840000-ema-pruned`), `first_stage_model.` when a whole checkpoint is given.
  case ldm(prefix: String)

  public var description: String {
    switch self {
    case .diffusers(let p): "diffusers layout\(p.isEmpty ? "" : " under '\(p)'")"
    case .ldm(let p): "LDM layout\(p.isEmpty ? "" : " under '\(p)'")"
    }
  }
}

/// A VAE distributed on its own (`--vae FILE`: `.safetensors`, `.ckpt`, `.pt`, `.bin`) in either
/// layout. Only `encoder.*`, `decoder.*`, `quant_conv.*` and `post_quant_conv.*` are read;
/// everything else (`loss.*` of training checkpoints, `model_ema.*`, other components of a whole
/// checkpoint) is ignored.
///
/// matches: diffusers `AutoencoderKL.from_single_file` (0.42.1: `convert_ldm_vae_checkpoint` with
/// `LDM_VAE_KEYS`) for LDM files and `AutoencoderKL.from_pretrained` weights (with the legacy
/// `query/key/value/proj_attn` names) for diffusers files.
/// Limitations: EMA copies inside a VAE file are not used; the architecture comes from the
/// caller's `vae/config.json`.
public enum VAEFile {
  /// Prefixes tried, in order.
  static let prefixes = ["first_stage_model.", "vae.", ""]
  static let roots = ["encoder.", "decoder.", "quant_conv.", "post_quant_conv."]

  /// The layout of `archive` (already unwrapped from `state_dict`).
  public static func layout(of archive: any TensorArchive, path: String) throws -> VAEFileLayout {
    let keys = archive.keys
    for p in prefixes {
      if keys.contains(where: { $0.hasPrefix(p + "encoder.down_blocks.") || $0.hasPrefix(p + "decoder.up_blocks.") }) {
        return .diffusers(prefix: p)
      }
      if keys.contains(where: { $0.hasPrefix(p + "encoder.down.") || $0.hasPrefix(p + "decoder.up.") }) {
        return .ldm(prefix: p)
      }
    }
    throw SingleFileError.unrecognizedVAELayout(path: path, sample: Array(keys.prefix(5)))
  }

  /// The VAE tensors of `archive` under diffusers names.
  public static func weights(_ archive: any TensorArchive, layout: VAEFileLayout, config: AutoencoderKLConfig) throws
    -> any TensorArchive
  {
    func relative(_ key: String, _ prefix: String) -> String? {
      guard key.hasPrefix(prefix) else { return nil }
      let name = String(key.dropFirst(prefix.count))
      return roots.contains(where: { name.hasPrefix($0) }) ? name : nil
    }
    switch layout {
    case .ldm(let prefix):
      return try LDMKeyMapping.vae(config).archive(archive) { relative($0, prefix) }
    case .diffusers(let prefix):
      let renamed = try RenamedArchive(archive) { key, _ in relative(key, prefix).map { ($0, nil) } }
      return try KeyTables.legacyVAEAttention(renamed)
    }
  }

  /// Opens the VAE file at `path` (by content, `state_dict` unwrapped) and loads it strictly.
  public static func load(
    path: String, config: AutoencoderKLConfig, configPath: String, prepare: PrepareOptions = PrepareOptions()
  ) throws -> AutoencoderKL {
    let archive = try SingleFileCheckpoint.unwrap(try openCheckpoint(path: path), path: path)
    let layout = try layout(of: archive, path: path)
    let model = try AutoencoderKL(config: config, path: configPath)
    try model.loadWeights(
      from: try weights(archive, layout: layout, config: config), source: "\(path) (VAE, \(layout))",
      options: LoadOptions(prepare: prepare))
    return model
  }
}
