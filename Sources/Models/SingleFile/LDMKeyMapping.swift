import Weights

/// The interpreter of `LDMKeyTable`: maps the keys of one component (its prefix removed, e.g.
/// `input_blocks.4.0.skip_connection.weight`) to diffusers keys (`down_blocks.1.resnets.0.conv_shortcut.weight`)
/// and says when a tensor must be viewed with another shape (VAE attention 1×1 kernels → linear).
///
/// A key belongs to the row with the longest LDM module path that prefixes it (`output_blocks.2.1.conv`
/// before `output_blocks.2.1`); the rest of the key is renamed by the row's leaf table. Keys no row
/// covers map to nil — callers keep their original name so strict loading reports them.
///
/// matches: the renaming of diffusers single_file_utils `convert_ldm_unet_checkpoint` and
/// `convert_ldm_vae_checkpoint` (0.42.1), without their substring replacements (a row matches whole
/// dotted path segments only).
/// Limitations: the configuration must describe the file's architecture (block counts, layers per
/// block, attention placement); a mismatch shows up as missing/unexpected keys when loading.
public struct LDMKeyMapping: Sendable {
  private let rows: [String: LDMRow]

  /// A mapping made of `rows` (their `ldm` paths must be distinct).
  public init(rows: [LDMRow]) {
    var byPath: [String: LDMRow] = [:]
    for row in rows { byPath[row.ldm] = row }
    self.rows = byPath
  }

  /// The UNet's mapping for `config`.
  public static func unet(_ config: UNet2DConditionConfig) -> LDMKeyMapping { LDMKeyMapping(rows: LDMKeyTable.unetRows(config)) }

  /// The VAE's mapping for `config`.
  public static func vae(_ config: AutoencoderKLConfig) -> LDMKeyMapping { LDMKeyMapping(rows: LDMKeyTable.vaeRows(config)) }

  /// The diffusers key of the component-relative LDM `key` and, when the tensor must be viewed
  /// differently, its new shape; nil when no row covers the key.
  public func map(_ key: String, shape: [Int]) -> (key: String, shape: [Int]?)? {
    var end = key.endIndex
    while let dot = key[..<end].lastIndex(of: ".") {
      if let row = rows[String(key[..<dot])] {
        return Self.leaf(String(key[key.index(after: dot)...]), of: row, shape: shape)
      }
      end = dot
    }
    return nil
  }

  /// Renames the leaf (`in_layers.2.weight`, `q.weight`, …) below `row`.
  private static func leaf(_ leaf: String, of row: LDMRow, shape: [Int]) -> (key: String, shape: [Int]?)? {
    func renamed(_ table: [(ldm: String, diffusers: String)]) -> String? {
      for (ldm, diffusers) in table where leaf.hasPrefix(ldm + ".") {
        return diffusers + leaf.dropFirst(ldm.count)
      }
      return nil
    }
    switch row.leaves {
    case .same:
      return (row.diffusers + "." + leaf, nil)
    case .unetResnet:
      return renamed(LDMKeyTable.unetResnetLeaves).map { (row.diffusers + "." + $0, nil) }
    case .vaeResnet:
      return renamed(LDMKeyTable.vaeResnetLeaves).map { (row.diffusers + "." + $0, nil) }
    case .vaeAttention:
      for (ldm, diffusers, linear) in LDMKeyTable.vaeAttentionLeaves where leaf.hasPrefix(ldm + ".") {
        let parameter = leaf.dropFirst(ldm.count + 1)
        let key = row.diffusers + "." + diffusers + "." + parameter
        // `[o, i, 1, 1]` / `[o, i, 1]` kernels are the `[o, i]` linear weights (conv_attn_to_linear).
        if linear, parameter == "weight", shape.count > 2, shape[2...].allSatisfy({ $0 == 1 }) {
          return (key, [shape[0], shape[1]])
        }
        return (key, nil)
      }
      return nil
    }
  }

  /// A view of the keys of `base` that `select` assigns to this component (returning the
  /// component-relative LDM key), renamed to diffusers keys. Keys the table does not cover keep
  /// their original name so that strict loading lists them as unexpected.
  /// - Throws: `ArchiveError.duplicateKey` when two file keys become the same diffusers key.
  public func archive(_ base: any TensorArchive, select: (String) -> String?) throws -> any TensorArchive {
    try RenamedArchive(base) { key, info in
      guard let relative = select(key) else { return nil }
      return map(relative, shape: info.shape) ?? (key, nil)
    }
  }
}
