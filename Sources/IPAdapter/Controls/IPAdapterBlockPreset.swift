import Foundation

/// The UNet family a slot list belongs to, for the tables that differ between SD1.5 and SDXL.
///
/// Detected the way ComfyUI_IPAdapter_plus does (`layers = 11 if '101_to_k_ip' in to_kvs else
/// 16`): an adapter with a key 101, i.e. more than 50 cross-attention layers, is SDXL; anything
/// smaller (SD1.x, SD2.x, the tiny test UNet) uses the SD1.5 tables.
///
/// matches: ComfyUI_IPAdapter_plus @ 9d076a3 `CrossAttentionPatch.ipadapter_attention` (`layers`);
/// its tables' own test, `cross_attention_dim == 2048`, agrees on every real SD1.5/SDXL adapter.
public enum IPAdapterUNetFamily: String, Sendable, CaseIterable {
  case sd15, sdxl

  public static func detect(_ slots: [IPAdapterLayerSlot]) -> IPAdapterUNetFamily {
    slots.count > 50 ? .sdxl : .sd15
  }

  /// The family whose block names a slot list has, for InstantStyle's block presets: SDXL UNets
  /// start with a block without attention (`DownBlock2D`), so no slot lies in `down_blocks.0`;
  /// SD1.x/2.x UNets have cross-attention there. Agrees with `detect` on every real model and,
  /// unlike it, also recognises small SDXL-shaped UNets.
  public static func detectBlockLayout(_ slots: [IPAdapterLayerSlot]) -> IPAdapterUNetFamily {
    slots.contains { $0.name.hasPrefix("down_blocks.0.") } ? .sd15 : .sdxl
  }
}

/// InstantStyle's block choices as named presets: only the listed attention modules receive the
/// image prompt (at `scale`), every other layer gets 0.
///
/// | preset | SD1.5 (16 layers) | SDXL (70 layers) |
/// |---|---|---|
/// | `style` | `up_blocks.1` (attentions 0–2: 3 layers) | `up_blocks.0.attentions.1` (10 layers) |
/// | `composition` (alias `layout`) | `down_blocks.2` (attentions 0–1) and `mid_block` (3 layers) | `down_blocks.2.attentions.1` (10 layers) |
/// | `style-and-composition` | the union (6 layers) | the union (20 layers) |
///
/// Sources: SDXL — InstantStyle README/`infer_style.py` `target_blocks=["up_blocks.0.attentions.1"]`
/// (style) and `["up_blocks.0.attentions.1", "down_blocks.2.attentions.1"]` (style + layout), the
/// same as diffusers' documented `{"up": {"block_0": [0.0, 1.0, 0.0]}}` and
/// `{"down": {"block_2": [0.0, 1.0]}}`. SD1.5 — InstantStyle `infer_style_sd15.py` (marked
/// "experimental"): style `["up_blocks.1"]`, style + layout `["down_blocks.2", "mid_block",
/// "up_blocks.1"]`; composition alone is that difference, `down_blocks.2` + `mid_block`, which is
/// also InvokeAI's SD1 "composition" method.
///
/// matches: InstantStyle @ instantX-research/InstantStyle (target_blocks substring match on
/// processor names), expressed as `IPAdapterBlockScales`. Limitation: SD1.5 blocks are the
/// authors' experimental choice; ComfyUI's SD1.5 "style transfer"/"composition" weight types use
/// different layers (see `ComfyWeightType`).
public enum IPAdapterBlockPreset: String, Sendable, CaseIterable {
  case style
  case composition
  case styleAndComposition = "style-and-composition"

  /// Accepts the raw values, `layout` for composition, `_`/`+`/space spellings and
  /// `style-and-layout`.
  public init(name: String) throws {
    let n = name.lowercased().replacingOccurrences(of: "_", with: "-").replacingOccurrences(of: " ", with: "-")
      .replacingOccurrences(of: "+", with: "-and-").replacingOccurrences(of: "layout", with: "composition")
    guard let p = IPAdapterBlockPreset(rawValue: n) else {
      throw IPAdapterControlError.unknownName(
        kind: "block preset", name: name, known: Self.allCases.map(\.rawValue) + ["layout"])
    }
    self = p
  }

  /// The preset as a diffusers dictionary for `family`, with `scale` on the chosen blocks.
  public func blockScales(family: IPAdapterUNetFamily, scale: Float = 1) -> IPAdapterBlockScales {
    let style = self != .composition, composition = self != .style
    switch family {
    case .sd15:
      return IPAdapterBlockScales(
        down: composition ? .blocks(["block_2": .all(scale)]) : nil,
        mid: composition ? .all(scale) : nil,
        up: style ? .blocks(["block_1": .all(scale)]) : nil)
    case .sdxl:
      return IPAdapterBlockScales(
        down: composition ? .blocks(["block_2": .perAttention([0, scale])]) : nil,
        up: style ? .blocks(["block_0": .perAttention([0, scale, 0])]) : nil)
    }
  }

  /// The attention modules this preset turns on for `family` (for messages and tests).
  public func attentionModules(family: IPAdapterUNetFamily) -> [String] {
    let style = self != .composition, composition = self != .style
    switch family {
    case .sd15:
      return (composition ? ["down_blocks.2.attentions.0", "down_blocks.2.attentions.1", "mid_block.attentions.0"] : [])
        + (style ? ["up_blocks.1.attentions.0", "up_blocks.1.attentions.1", "up_blocks.1.attentions.2"] : [])
    case .sdxl:
      return (composition ? ["down_blocks.2.attentions.1"] : []) + (style ? ["up_blocks.0.attentions.1"] : [])
    }
  }

  /// One scale per slot: `scale` on the preset's layers, 0 elsewhere. The family is detected from
  /// the slots' block layout (`IPAdapterUNetFamily.detectBlockLayout`); a UNet without one of the
  /// preset's blocks is an error naming it.
  public func scales(for slots: [IPAdapterLayerSlot], scale: Float = 1) throws -> [Float] {
    let family = IPAdapterUNetFamily.detectBlockLayout(slots)
    let present = Set(try slots.map { try $0.position().attentionModule })
    for module in attentionModules(family: family) where !present.contains(module) {
      throw IPAdapterControlError.presetNeedsMissingLayer(preset: rawValue, layer: module)
    }
    return try blockScales(family: family, scale: scale).scales(for: slots)
  }
}
