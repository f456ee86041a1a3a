import Foundation

/// The `config.json` of a diffusers ControlNet folder.
///
/// matches: diffusers `ControlNetModel.__init__` arguments and defaults (0.42.1). Only the
/// Stable Diffusion 1.x/2.x architecture is supported (CrossAttnDownBlock2D / DownBlock2D,
/// UNetMidBlock2DCrossAttn, positional time embedding, no class or addition embeddings);
/// `validate` rejects every other setting with a `ModelConfigError` naming the field.
/// Fields that only matter for unsupported features (`addition_time_embed_dim`,
/// `projection_class_embeddings_input_dim`, `addition_embed_type_num_heads`) are ignored.
public struct ControlNetConfig: Codable, Sendable, Equatable {
  public var inChannels: Int = 4
  /// Channels of the control image (3 for RGB hints).
  public var conditioningChannels: Int = 3
  public var flipSinToCos: Bool = true
  public var freqShift: Int = 0
  public var downBlockTypes: [String] = [
    "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D",
  ]
  public var midBlockType: String? = "UNetMidBlock2DCrossAttn"
  /// `false`, or one flag per block (all must be false).
  public var onlyCrossAttention: BoolOrList = .single(false)
  public var blockOutChannels: [Int] = [320, 640, 1280, 1280]
  public var layersPerBlock: Int = 2
  public var downsamplePadding: Int = 1
  public var midBlockScaleFactor: Float = 1
  public var actFn: String = "silu"
  public var normNumGroups: Int? = 32
  public var normEps: Float = 1e-5
  public var crossAttentionDim: Int = 1280
  public var transformerLayersPerBlock: LayerCounts = .single(1)
  public var encoderHidDim: Int?
  public var encoderHidDimType: String?
  public var attentionHeadDim: IntOrList = .single(8)
  public var numAttentionHeads: IntOrList?
  public var useLinearProjection: Bool = false
  public var classEmbedType: String?
  public var additionEmbedType: String?
  /// SDXL: width of each micro-conditioning sinusoid.
  public var additionTimeEmbedDim: Int?
  /// SDXL: input width of `add_embedding` (pooled text width + time ids × `addition_time_embed_dim`).
  public var projectionClassEmbeddingsInputDim: Int?
  public var numClassEmbeds: Int?
  public var upcastAttention: Bool = false
  public var resnetTimeScaleShift: String = "default"
  /// "rgb", or "bgr" (the control image's channels are reversed before embedding).
  public var controlnetConditioningChannelOrder: String = "rgb"
  /// Channels of the control-image embedding convolutions; `count - 1` stride-2 convolutions
  /// downsample the control image to the latent size.
  public var conditioningEmbeddingOutChannels: [Int]? = [16, 32, 96, 256]
  /// Residuals are spatial means (shuffle-style ControlNets); guess-mode scales are then ignored.
  public var globalPoolConditions: Bool = false

  enum CodingKeys: String, CodingKey {
    case inChannels = "in_channels", conditioningChannels = "conditioning_channels"
    case flipSinToCos = "flip_sin_to_cos", freqShift = "freq_shift"
    case downBlockTypes = "down_block_types", midBlockType = "mid_block_type"
    case onlyCrossAttention = "only_cross_attention", blockOutChannels = "block_out_channels"
    case layersPerBlock = "layers_per_block", downsamplePadding = "downsample_padding"
    case midBlockScaleFactor = "mid_block_scale_factor", actFn = "act_fn"
    case normNumGroups = "norm_num_groups", normEps = "norm_eps"
    case crossAttentionDim = "cross_attention_dim", transformerLayersPerBlock = "transformer_layers_per_block"
    case encoderHidDim = "encoder_hid_dim", encoderHidDimType = "encoder_hid_dim_type"
    case attentionHeadDim = "attention_head_dim", numAttentionHeads = "num_attention_heads"
    case useLinearProjection = "use_linear_projection", classEmbedType = "class_embed_type"
    case additionEmbedType = "addition_embed_type", numClassEmbeds = "num_class_embeds"
    case additionTimeEmbedDim = "addition_time_embed_dim"
    case projectionClassEmbeddingsInputDim = "projection_class_embeddings_input_dim"
    case upcastAttention = "upcast_attention", resnetTimeScaleShift = "resnet_time_scale_shift"
    case controlnetConditioningChannelOrder = "controlnet_conditioning_channel_order"
    case conditioningEmbeddingOutChannels = "conditioning_embedding_out_channels"
    case globalPoolConditions = "global_pool_conditions"
  }

  public init() {}

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    func get<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
      if let v = try c.decodeIfPresent(T.self, forKey: key) { value = v }
    }
    /// Optional fields: an explicit `null` overrides a non-nil default, as in Python.
    func getOptional<T: Decodable>(_ key: CodingKeys, _ value: inout T?) throws {
      if c.contains(key) { value = try c.decodeIfPresent(T.self, forKey: key) }
    }
    var d = ControlNetConfig()
    try get(.inChannels, &d.inChannels)
    try get(.conditioningChannels, &d.conditioningChannels)
    try get(.flipSinToCos, &d.flipSinToCos)
    try get(.freqShift, &d.freqShift)
    try get(.downBlockTypes, &d.downBlockTypes)
    try getOptional(.midBlockType, &d.midBlockType)
    try get(.onlyCrossAttention, &d.onlyCrossAttention)
    try get(.blockOutChannels, &d.blockOutChannels)
    try get(.layersPerBlock, &d.layersPerBlock)
    try get(.downsamplePadding, &d.downsamplePadding)
    try get(.midBlockScaleFactor, &d.midBlockScaleFactor)
    try get(.actFn, &d.actFn)
    try getOptional(.normNumGroups, &d.normNumGroups)
    try get(.normEps, &d.normEps)
    try get(.crossAttentionDim, &d.crossAttentionDim)
    try get(.transformerLayersPerBlock, &d.transformerLayersPerBlock)
    try getOptional(.encoderHidDim, &d.encoderHidDim)
    try getOptional(.encoderHidDimType, &d.encoderHidDimType)
    try get(.attentionHeadDim, &d.attentionHeadDim)
    try getOptional(.numAttentionHeads, &d.numAttentionHeads)
    try get(.useLinearProjection, &d.useLinearProjection)
    try getOptional(.classEmbedType, &d.classEmbedType)
    try getOptional(.additionEmbedType, &d.additionEmbedType)
    try getOptional(.additionTimeEmbedDim, &d.additionTimeEmbedDim)
    try getOptional(.projectionClassEmbeddingsInputDim, &d.projectionClassEmbeddingsInputDim)
    try getOptional(.numClassEmbeds, &d.numClassEmbeds)
    try get(.upcastAttention, &d.upcastAttention)
    try get(.resnetTimeScaleShift, &d.resnetTimeScaleShift)
    try get(.controlnetConditioningChannelOrder, &d.controlnetConditioningChannelOrder)
    try getOptional(.conditioningEmbeddingOutChannels, &d.conditioningEmbeddingOutChannels)
    try get(.globalPoolConditions, &d.globalPoolConditions)
    self = d
  }

  /// Throws `ModelConfigError.unsupported`/`.malformed` for anything this engine does not build.
  public func validate(path: String) throws {
    func unsupported(_ field: String, _ value: Any, _ supported: String) -> ModelConfigError {
      .unsupported(path: path, field: field, value: "\(value)", supported: supported)
    }
    func malformed(_ field: String, _ reason: String) -> ModelConfigError {
      .malformed(path: path, field: field, reason: reason)
    }
    let check = ConfigChecker(path: path)
    try check.checkUNetEncoder(
      inChannels: inChannels, blockOutChannels: blockOutChannels, layersPerBlock: .single(layersPerBlock),
      normNumGroups: normNumGroups, normEps: normEps, crossAttentionDim: .single(crossAttentionDim),
      attentionHeadDim: attentionHeadDim, numAttentionHeads: numAttentionHeads,
      transformerLayersPerBlock: transformerLayersPerBlock, freqShift: freqShift,
      downsamplePadding: downsamplePadding, midBlockScaleFactor: midBlockScaleFactor)
    try check.check("conditioning_channels", conditioningChannels, in: ConfigLimits.imageChannels)
    if let embed = conditioningEmbeddingOutChannels {
      try check.check("conditioning_embedding_out_channels (count)", embed.count, in: ConfigLimits.blocks)
      try check.check("conditioning_embedding_out_channels", embed, in: ConfigLimits.width)
    }
    let n = blockOutChannels.count
    guard downBlockTypes.count == n else {
      throw malformed("down_block_types", "has \(downBlockTypes.count) entries, block_out_channels has \(n)")
    }
    let supportedDown = UNet2DConditionConfig.supportedDownBlocks
    for (i, t) in downBlockTypes.enumerated() where !supportedDown.contains(t) {
      throw unsupported("down_block_types[\(i)]", t, supportedDown.joined(separator: ", "))
    }
    guard let midBlockType else { throw unsupported("mid_block_type", "null", "UNetMidBlock2DCrossAttn") }
    if midBlockType != "UNetMidBlock2DCrossAttn" {
      throw unsupported("mid_block_type", midBlockType, "UNetMidBlock2DCrossAttn")
    }
    if case .list(let v) = attentionHeadDim, v.count != n { throw malformed("attention_head_dim", "has \(v.count) entries, expected \(n)") }
    _ = try check.layerCounts(transformerLayersPerBlock, layers: Array(repeating: layersPerBlock, count: n))
    if case .list(let v)? = numAttentionHeads, v.count != n {
      throw malformed("num_attention_heads", "has \(v.count) entries, expected \(n)")
    }
    switch onlyCrossAttention {
    case .single(let flag): if flag { throw unsupported("only_cross_attention", true, "false") }
    case .list(let flags):
      guard flags.count == n else { throw malformed("only_cross_attention", "has \(flags.count) entries, expected \(n)") }
      if flags.contains(true) { throw unsupported("only_cross_attention", flags, "all false") }
    }
    guard let embed = conditioningEmbeddingOutChannels else {
      throw malformed("conditioning_embedding_out_channels", "must be a list of channel counts, got null")
    }
    guard !embed.isEmpty, embed.allSatisfy({ $0 > 0 }) else {
      throw malformed("conditioning_embedding_out_channels", "must be a non-empty list of positive counts, got \(embed)")
    }
    guard let groups = normNumGroups else { throw unsupported("norm_num_groups", "null", "an integer") }
    for (i, ch) in blockOutChannels.enumerated() where ch % groups != 0 {
      throw malformed("block_out_channels[\(i)]", "\(ch) is not divisible by norm_num_groups \(groups)")
    }
    if !["rgb", "bgr"].contains(controlnetConditioningChannelOrder) {
      throw unsupported("controlnet_conditioning_channel_order", controlnetConditioningChannelOrder, "rgb, bgr")
    }
    if actFn != "silu" { throw unsupported("act_fn", actFn, "silu") }
    if let classEmbedType { throw unsupported("class_embed_type", classEmbedType, "null") }
    try check.checkTextTime(
      additionEmbedType: additionEmbedType, additionTimeEmbedDim: additionTimeEmbedDim,
      projectionClassEmbeddingsInputDim: projectionClassEmbeddingsInputDim)
    if let numClassEmbeds { throw unsupported("num_class_embeds", numClassEmbeds, "null") }
    if let encoderHidDim { throw unsupported("encoder_hid_dim", encoderHidDim, "null") }
    if let encoderHidDimType { throw unsupported("encoder_hid_dim_type", encoderHidDimType, "null") }
    if resnetTimeScaleShift != "default" { throw unsupported("resnet_time_scale_shift", resnetTimeScaleShift, "default") }
    let heads = numAttentionHeads ?? attentionHeadDim
    for (i, h) in heads.perBlock(n).enumerated() where h <= 0 || blockOutChannels[i] % h != 0 {
      throw malformed(
        numAttentionHeads == nil ? "attention_head_dim" : "num_attention_heads",
        "\(h) heads do not divide \(blockOutChannels[i]) channels of block \(i)")
    }
  }

  /// Attention heads per block (diffusers quirk: `num_attention_heads or attention_head_dim`).
  public var headsPerBlock: [Int] { (numAttentionHeads ?? attentionHeadDim).perBlock(blockOutChannels.count) }
  public var downTransformerLayers: [[Int]] {
    LayerCounts.expand(transformerLayersPerBlock, layers: Array(repeating: layersPerBlock, count: blockOutChannels.count))
  }
  public var midTransformerLayers: Int { LayerCounts.midCount(transformerLayersPerBlock, blocks: blockOutChannels.count) }
  public var groups: Int { normNumGroups ?? 32 }
  /// SDXL's text-and-time addition embedding (`addition_embed_type: "text_time"`), when present.
  public var textTimeEmbedding: TextTimeEmbeddingShape? {
    guard additionEmbedType == "text_time", let t = additionTimeEmbedDim, let i = projectionClassEmbeddingsInputDim else {
      return nil
    }
    return TextTimeEmbeddingShape(timeEmbedDim: t, inputDim: i)
  }
  /// The control-image embedding channels (validated non-nil).
  public var embeddingChannels: [Int] { conditioningEmbeddingOutChannels ?? [] }
  /// How many times the control image is halved: `conditioning_embedding_out_channels.count - 1`.
  public var controlImageDownsamplings: Int { max(embeddingChannels.count - 1, 0) }
}

/// A config value that diffusers accepts either as one flag or as one flag per block.
///
/// matches: diffusers' `bool | tuple[bool]` config arguments (e.g. `only_cross_attention`).
public enum BoolOrList: Codable, Equatable, Sendable {
  case single(Bool)
  case list([Bool])

  public init(from decoder: Decoder) throws {
    let c = try decoder.singleValueContainer()
    if let v = try? c.decode(Bool.self) {
      self = .single(v)
    } else {
      self = .list(try c.decode([Bool].self))
    }
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    switch self {
    case .single(let v): try c.encode(v)
    case .list(let v): try c.encode(v)
    }
  }
}
