import Models

/// Where a cross-attention layer sits in the UNet, parsed from its diffusers key path:
/// `down_blocks.2.attentions.1.transformer_blocks.0.attn2` → (down, block 2, attention 1,
/// transformer block 0); `mid_block.attentions.0.transformer_blocks.3.attn2` → (mid, 0, 0, 3).
///
/// matches: diffusers `UNet2DConditionModel` module names (0.42.1). Every control addresses layers
/// through this: diffusers' `down.block_i` / `up.block_i` lists index `attention`, ComfyUI's
/// `transformer_index` counts `(part, block, attention)` stacks (see `ComfyWeighting`).
public struct IPAdapterLayerPosition: Hashable, Sendable, CustomStringConvertible {
  /// The three UNet parts, in diffusers' spelling of `set_ip_adapter_scale` keys.
  public enum Part: String, Sendable, CaseIterable {
    case down, mid, up
  }

  public var part: Part
  /// `i` of `down_blocks.i` / `up_blocks.i`; 0 for the mid block.
  public var block: Int
  /// `j` of `attentions.j` (one `Transformer2DModel`).
  public var attention: Int
  /// `b` of `transformer_blocks.b` (SDXL stacks hold 2 or 10; SD1.5 always 0).
  public var transformerBlock: Int

  public init(part: Part, block: Int, attention: Int, transformerBlock: Int = 0) {
    self.part = part
    self.block = block
    self.attention = attention
    self.transformerBlock = transformerBlock
  }

  /// Parses a key path; throws for names that are not a UNet cross-attention layer.
  public init(name: String) throws {
    let c = name.split(separator: ".").map(String.init)
    func int(_ i: Int) -> Int? { i < c.count ? Int(c[i]) : nil }
    if c.first == "mid_block", c.count >= 5, c[1] == "attentions", c[3] == "transformer_blocks",
      let a = int(2), let b = int(4)
    {
      self.init(part: .mid, block: 0, attention: a, transformerBlock: b)
    } else if c.count >= 6, c[0] == "down_blocks" || c[0] == "up_blocks", c[2] == "attentions",
      c[4] == "transformer_blocks", let i = int(1), let a = int(3), let b = int(5)
    {
      self.init(part: c[0] == "down_blocks" ? .down : .up, block: i, attention: a, transformerBlock: b)
    } else {
      throw IPAdapterControlError.badShape(
        name: "layer name", expected: "a UNet cross-attention key path (down_blocks.i.attentions.j…)", got: [])
    }
  }

  /// The `Transformer2DModel` this layer belongs to: `down_blocks.2.attentions.1`, `mid_block.attentions.0`.
  public var attentionModule: String {
    part == .mid ? "mid_block.attentions.\(attention)" : "\(part.rawValue)_blocks.\(block).attentions.\(attention)"
  }

  /// The block: `down_blocks.2`, `mid_block`, `up_blocks.1`.
  public var blockModule: String { part == .mid ? "mid_block" : "\(part.rawValue)_blocks.\(block)" }

  public var description: String { "\(attentionModule).transformer_blocks.\(transformerBlock).attn2" }

  /// How many times the latent was halved before this layer (down block i → i, mid → n − 1,
  /// up block i → n − 1 − i, where n = `block_out_channels.count`).
  public func level(blockCount n: Int) -> Int {
    switch part {
    case .down: block
    case .mid: n - 1
    case .up: n - 1 - block
    }
  }

  /// The query count `Lq` of this layer for a latent of `latentHeight × latentWidth`: each
  /// downsampler (3×3 conv, stride 2, padding 1) maps a side `s` to `⌈s/2⌉`, and the up path
  /// restores exactly the skip sizes (diffusers `forward_upsample_size`).
  public func queryCount(latentHeight: Int, latentWidth: Int, blockCount: Int) -> Int {
    var h = latentHeight, w = latentWidth
    for _ in 0..<max(0, level(blockCount: blockCount)) {
      h = (h + 1) / 2
      w = (w + 1) / 2
    }
    return h * w
  }
}

extension IPAdapterLayerSlot {
  /// The parsed key path of this slot.
  public func position() throws -> IPAdapterLayerPosition { try IPAdapterLayerPosition(name: name) }
}

extension IPAdapterLayerTable {
  /// The slots a UNet built from `config` has, without building it (no weights are allocated):
  /// same order, names and channel counts as `slots(for: UNet2DConditionModel)` — down blocks,
  /// then up blocks, then the mid block. Works for configs the engine does not run (SDXL), which
  /// the controls use to resolve SDXL presets and weight types.
  ///
  /// matches: diffusers `UNet2DConditionModel.attn_processors` order for `CrossAttn*Block2D` /
  /// `UNetMidBlock2DCrossAttn` UNets (`transformer_layers_per_block` per block or per layer; the
  /// up path reversed or `reverse_transformer_layers_per_block`; the mid block the last entry).
  public static func slots(for config: UNet2DConditionConfig) -> [IPAdapterLayerSlot] {
    let n = config.blockOutChannels.count
    var names: [(String, Int)] = []
    func stack(_ prefix: String, depths: [Int], hidden: Int) {
      for (a, depth) in depths.enumerated() {
        for b in 0..<depth { names.append(("\(prefix).attentions.\(a).transformer_blocks.\(b).attn2", hidden)) }
      }
    }
    let down = config.downTransformerLayers
    for i in 0..<n where config.downBlockTypes[i] == "CrossAttnDownBlock2D" {
      stack("down_blocks.\(i)", depths: down[i], hidden: config.blockOutChannels[i])
    }
    let reversedChannels = Array(config.blockOutChannels.reversed())
    let up = config.upTransformerLayers
    for i in 0..<n where config.upBlockTypes[i] == "CrossAttnUpBlock2D" {
      stack("up_blocks.\(i)", depths: up[i], hidden: reversedChannels[i])
    }
    if config.midBlockType != nil {
      stack("mid_block", depths: [config.midTransformerLayers], hidden: config.blockOutChannels[n - 1])
    }
    return names.enumerated().map { k, e in IPAdapterLayerSlot(key: 2 * k + 1, layer: k, name: e.0, hidden: e.1) }
  }
}
