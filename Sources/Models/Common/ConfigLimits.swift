/// The ranges every number read from a model's `config.json` must fall in before it sizes, divides
/// or indexes anything: config files come from strangers, so a negative layer count, a zero group
/// count or a width of 10¹² is a typed error naming the file and the field, never a trap or a huge
/// allocation.
///
/// The bounds are far above every released Stable Diffusion / CLIP configuration (the largest today:
/// SDXL's 1280-channel blocks with 10 transformer layers, OpenCLIP ViT-bigG's 1664-wide, 48-layer
/// encoder with 8192-wide MLPs, CLIP text vocabularies of 49,408) and low enough that building a
/// module tree from them is cheap (no parameter is allocated before weights are loaded, but module
/// objects are, one per layer).
///
/// matches: no reference (diffusers and transformers trust their configs).
public enum ConfigLimits {
  /// Channel counts, hidden sizes, projection and cross-attention widths.
  public static let width: ClosedRange<Int> = 1...65_536
  /// MLP / intermediate widths.
  public static let intermediateWidth: ClosedRange<Int> = 1...262_144
  /// Resolution levels of a UNet or VAE (`block_out_channels` entries).
  public static let blocks: ClosedRange<Int> = 1...16
  /// Layers per block, transformer layers per block, encoder depth.
  public static let layers: ClosedRange<Int> = 1...256
  /// Attention heads (or diffusers' `attention_head_dim`, which holds head counts for SD 1.x).
  public static let heads: ClosedRange<Int> = 1...4_096
  /// Image channels (RGB = 3) and latent channels.
  public static let imageChannels: ClosedRange<Int> = 1...64
  /// Convolution kernel sizes.
  public static let kernel: ClosedRange<Int> = 1...15
  /// Token vocabularies.
  public static let vocabulary: ClosedRange<Int> = 1...2_097_152
  /// Text positions (`max_position_embeddings`, 77 for CLIP).
  public static let positions: ClosedRange<Int> = 1...65_536
  /// Image sides in pixels named by a config (`image_size`, `sample_size`).
  public static let imageSide: ClosedRange<Int> = 1...16_384
  /// Normalisation groups.
  public static let groups: ClosedRange<Int> = 1...65_536
}

/// Range checks with errors that name the file and the field, for config validation.
///
/// matches: no reference. Used by every model config's `validate(path:)`.
public struct ConfigChecker: Sendable {
  /// The config file the values came from (named in errors).
  public let path: String

  public init(path: String) { self.path = path }

  /// `value` must lie in `range`.
  public func check(_ field: String, _ value: Int, in range: ClosedRange<Int>) throws(ModelConfigError) {
    guard range.contains(value) else {
      throw .outOfRange(path: path, field: field, value: "\(value)", allowed: Self.describe(range))
    }
  }

  /// Every value must lie in `range`; the error names the entry (`field[i]`).
  public func check(_ field: String, _ values: [Int], in range: ClosedRange<Int>) throws(ModelConfigError) {
    for (i, v) in values.enumerated() { try check("\(field)[\(i)]", v, in: range) }
  }

  /// A per-block value (one number or one per block) must lie in `range`.
  public func check(_ field: String, _ value: IntOrList, in range: ClosedRange<Int>) throws(ModelConfigError) {
    switch value {
    case .single(let v): try check(field, v, in: range)
    case .list(let v): try check(field, v, in: range)
    }
  }

  /// `value` must be finite and, with `positive`, above zero.
  public func checkFinite(_ field: String, _ value: Float, positive: Bool = false) throws(ModelConfigError) {
    guard value.isFinite, !positive || value > 0 else {
      throw .outOfRange(
        path: path, field: field, value: "\(value)", allowed: positive ? "a finite number above 0" : "a finite number")
    }
  }

  /// `value` must be finite and non-zero (it divides something).
  public func checkFiniteNonZero(_ field: String, _ value: Float) throws(ModelConfigError) {
    guard value.isFinite, value != 0 else {
      throw .outOfRange(path: path, field: field, value: "\(value)", allowed: "a finite, non-zero number")
    }
  }

  static func describe(_ range: ClosedRange<Int>) -> String {
    "\(range.lowerBound)…\(range.upperBound)"
  }
}

extension ConfigChecker {
  /// The ranges of the fields `UNet2DConditionConfig` and `ControlNetConfig` share (the UNet's
  /// encoder half: input convolution, time embedding, down and mid blocks). Checked before any of
  /// them divides (`norm_num_groups`, head counts) or sizes a range (`layers_per_block`).
  func checkUNetEncoder(
    inChannels: Int, blockOutChannels: [Int], layersPerBlock: IntOrList, normNumGroups: Int?, normEps: Float,
    crossAttentionDim: IntOrList, attentionHeadDim: IntOrList, numAttentionHeads: IntOrList?,
    transformerLayersPerBlock: LayerCounts, freqShift: Int, downsamplePadding: Int, midBlockScaleFactor: Float
  ) throws(ModelConfigError) {
    try check("in_channels", inChannels, in: ConfigLimits.imageChannels)
    try check("block_out_channels (count)", blockOutChannels.count, in: ConfigLimits.blocks)
    try check("block_out_channels", blockOutChannels, in: ConfigLimits.width)
    try check("layers_per_block", layersPerBlock, in: ConfigLimits.layers)
    if let normNumGroups { try check("norm_num_groups", normNumGroups, in: ConfigLimits.groups) }
    try checkFinite("norm_eps", normEps, positive: true)
    try check("cross_attention_dim", crossAttentionDim, in: ConfigLimits.width)
    try check("attention_head_dim", attentionHeadDim, in: ConfigLimits.heads)
    if let numAttentionHeads { try check("num_attention_heads", numAttentionHeads, in: ConfigLimits.heads) }
    try check("transformer_layers_per_block", transformerLayersPerBlock.values, in: ConfigLimits.layers)
    try check("freq_shift", freqShift, in: 0...1)
    try check("downsample_padding", downsamplePadding, in: 0...1)
    try checkFinite("mid_block_scale_factor", midBlockScaleFactor)
  }
}

extension ConfigChecker {
  /// Expands `transformer_layers_per_block` to one count per layer of each block (`layers[b]`
  /// layers in block `b`): a per-layer list must have exactly that many entries.
  func layerCounts(
    _ counts: LayerCounts, layers: [Int], field: String = "transformer_layers_per_block"
  ) throws(ModelConfigError) -> [[Int]] {
    let entries = counts.entries(layers.count)
    guard entries.count == layers.count else {
      throw .malformed(path: path, field: field, reason: "has \(entries.count) entries, expected \(layers.count)")
    }
    var out: [[Int]] = []
    for (b, entry) in entries.enumerated() {
      switch entry {
      case .single(let v): out.append(Array(repeating: v, count: layers[b]))
      case .list(let v):
        guard v.count == layers[b] else {
          throw .malformed(
            path: path, field: "\(field)[\(b)]", reason: "lists \(v.count) layers, the block has \(layers[b])")
        }
        out.append(v)
      }
    }
    return out
  }
}

extension ConfigChecker {
  /// SDXL's `addition_embed_type` (null or `"text_time"`, which needs an even
  /// `addition_time_embed_dim` and a `projection_class_embeddings_input_dim`), shared by the UNet
  /// and ControlNet configs.
  func checkTextTime(
    additionEmbedType: String?, additionTimeEmbedDim: Int?, projectionClassEmbeddingsInputDim: Int?
  ) throws(ModelConfigError) {
    guard let additionEmbedType else { return }
    guard additionEmbedType == "text_time" else {
      throw .unsupported(path: path, field: "addition_embed_type", value: additionEmbedType, supported: "null, text_time")
    }
    guard let timeDim = additionTimeEmbedDim else {
      throw .malformed(path: path, field: "addition_time_embed_dim", reason: "required with addition_embed_type text_time")
    }
    guard let inputDim = projectionClassEmbeddingsInputDim else {
      throw .malformed(
        path: path, field: "projection_class_embeddings_input_dim", reason: "required with addition_embed_type text_time")
    }
    try check("addition_time_embed_dim", timeDim, in: ConfigLimits.width)
    try check("projection_class_embeddings_input_dim", inputDim, in: ConfigLimits.width)
    guard timeDim % 2 == 0 else {
      throw .malformed(path: path, field: "addition_time_embed_dim", reason: "\(timeDim) is not even")
    }
  }
}

extension ConfigChecker {
  /// The ranges of the transformer fields `CLIPTextConfig` and `CLIPVisionConfig` share.
  func checkCLIPEncoder(
    hiddenSize: Int, intermediateSize: Int, layers: Int, heads: Int, projectionDim: Int, layerNormEps: Float
  ) throws(ModelConfigError) {
    try check("hidden_size", hiddenSize, in: ConfigLimits.width)
    try check("intermediate_size", intermediateSize, in: ConfigLimits.intermediateWidth)
    try check("num_hidden_layers", layers, in: ConfigLimits.layers)
    try check("num_attention_heads", heads, in: ConfigLimits.heads)
    try check("projection_dim", projectionDim, in: ConfigLimits.width)
    try checkFinite("layer_norm_eps", layerNormEps, positive: true)
  }
}
