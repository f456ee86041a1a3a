import Foundation

/// The `unet/config.json` of a diffusers pipeline.
///
/// matches: diffusers `UNet2DConditionModel.__init__` arguments and defaults (0.42.1). The Stable
/// Diffusion 1.x/2.x and SDXL architectures are supported (SDXL: `addition_embed_type: "text_time"`
/// with `addition_time_embed_dim` and `projection_class_embeddings_input_dim`); `validate` rejects
/// every other setting with an error naming the field.
public struct UNet2DConditionConfig: Codable, Sendable, Equatable {
  public var sampleSize: Int?
  public var inChannels: Int = 4
  public var outChannels: Int = 4
  public var centerInputSample: Bool = false
  public var flipSinToCos: Bool = true
  public var freqShift: Int = 0
  public var downBlockTypes: [String] = [
    "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D",
  ]
  public var midBlockType: String? = "UNetMidBlock2DCrossAttn"
  public var upBlockTypes: [String] = [
    "UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
  ]
  public var onlyCrossAttention: Bool = false
  public var blockOutChannels: [Int] = [320, 640, 1280, 1280]
  public var layersPerBlock: IntOrList = .single(2)
  public var downsamplePadding: Int = 1
  public var midBlockScaleFactor: Float = 1
  public var actFn: String = "silu"
  public var normNumGroups: Int? = 32
  public var normEps: Float = 1e-5
  public var crossAttentionDim: IntOrList = .single(1280)
  /// Transformer blocks per attention: one count, one per block, or per block one per layer.
  public var transformerLayersPerBlock: LayerCounts = .single(1)
  /// The up blocks' counts (required with per-layer `transformer_layers_per_block`); nil = the
  /// down blocks' counts reversed.
  public var reverseTransformerLayersPerBlock: [IntOrList]?
  public var encoderHidDim: Int?
  public var encoderHidDimType: String?
  public var attentionHeadDim: IntOrList = .single(8)
  public var numAttentionHeads: IntOrList?
  public var dualCrossAttention: Bool = false
  public var useLinearProjection: Bool = false
  public var classEmbedType: String?
  public var additionEmbedType: String?
  /// Width of each micro-conditioning sinusoid (SDXL: 256).
  public var additionTimeEmbedDim: Int?
  /// Input width of `add_embedding` (SDXL: pooled text width + 6 × `addition_time_embed_dim`).
  public var projectionClassEmbeddingsInputDim: Int?
  public var numClassEmbeds: Int?
  public var upcastAttention: Bool = false
  public var resnetTimeScaleShift: String = "default"
  public var resnetSkipTimeAct: Bool = false
  public var resnetOutScaleFactor: Float = 1
  public var timeEmbeddingType: String = "positional"
  public var timeEmbeddingDim: Int?
  public var timeEmbeddingActFn: String?
  public var timestepPostAct: String?
  public var timeCondProjDim: Int?
  public var convInKernel: Int = 3
  public var convOutKernel: Int = 3
  public var attentionType: String = "default"
  public var crossAttentionNorm: String?

  enum CodingKeys: String, CodingKey {
    case sampleSize = "sample_size", inChannels = "in_channels", outChannels = "out_channels"
    case centerInputSample = "center_input_sample", flipSinToCos = "flip_sin_to_cos"
    case freqShift = "freq_shift", downBlockTypes = "down_block_types"
    case midBlockType = "mid_block_type", upBlockTypes = "up_block_types"
    case onlyCrossAttention = "only_cross_attention", blockOutChannels = "block_out_channels"
    case layersPerBlock = "layers_per_block", downsamplePadding = "downsample_padding"
    case midBlockScaleFactor = "mid_block_scale_factor", actFn = "act_fn"
    case normNumGroups = "norm_num_groups", normEps = "norm_eps"
    case crossAttentionDim = "cross_attention_dim"
    case transformerLayersPerBlock = "transformer_layers_per_block"
    case reverseTransformerLayersPerBlock = "reverse_transformer_layers_per_block"
    case encoderHidDim = "encoder_hid_dim", encoderHidDimType = "encoder_hid_dim_type"
    case attentionHeadDim = "attention_head_dim", numAttentionHeads = "num_attention_heads"
    case dualCrossAttention = "dual_cross_attention", useLinearProjection = "use_linear_projection"
    case classEmbedType = "class_embed_type", additionEmbedType = "addition_embed_type"
    case additionTimeEmbedDim = "addition_time_embed_dim"
    case projectionClassEmbeddingsInputDim = "projection_class_embeddings_input_dim"
    case numClassEmbeds = "num_class_embeds", upcastAttention = "upcast_attention"
    case resnetTimeScaleShift = "resnet_time_scale_shift"
    case resnetSkipTimeAct = "resnet_skip_time_act", resnetOutScaleFactor = "resnet_out_scale_factor"
    case timeEmbeddingType = "time_embedding_type", timeEmbeddingDim = "time_embedding_dim"
    case timeEmbeddingActFn = "time_embedding_act_fn", timestepPostAct = "timestep_post_act"
    case timeCondProjDim = "time_cond_proj_dim", convInKernel = "conv_in_kernel"
    case convOutKernel = "conv_out_kernel", attentionType = "attention_type"
    case crossAttentionNorm = "cross_attention_norm"
  }

  public init() {}

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    func get<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
      try c.decodeIfPresent(T.self, forKey: key) ?? fallback
    }
    var d = UNet2DConditionConfig()
    d.sampleSize = try c.decodeIfPresent(Int.self, forKey: .sampleSize)
    d.inChannels = try get(.inChannels, d.inChannels)
    d.outChannels = try get(.outChannels, d.outChannels)
    d.centerInputSample = try get(.centerInputSample, d.centerInputSample)
    d.flipSinToCos = try get(.flipSinToCos, d.flipSinToCos)
    d.freqShift = try get(.freqShift, d.freqShift)
    d.downBlockTypes = try get(.downBlockTypes, d.downBlockTypes)
    d.midBlockType = c.contains(.midBlockType)
      ? try c.decodeIfPresent(String.self, forKey: .midBlockType) : d.midBlockType
    d.upBlockTypes = try get(.upBlockTypes, d.upBlockTypes)
    d.onlyCrossAttention = try get(.onlyCrossAttention, d.onlyCrossAttention)
    d.blockOutChannels = try get(.blockOutChannels, d.blockOutChannels)
    d.layersPerBlock = try get(.layersPerBlock, d.layersPerBlock)
    d.downsamplePadding = try get(.downsamplePadding, d.downsamplePadding)
    d.midBlockScaleFactor = try get(.midBlockScaleFactor, d.midBlockScaleFactor)
    d.actFn = try get(.actFn, d.actFn)
    d.normNumGroups = c.contains(.normNumGroups)
      ? try c.decodeIfPresent(Int.self, forKey: .normNumGroups) : d.normNumGroups
    d.normEps = try get(.normEps, d.normEps)
    d.crossAttentionDim = try get(.crossAttentionDim, d.crossAttentionDim)
    d.transformerLayersPerBlock = try get(.transformerLayersPerBlock, d.transformerLayersPerBlock)
    d.reverseTransformerLayersPerBlock = try c.decodeIfPresent([IntOrList].self, forKey: .reverseTransformerLayersPerBlock)
    d.encoderHidDim = try c.decodeIfPresent(Int.self, forKey: .encoderHidDim)
    d.encoderHidDimType = try c.decodeIfPresent(String.self, forKey: .encoderHidDimType)
    d.attentionHeadDim = try get(.attentionHeadDim, d.attentionHeadDim)
    d.numAttentionHeads = try c.decodeIfPresent(IntOrList.self, forKey: .numAttentionHeads)
    d.dualCrossAttention = try get(.dualCrossAttention, d.dualCrossAttention)
    d.useLinearProjection = try get(.useLinearProjection, d.useLinearProjection)
    d.classEmbedType = try c.decodeIfPresent(String.self, forKey: .classEmbedType)
    d.additionEmbedType = try c.decodeIfPresent(String.self, forKey: .additionEmbedType)
    d.additionTimeEmbedDim = try c.decodeIfPresent(Int.self, forKey: .additionTimeEmbedDim)
    d.projectionClassEmbeddingsInputDim = try c.decodeIfPresent(Int.self, forKey: .projectionClassEmbeddingsInputDim)
    d.numClassEmbeds = try c.decodeIfPresent(Int.self, forKey: .numClassEmbeds)
    d.upcastAttention = try get(.upcastAttention, d.upcastAttention)
    d.resnetTimeScaleShift = try get(.resnetTimeScaleShift, d.resnetTimeScaleShift)
    d.resnetSkipTimeAct = try get(.resnetSkipTimeAct, d.resnetSkipTimeAct)
    d.resnetOutScaleFactor = try get(.resnetOutScaleFactor, d.resnetOutScaleFactor)
    d.timeEmbeddingType = try get(.timeEmbeddingType, d.timeEmbeddingType)
    d.timeEmbeddingDim = try c.decodeIfPresent(Int.self, forKey: .timeEmbeddingDim)
    d.timeEmbeddingActFn = try c.decodeIfPresent(String.self, forKey: .timeEmbeddingActFn)
    d.timestepPostAct = try c.decodeIfPresent(String.self, forKey: .timestepPostAct)
    d.timeCondProjDim = try c.decodeIfPresent(Int.self, forKey: .timeCondProjDim)
    d.convInKernel = try get(.convInKernel, d.convInKernel)
    d.convOutKernel = try get(.convOutKernel, d.convOutKernel)
    d.attentionType = try get(.attentionType, d.attentionType)
    d.crossAttentionNorm = try c.decodeIfPresent(String.self, forKey: .crossAttentionNorm)
    self = d
  }

  public static let supportedDownBlocks = ["CrossAttnDownBlock2D", "DownBlock2D"]
  public static let supportedUpBlocks = ["CrossAttnUpBlock2D", "UpBlock2D"]

  /// Throws `ModelConfigError.unsupported`/`.malformed` for anything this engine does not build.
  public func validate(path: String) throws {
    func unsupported(_ field: String, _ value: Any, _ supported: String) -> ModelConfigError {
      .unsupported(path: path, field: field, value: "\(value)", supported: supported)
    }
    let check = ConfigChecker(path: path)
    try check.checkUNetEncoder(
      inChannels: inChannels, blockOutChannels: blockOutChannels, layersPerBlock: layersPerBlock,
      normNumGroups: normNumGroups, normEps: normEps, crossAttentionDim: crossAttentionDim,
      attentionHeadDim: attentionHeadDim, numAttentionHeads: numAttentionHeads,
      transformerLayersPerBlock: transformerLayersPerBlock, freqShift: freqShift,
      downsamplePadding: downsamplePadding, midBlockScaleFactor: midBlockScaleFactor)
    try check.check("out_channels", outChannels, in: ConfigLimits.imageChannels)
    try check.check("conv_in_kernel", convInKernel, in: ConfigLimits.kernel)
    try check.check("conv_out_kernel", convOutKernel, in: ConfigLimits.kernel)
    if let sampleSize { try check.check("sample_size", sampleSize, in: ConfigLimits.imageSide) }
    let n = blockOutChannels.count
    guard downBlockTypes.count == n else {
      throw ModelConfigError.malformed(
        path: path, field: "down_block_types", reason: "has \(downBlockTypes.count) entries, block_out_channels has \(n)")
    }
    guard upBlockTypes.count == n else {
      throw ModelConfigError.malformed(
        path: path, field: "up_block_types", reason: "has \(upBlockTypes.count) entries, block_out_channels has \(n)")
    }
    for (i, t) in downBlockTypes.enumerated() where !Self.supportedDownBlocks.contains(t) {
      throw unsupported("down_block_types[\(i)]", t, Self.supportedDownBlocks.joined(separator: ", "))
    }
    for (i, t) in upBlockTypes.enumerated() where !Self.supportedUpBlocks.contains(t) {
      throw unsupported("up_block_types[\(i)]", t, Self.supportedUpBlocks.joined(separator: ", "))
    }
    if let midBlockType, midBlockType != "UNetMidBlock2DCrossAttn" {
      throw unsupported("mid_block_type", midBlockType, "UNetMidBlock2DCrossAttn")
    }
    for (field, list) in [
      ("layers_per_block", layersPerBlock), ("attention_head_dim", attentionHeadDim),
      ("cross_attention_dim", crossAttentionDim),
    ] {
      if case .list(let v) = list, v.count != n {
        throw ModelConfigError.malformed(path: path, field: field, reason: "has \(v.count) entries, expected \(n)")
      }
    }
    if case .list(let v)? = numAttentionHeads, v.count != n {
      throw ModelConfigError.malformed(path: path, field: "num_attention_heads", reason: "has \(v.count) entries, expected \(n)")
    }
    let layers = layersPerBlock.perBlock(n)
    _ = try check.layerCounts(transformerLayersPerBlock, layers: layers)
    if let reverse = reverseTransformerLayersPerBlock {
      try check.check("reverse_transformer_layers_per_block", reverse.flatMap(\.values), in: ConfigLimits.layers)
      _ = try check.layerCounts(
        .perBlock(reverse), layers: layers.reversed().map { $0 + 1 }, field: "reverse_transformer_layers_per_block")
    } else if transformerLayersPerBlock.isNested {
      throw ModelConfigError.malformed(
        path: path, field: "reverse_transformer_layers_per_block",
        reason: "is required with per-layer transformer_layers_per_block (an asymmetric UNet), as in diffusers")
    }
    if case .list = crossAttentionDim { throw unsupported("cross_attention_dim", "a list", "one integer") }
    guard let groups = normNumGroups else { throw unsupported("norm_num_groups", "null", "an integer") }
    for (i, ch) in blockOutChannels.enumerated() where ch % groups != 0 {
      throw ModelConfigError.malformed(
        path: path, field: "block_out_channels[\(i)]", reason: "\(ch) is not divisible by norm_num_groups \(groups)")
    }
    if actFn != "silu" { throw unsupported("act_fn", actFn, "silu") }
    if centerInputSample { throw unsupported("center_input_sample", true, "false") }
    if onlyCrossAttention { throw unsupported("only_cross_attention", true, "false") }
    if dualCrossAttention { throw unsupported("dual_cross_attention", true, "false") }
    if let classEmbedType { throw unsupported("class_embed_type", classEmbedType, "null") }
    try check.checkTextTime(
      additionEmbedType: additionEmbedType, additionTimeEmbedDim: additionTimeEmbedDim,
      projectionClassEmbeddingsInputDim: projectionClassEmbeddingsInputDim)
    if let numClassEmbeds { throw unsupported("num_class_embeds", numClassEmbeds, "null") }
    if let encoderHidDimType { throw unsupported("encoder_hid_dim_type", encoderHidDimType, "null") }
    if resnetTimeScaleShift != "default" { throw unsupported("resnet_time_scale_shift", resnetTimeScaleShift, "default") }
    if resnetSkipTimeAct { throw unsupported("resnet_skip_time_act", true, "false") }
    if resnetOutScaleFactor != 1 { throw unsupported("resnet_out_scale_factor", resnetOutScaleFactor, "1.0") }
    if timeEmbeddingType != "positional" { throw unsupported("time_embedding_type", timeEmbeddingType, "positional") }
    if let timeEmbeddingDim { throw unsupported("time_embedding_dim", timeEmbeddingDim, "null") }
    if let timeEmbeddingActFn { throw unsupported("time_embedding_act_fn", timeEmbeddingActFn, "null") }
    if let timestepPostAct { throw unsupported("timestep_post_act", timestepPostAct, "null") }
    if let timeCondProjDim { throw unsupported("time_cond_proj_dim", timeCondProjDim, "null") }
    if convInKernel % 2 == 0 { throw unsupported("conv_in_kernel", convInKernel, "an odd size") }
    if convOutKernel % 2 == 0 { throw unsupported("conv_out_kernel", convOutKernel, "an odd size") }
    if attentionType != "default" { throw unsupported("attention_type", attentionType, "default") }
    if let crossAttentionNorm { throw unsupported("cross_attention_norm", crossAttentionNorm, "null") }
    let heads = numAttentionHeads ?? attentionHeadDim
    for (i, h) in heads.perBlock(n).enumerated() where h <= 0 || blockOutChannels[i] % h != 0 {
      throw ModelConfigError.malformed(
        path: path, field: numAttentionHeads == nil ? "attention_head_dim" : "num_attention_heads",
        reason: "\(h) heads do not divide \(blockOutChannels[i]) channels of block \(i)")
    }
  }

  /// Attention heads per block. diffusers quirk: for SD1.x `attention_head_dim` holds the number
  /// of heads (`num_attention_heads = num_attention_heads or attention_head_dim`).
  public var headsPerBlock: [Int] { (numAttentionHeads ?? attentionHeadDim).perBlock(blockOutChannels.count) }
  public var layersPerBlockList: [Int] { layersPerBlock.perBlock(blockOutChannels.count) }
  /// The first count of each block (the whole story unless the config lists per-layer counts).
  public var transformerLayersList: [Int] { downTransformerLayers.map { $0.first ?? 1 } }
  /// Transformer blocks of each attention of each down block (validated shape).
  public var downTransformerLayers: [[Int]] {
    LayerCounts.expand(transformerLayersPerBlock, layers: layersPerBlockList)
  }
  /// Of each up block (`layers_per_block + 1` attentions): `reverse_transformer_layers_per_block`
  /// or the down counts reversed.
  public var upTransformerLayers: [[Int]] {
    let layers = layersPerBlockList.reversed().map { $0 + 1 }
    if let reverse = reverseTransformerLayersPerBlock { return LayerCounts.expand(.perBlock(reverse), layers: layers) }
    let down = transformerLayersPerBlock.entries(layersPerBlockList.count).reversed()
    return LayerCounts.expand(.perBlock(Array(down)), layers: layers)
  }
  /// The middle block's one attention: the last block's (first) count.
  public var midTransformerLayers: Int { LayerCounts.midCount(transformerLayersPerBlock, blocks: blockOutChannels.count) }
  public var crossAttentionWidth: Int { crossAttentionDim.perBlock(1)[0] }
  public var groups: Int { normNumGroups ?? 32 }

  /// SDXL's text-and-time addition embedding (`addition_embed_type: "text_time"`), when present.
  public var textTimeEmbedding: TextTimeEmbeddingShape? {
    guard additionEmbedType == "text_time", let t = additionTimeEmbedDim, let i = projectionClassEmbeddingsInputDim else {
      return nil
    }
    return TextTimeEmbeddingShape(timeEmbedDim: t, inputDim: i)
  }
}

/// The shape of an SDXL addition embedding: each micro-conditioning number becomes a
/// `timeEmbedDim`-wide sinusoid; those and the pooled text embedding (`inputDim` in all) feed
/// `add_embedding`.
public struct TextTimeEmbeddingShape: Sendable, Equatable {
  public var timeEmbedDim: Int
  public var inputDim: Int
}
