import NN
import TensorCore

/// A layer a LoRA can modify: a linear or convolution weight of the model tree.
public struct LoRATargetLayer {
  /// Dotted module path in the model (`down_blocks.0.attentions.0.proj_in`).
  public var path: String
  public var module: any Module
  public var weight: Parameter
  /// `out` and `in · k · k`: the weight seen as a matrix.
  public var rows: Int
  public var columns: Int
}

/// Every name a LoRA file may use for each layer of one model component, resolved to the layer —
/// built from the module tree itself, so a lookup rather than a translation:
/// - the dotted module path (diffusers/PEFT names; a leading `text_model.` is optional);
/// - kohya's flattened path (`.` → `_`);
/// - for a UNet, kohya's flattened *LDM/SGM* path (`input_blocks_4_1_transformer_blocks_0_attn1_to_q`,
///   what SDXL LoRAs trained with kohya's sd-scripts use), derived from `LDMKeyTable`'s rows.
///
/// matches: the name resolution of diffusers 0.42.1 `_convert_non_diffusers_lora_to_diffusers`
/// and `_maybe_map_sgm_blocks_to_diffusers` (as a table, not string surgery).
public struct LoRATargetTable {
  public let component: LoRAComponent
  public private(set) var layers: [String: LoRATargetLayer] = [:]
  private var flatNames: [String: String] = [:]
  private var aliases: [String: String] = [:]
  static let clipAttentionAliases = [("q_proj", "to_q"), ("k_proj", "to_k"), ("v_proj", "to_v"), ("out_proj", "to_out.0")]

  /// The table of `model`'s linear and convolution layers. `unetConfig` adds the LDM names.
  public init(component: LoRAComponent, model: any Module, unetConfig: UNet2DConditionConfig? = nil) {
    self.component = component
    for (path, module) in model.namedModules() {
      let weight: Parameter
      if let l = module as? Linear {
        weight = l.weight
      } else if let c = module as? Conv2d {
        weight = c.weight
      } else {
        continue
      }
      let key = Self.normalized(path)
      let rows = weight.shape[0]
      layers[key] = LoRATargetLayer(
        path: path, module: module, weight: weight, rows: rows, columns: weight.shape.dropFirst().reduce(1, *))
      flatNames[Self.flat(key)] = key
      if component != .unet {
        flatNames[Self.flat("text_model." + key)] = key
        // diffusers' old text-encoder processor names (`self_attn.to_q` for `self_attn.q_proj`).
        for (clip, processor) in Self.clipAttentionAliases where key.hasSuffix(".self_attn." + clip) {
          aliases[String(key.dropLast(clip.count)) + processor] = key
        }
      }
    }
    if let unetConfig {
      let rows = LDMKeyTable.unetRows(unetConfig)
      let mapping = LDMKeyMapping(rows: rows)
      for key in layers.keys {
        guard let ldm = Self.ldmPath(of: key, rows: rows),
          mapping.map(ldm + ".weight", shape: [])?.key == key + ".weight"
        else { continue }
        flatNames[Self.flat(ldm)] = key
      }
    }
  }

  /// The layer a LoRA layer names, or nil.
  public func layer(for name: String, flat: Bool) -> LoRATargetLayer? {
    if flat { return flatNames[name].flatMap { layers[$0] } }
    let key = Self.normalized(name)
    return layers[key] ?? aliases[key].flatMap { layers[$0] }
  }

  /// `path` without a leading `text_model.` (how the table keys text-encoder layers).
  public static func normalized(_ path: String) -> String {
    path.hasPrefix("text_model.") ? String(path.dropFirst("text_model.".count)) : path
  }

  static func flat(_ path: String) -> String { path.replacingOccurrences(of: ".", with: "_") }

  /// The LDM module path of a diffusers layer path (the inverse of the table's rows: the row
  /// with the longest matching diffusers path, its leaves renamed back).
  static func ldmPath(of path: String, rows: [LDMRow]) -> String? {
    var best: (row: LDMRow, rest: String)?
    for row in rows {
      let rest: String
      if path == row.diffusers {
        rest = ""
      } else if path.hasPrefix(row.diffusers + ".") {
        rest = String(path.dropFirst(row.diffusers.count + 1))
      } else {
        continue
      }
      if best == nil || row.diffusers.count > best!.row.diffusers.count { best = (row, rest) }
    }
    guard let (row, rest) = best else { return nil }
    if rest.isEmpty { return row.ldm }
    switch row.leaves {
    case .same:
      return row.ldm + "." + rest
    case .unetResnet:
      for (ldm, diffusers) in LDMKeyTable.unetResnetLeaves where rest == diffusers || rest.hasPrefix(diffusers + ".") {
        return row.ldm + "." + ldm + rest.dropFirst(diffusers.count)
      }
      return nil
    case .vaeResnet, .vaeAttention:
      return nil
    }
  }
}
