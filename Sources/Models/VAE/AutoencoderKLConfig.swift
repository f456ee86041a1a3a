import Foundation

/// The `vae/config.json` of a diffusers pipeline.
///
/// matches: diffusers `AutoencoderKL.__init__` arguments and defaults (0.42.1).
public struct AutoencoderKLConfig: Codable, Sendable, Equatable {
  public var inChannels: Int = 3
  public var outChannels: Int = 3
  public var downBlockTypes: [String] = ["DownEncoderBlock2D"]
  public var upBlockTypes: [String] = ["UpDecoderBlock2D"]
  public var blockOutChannels: [Int] = [64]
  public var layersPerBlock: Int = 1
  public var actFn: String = "silu"
  public var latentChannels: Int = 4
  public var normNumGroups: Int = 32
  public var sampleSize: Int = 32
  public var scalingFactor: Float = 0.18215
  public var shiftFactor: Float?
  /// Per-channel latent statistics (Playground v2.5-style SDXL VAEs): SDXL pipelines decode
  /// `latents · std / scaling_factor + mean` and image-to-image encodes
  /// `(latents − mean) · scaling_factor / std` (diffusers 0.42.1); nil for every SD1.5/SDXL VAE.
  public var latentsMean: [Float]?
  public var latentsStd: [Float]?
  public var useQuantConv: Bool = true
  public var usePostQuantConv: Bool = true
  public var midBlockAddAttention: Bool = true

  enum CodingKeys: String, CodingKey {
    case inChannels = "in_channels", outChannels = "out_channels"
    case downBlockTypes = "down_block_types", upBlockTypes = "up_block_types"
    case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block"
    case actFn = "act_fn", latentChannels = "latent_channels", normNumGroups = "norm_num_groups"
    case sampleSize = "sample_size", scalingFactor = "scaling_factor", shiftFactor = "shift_factor"
    case latentsMean = "latents_mean", latentsStd = "latents_std"
    case useQuantConv = "use_quant_conv", usePostQuantConv = "use_post_quant_conv"
    case midBlockAddAttention = "mid_block_add_attention"
  }

  public init() {}

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    var d = AutoencoderKLConfig()
    func get<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
      try c.decodeIfPresent(T.self, forKey: key) ?? fallback
    }
    d.inChannels = try get(.inChannels, d.inChannels)
    d.outChannels = try get(.outChannels, d.outChannels)
    d.downBlockTypes = try get(.downBlockTypes, d.downBlockTypes)
    d.upBlockTypes = try get(.upBlockTypes, d.upBlockTypes)
    d.blockOutChannels = try get(.blockOutChannels, d.blockOutChannels)
    d.layersPerBlock = try get(.layersPerBlock, d.layersPerBlock)
    d.actFn = try get(.actFn, d.actFn)
    d.latentChannels = try get(.latentChannels, d.latentChannels)
    d.normNumGroups = try get(.normNumGroups, d.normNumGroups)
    if let s = try? c.decodeIfPresent(Int.self, forKey: .sampleSize) {
      d.sampleSize = s
    } else if let s = try? c.decodeIfPresent([Int].self, forKey: .sampleSize), let first = s.first {
      d.sampleSize = first  // a list: its first entry, as diffusers' tile_latent_min_size takes it
    }
    d.scalingFactor = try get(.scalingFactor, d.scalingFactor)
    d.shiftFactor = try c.decodeIfPresent(Float.self, forKey: .shiftFactor)
    d.latentsMean = try c.decodeIfPresent([Float].self, forKey: .latentsMean)
    d.latentsStd = try c.decodeIfPresent([Float].self, forKey: .latentsStd)
    d.useQuantConv = try get(.useQuantConv, d.useQuantConv)
    d.usePostQuantConv = try get(.usePostQuantConv, d.usePostQuantConv)
    d.midBlockAddAttention = try get(.midBlockAddAttention, d.midBlockAddAttention)
    self = d
  }

  public func validate(path: String) throws {
    func unsupported(_ field: String, _ value: Any, _ supported: String) -> ModelConfigError {
      .unsupported(path: path, field: field, value: "\(value)", supported: supported)
    }
    let check = ConfigChecker(path: path)
    try check.check("in_channels", inChannels, in: ConfigLimits.imageChannels)
    try check.check("out_channels", outChannels, in: ConfigLimits.imageChannels)
    try check.check("latent_channels", latentChannels, in: ConfigLimits.imageChannels)
    try check.check("block_out_channels (count)", blockOutChannels.count, in: ConfigLimits.blocks)
    try check.check("block_out_channels", blockOutChannels, in: ConfigLimits.width)
    try check.check("layers_per_block", layersPerBlock, in: ConfigLimits.layers)
    try check.check("norm_num_groups", normNumGroups, in: ConfigLimits.groups)
    try check.check("sample_size", sampleSize, in: ConfigLimits.imageSide)
    try check.checkFiniteNonZero("scaling_factor", scalingFactor)
    if let shiftFactor { try check.checkFinite("shift_factor", shiftFactor) }
    for (field, values) in [("latents_mean", latentsMean), ("latents_std", latentsStd)] {
      guard let values else { continue }
      guard values.count == latentChannels else {
        throw ModelConfigError.malformed(
          path: path, field: field, reason: "has \(values.count) entries, latent_channels is \(latentChannels)")
      }
      for (i, v) in values.enumerated() {
        if field == "latents_std" { try check.checkFiniteNonZero("\(field)[\(i)]", v) } else { try check.checkFinite("\(field)[\(i)]", v) }
      }
    }
    let n = blockOutChannels.count
    for (field, list) in [("down_block_types", downBlockTypes), ("up_block_types", upBlockTypes)] where list.count != n {
      throw ModelConfigError.malformed(
        path: path, field: field, reason: "has \(list.count) entries, block_out_channels has \(n)")
    }
    for (i, t) in downBlockTypes.enumerated() where t != "DownEncoderBlock2D" {
      throw unsupported("down_block_types[\(i)]", t, "DownEncoderBlock2D")
    }
    for (i, t) in upBlockTypes.enumerated() where t != "UpDecoderBlock2D" {
      throw unsupported("up_block_types[\(i)]", t, "UpDecoderBlock2D")
    }
    if actFn != "silu" { throw unsupported("act_fn", actFn, "silu") }
    for (i, ch) in blockOutChannels.enumerated() where ch % normNumGroups != 0 {
      throw ModelConfigError.malformed(
        path: path, field: "block_out_channels[\(i)]", reason: "\(ch) is not divisible by norm_num_groups \(normNumGroups)")
    }
  }

  /// Both latent statistics when the config has both (diffusers applies them only then).
  public var latentStatistics: (mean: [Float], std: [Float])? {
    guard let latentsMean, let latentsStd else { return nil }
    return (latentsMean, latentsStd)
  }

  /// Pixels per latent along each axis (`2^(blocks − 1)`, 8 for Stable Diffusion).
  public var scaleFactor: Int { 1 << (blockOutChannels.count - 1) }
}
