import NN
import TensorCore

/// The VAE's middle: keys `resnets.0`, `attentions.0` (optional), `resnets.1`.
///
/// matches: diffusers `UNetMidBlock2D` without time embedding (one single-head attention with
/// its own GroupNorm, residual connection).
public final class VAEMidBlock: Module {
  public let resnets: [ResnetBlock2D]
  public let attention: AttentionModule?

  init(channels: Int, groups: Int, addAttention: Bool) {
    resnets = (0..<2).map { _ in
      ResnetBlock2D(inChannels: channels, outChannels: channels, timeEmbeddingChannels: nil, groups: groups, eps: 1e-6)
    }
    attention = addAttention
      ? AttentionModule(queryDim: channels, contextDim: nil, heads: 1, bias: true, groupNorm: (groups, 1e-6))
      : nil
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = [("resnets.0", resnets[0])]
    if let attention { c.append(("attentions.0", attention)) }
    c.append(("resnets.1", resnets[1]))
    return c
  }

  func callAsFunction(_ x: Tensor) throws -> Tensor {
    var h = try resnets[0](x, timeEmbedding: nil)
    if let attention, let norm = attention.groupNorm {
      let (n, height, width, c) = (h.shape[0], h.shape[1], h.shape[2], h.shape[3])
      let normed = try norm(h).reshaped([n, height * width, c])
      h = try attention.selfAttention(normed, residual: h.reshaped([n, height * width, c]))
        .reshaped([n, height, width, c])
    }
    return try resnets[1](h, timeEmbedding: nil)
  }
}

/// A stack of ResNet blocks with an optional resampler: keys `resnets.N` and `downsamplers.0` /
/// `upsamplers.0`.
///
/// matches: diffusers `DownEncoderBlock2D` and `UpDecoderBlock2D`.
public final class VAEBlock: Module {
  public let resnets: [ResnetBlock2D]
  public let downsampler: Downsample2D?
  public let upsampler: Upsample2D?

  init(inChannels: Int, outChannels: Int, layers: Int, groups: Int, downsample: Bool, upsample: Bool) {
    resnets = (0..<layers).map { i in
      ResnetBlock2D(
        inChannels: i == 0 ? inChannels : outChannels, outChannels: outChannels, timeEmbeddingChannels: nil,
        groups: groups, eps: 1e-6)
    }
    downsampler = downsample ? Downsample2D(channels: outChannels, padding: 0) : nil
    upsampler = upsample ? Upsample2D(channels: outChannels) : nil
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = []
    for (i, r) in resnets.enumerated() { c.append(("resnets.\(i)", r)) }
    if let downsampler { c.append(("downsamplers.0", downsampler)) }
    if let upsampler { c.append(("upsamplers.0", upsampler)) }
    return c
  }

  func callAsFunction(_ x: Tensor) throws -> Tensor {
    var h = x
    for r in resnets { h = try r(h, timeEmbedding: nil) }
    if let downsampler { h = try downsampler(h) }
    if let upsampler { h = try upsampler(h) }
    return h
  }
}

/// The VAE encoder: image → latent moments. matches: diffusers `Encoder` (double_z).
public final class VAEEncoder: Module {
  public let convIn: Conv2d
  public let downBlocks: [VAEBlock]
  public let midBlock: VAEMidBlock
  public let normOut: GroupNorm
  public let convOut: Conv2d

  init(config: AutoencoderKLConfig) {
    let ch = config.blockOutChannels
    let g = config.normNumGroups
    convIn = Conv2d(config.inChannels, ch[0], kernelSize: 3, padding: 1)
    var blocks: [VAEBlock] = []
    var output = ch[0]
    for i in 0..<ch.count {
      let input = output
      output = ch[i]
      blocks.append(
        VAEBlock(
          inChannels: input, outChannels: output, layers: config.layersPerBlock, groups: g,
          downsample: i < ch.count - 1, upsample: false))
    }
    downBlocks = blocks
    midBlock = VAEMidBlock(channels: ch[ch.count - 1], groups: g, addAttention: config.midBlockAddAttention)
    normOut = GroupNorm(groups: g, channels: ch[ch.count - 1], eps: 1e-6)
    convOut = Conv2d(ch[ch.count - 1], 2 * config.latentChannels, kernelSize: 3, padding: 1)
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = [("conv_in", convIn)]
    for (i, b) in downBlocks.enumerated() { c.append(("down_blocks.\(i)", b)) }
    c += [("mid_block", midBlock), ("conv_norm_out", normOut), ("conv_out", convOut)]
    return c
  }

  func callAsFunction(_ x: Tensor) throws -> Tensor {
    var h = try convIn(x)
    for b in downBlocks {
      try CancellationToken.checkCurrent()
      h = try b(h)
    }
    h = try midBlock(h)
    return try convOut(try normOut(h, silu: true))
  }
}

/// The VAE decoder: latents → image. matches: diffusers `Decoder`.
public final class VAEDecoder: Module {
  public let convIn: Conv2d
  public let midBlock: VAEMidBlock
  public let upBlocks: [VAEBlock]
  public let normOut: GroupNorm
  public let convOut: Conv2d

  init(config: AutoencoderKLConfig) {
    let ch = config.blockOutChannels
    let g = config.normNumGroups
    let reversed = Array(ch.reversed())
    convIn = Conv2d(config.latentChannels, reversed[0], kernelSize: 3, padding: 1)
    midBlock = VAEMidBlock(channels: reversed[0], groups: g, addAttention: config.midBlockAddAttention)
    var blocks: [VAEBlock] = []
    var output = reversed[0]
    for i in 0..<ch.count {
      let previous = output
      output = reversed[i]
      blocks.append(
        VAEBlock(
          inChannels: previous, outChannels: output, layers: config.layersPerBlock + 1, groups: g,
          downsample: false, upsample: i < ch.count - 1))
    }
    upBlocks = blocks
    normOut = GroupNorm(groups: g, channels: ch[0], eps: 1e-6)
    convOut = Conv2d(ch[0], config.outChannels, kernelSize: 3, padding: 1)
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = [("conv_in", convIn), ("mid_block", midBlock)]
    for (i, b) in upBlocks.enumerated() { c.append(("up_blocks.\(i)", b)) }
    c += [("conv_norm_out", normOut), ("conv_out", convOut)]
    return c
  }

  func callAsFunction(_ z: Tensor) throws -> Tensor {
    var h = try convIn(z)
    h = try midBlock(h)
    for b in upBlocks {
      try CancellationToken.checkCurrent()
      h = try b(h)
    }
    return try convOut(try normOut(h, silu: true))
  }
}

/// The latent distribution the encoder predicts: mean and log-variance (clamped to [−30, 20]).
///
/// matches: diffusers `DiagonalGaussianDistribution`.
public struct DiagonalGaussian: Sendable {
  public var mean: Tensor
  public var logVariance: Tensor

  public init(mean: Tensor, logVariance: Tensor) {
    self.mean = mean
    self.logVariance = logVariance
  }

  /// `mean + exp(0.5·logvar) · noise`, with `noise` drawn by the caller (same shape).
  public func sample(noise: Tensor) throws -> Tensor {
    let std = Ops.exp(Ops.scale(logVariance, 0.5))
    return try Ops.add(mean, try Ops.mul(std, noise))
  }
}

/// The Stable Diffusion VAE with NHWC activations: keys `encoder.*`, `decoder.*`, `quant_conv`,
/// `post_quant_conv`.
///
/// matches: diffusers `AutoencoderKL` (0.42.1); tiling as `enable_tiling()` with
/// `decode(_:tiling:)` / `encode(_:tiling:)` (`VAETiling`). Limitations: no slicing; without
/// tiling the mid-block attention runs at the full latent resolution with bounded memory
/// (`Attention.multiHead`).
/// `@unchecked Sendable`: its layers' only mutable state, the lazily packed kernels, is guarded by `KernelLock`; a pipeline's queue runs one generation at a time.
public final class AutoencoderKL: Module, @unchecked Sendable {
  public let config: AutoencoderKLConfig
  public let encoder: VAEEncoder
  public let decoder: VAEDecoder
  public let quantConv: Conv2d?
  public let postQuantConv: Conv2d?

  public init(config: AutoencoderKLConfig, path: String = "vae/config.json") throws {
    try config.validate(path: path)
    self.config = config
    encoder = VAEEncoder(config: config)
    decoder = VAEDecoder(config: config)
    let z = config.latentChannels
    quantConv = config.useQuantConv ? Conv2d(2 * z, 2 * z, kernelSize: 1) : nil
    postQuantConv = config.usePostQuantConv ? Conv2d(z, z, kernelSize: 1) : nil
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = [("encoder", encoder), ("decoder", decoder)]
    if let quantConv { c.append(("quant_conv", quantConv)) }
    if let postQuantConv { c.append(("post_quant_conv", postQuantConv)) }
    return c
  }

  /// Decodes NHWC latents `[N, h, w, 4]` (already divided by `scaling_factor`) to images
  /// `[N, 8h, 8w, 3]` in about [−1, 1].
  public func decode(_ latents: Tensor) throws -> Tensor {
    guard latents.rank == 4, latents.shape[3] == config.latentChannels else {
      throw ModuleError.invalidInput("VAE latents must be NHWC [N, h, w, \(config.latentChannels)], got \(latents.shape)")
    }
    var z = latents
    if let postQuantConv { z = try postQuantConv(z) }
    return try decoder(z)
  }

  /// Encodes NHWC images `[N, H, W, 3]` in [−1, 1] to the latent distribution.
  public func encode(_ images: Tensor) throws -> DiagonalGaussian {
    guard images.rank == 4, images.shape[3] == config.inChannels else {
      throw ModuleError.invalidInput("VAE images must be NHWC [N, H, W, \(config.inChannels)], got \(images.shape)")
    }
    return gaussian(fromMoments: try encodeMoments(images))
  }

  /// The encoder and `quant_conv`: the moments `[N, h, w, 2·latent_channels]` (mean, then
  /// log-variance), as diffusers' `_encode` returns them.
  func encodeMoments(_ images: Tensor) throws -> Tensor {
    var moments = try encoder(images)
    if let quantConv { moments = try quantConv(moments) }
    return moments
  }

  /// Splits the moments into mean and log-variance clamped to [−30, 20].
  ///
  /// matches: diffusers `DiagonalGaussianDistribution.__init__`.
  func gaussian(fromMoments moments: Tensor) -> DiagonalGaussian {
    let (n, h, w, c2) = (moments.shape[0], moments.shape[1], moments.shape[2], moments.shape[3])
    let z = c2 / 2
    var mean = Tensor(uninitializedShape: [n, h, w, z])
    var logvar = Tensor(uninitializedShape: [n, h, w, z])
    moments.withUnsafeFloats { m in
      mean.withUnsafeMutableFloats { mu in
        logvar.withUnsafeMutableFloats { lv in
          for p in 0..<(n * h * w) {
            for ch in 0..<z {
              mu[p * z + ch] = m[p * c2 + ch]
              lv[p * z + ch] = min(max(m[p * c2 + z + ch], -30), 20)
            }
          }
        }
      }
    }
    return DiagonalGaussian(mean: mean, logVariance: logvar)
  }
}
