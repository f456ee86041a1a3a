import Imaging
import Models
import TensorCore

/// Projected image-prompt tokens of one adapter: conditional and unconditional, `[1, N·T, C]`.
public struct ImagePromptEmbeds: @unchecked Sendable {
  public var conditional: Tensor
  public var unconditional: Tensor

  public init(conditional: Tensor, unconditional: Tensor) {
    self.conditional = conditional
    self.unconditional = unconditional
  }
}

/// One adapter's contribution to a generation: its tokens and its scale λ.
public struct ImagePrompt: @unchecked Sendable {
  public var adapter: IPAdapter
  public var embeds: ImagePromptEmbeds
  /// λ in `out = Attn(Q, K_t, V_t) + λ·Attn(Q, K_ip, V_ip)`; 0 switches the adapter off exactly.
  public var scale: Float

  public init(adapter: IPAdapter, embeds: ImagePromptEmbeds, scale: Float) {
    self.adapter = adapter
    self.embeds = embeds
    self.scale = scale
  }

  /// Encodes and projects `images` (tokens of all images concatenated in order).
  public static func embeds(adapter: IPAdapter, encoder: ImagePromptEncoder, images: [Image]) throws -> ImagePromptEmbeds {
    try adapter.checkEncoder(encoder.model.config, encoderPath: encoder.path)
    let kind = adapter.projection.inputKind
    let cond = try encoder.features(images, kind: kind)
    let uncond = try encoder.unconditionalFeatures(count: images.count, kind: kind)
    return ImagePromptEmbeds(conditional: try adapter.tokens(cond), unconditional: try adapter.tokens(uncond))
  }

  /// Appends this adapter's keys/values to every cross-attention layer it patches. The keys and
  /// values are computed here, once per generation; with guidance the batch is
  /// `[unconditional, conditional]`. A zero scale adds nothing (bit-identical to no adapter).
  public func apply(to conditioning: inout CrossAttentionConditioning) throws {
    guard scale != 0 else { return }
    guard let attention = adapter.attention else {
      throw IPAdapterError.badInput("\(adapter.path) was loaded without a UNet and cannot patch attention")
    }
    let c = adapter.variant.crossDim
    guard embeds.conditional.rank == 3, embeds.conditional.shape[0] == 1, embeds.conditional.shape[2] == c,
      embeds.unconditional.shape == embeds.conditional.shape
    else {
      throw IPAdapterError.badEmbeds(
        path: adapter.path,
        reason: "image prompt embeds must be [1, tokens, \(c)] for both halves, got \(embeds.conditional.shape) / \(embeds.unconditional.shape)")
    }
    let tokens = conditioning.batch == 2
      ? try Ops.concatRows([embeds.unconditional, embeds.conditional]) : embeds.conditional
    let kv = try attention.keyValues(tokens)
    for (i, slot) in attention.slots.enumerated() {
      conditioning.append(AttentionSource(key: kv[i].key, value: kv[i].value, scale: scale), toLayer: slot.layer)
    }
  }
}
