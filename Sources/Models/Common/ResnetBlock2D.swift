import NN
import TensorCore

/// The ResNet block of diffusers' UNets and VAEs: keys `norm1`, `conv1`, `time_emb_proj`
/// (UNet only), `norm2`, `conv2`, `conv_shortcut` (when channels change).
///
/// matches: diffusers `ResnetBlock2D` with `time_embedding_norm="default"`, SiLU,
/// `output_scale_factor` 1 and no up/down sampling inside the block:
/// `out = x' + conv2(silu(norm2(conv1(silu(norm1(x))) + proj(silu(temb)))))`, where `x'` is `x`
/// or `conv_shortcut(x)`. The residual add is fused into `conv2`.
public final class ResnetBlock2D: Module {
  public let norm1: GroupNorm
  public let conv1: Conv2d
  public let timeEmbProj: Linear?
  public let norm2: GroupNorm
  public let conv2: Conv2d
  public let convShortcut: Conv2d?
  public let outputScaleFactor: Float

  public init(
    inChannels: Int, outChannels: Int, timeEmbeddingChannels: Int?, groups: Int, eps: Float,
    outputScaleFactor: Float = 1
  ) {
    norm1 = GroupNorm(groups: groups, channels: inChannels, eps: eps)
    conv1 = Conv2d(inChannels, outChannels, kernelSize: 3, padding: 1)
    timeEmbProj = timeEmbeddingChannels.map { Linear($0, outChannels) }
    norm2 = GroupNorm(groups: groups, channels: outChannels, eps: eps)
    conv2 = Conv2d(outChannels, outChannels, kernelSize: 3, padding: 1)
    convShortcut = inChannels == outChannels ? nil : Conv2d(inChannels, outChannels, kernelSize: 1)
    self.outputScaleFactor = outputScaleFactor
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = [("norm1", norm1), ("conv1", conv1)]
    if let timeEmbProj { c.append(("time_emb_proj", timeEmbProj)) }
    c += [("norm2", norm2), ("conv2", conv2)]
    if let convShortcut { c.append(("conv_shortcut", convShortcut)) }
    return c
  }

  /// - Parameters:
  ///   - x: NHWC input.
  ///   - timeEmbedding: `silu(temb)` `[N, temb]` (the block's caller applies the SiLU once for
  ///     all blocks, as diffusers does per block — same values), or nil in the VAE.
  public func callAsFunction(_ x: Tensor, timeEmbedding: Tensor?) throws -> Tensor {
    var h = try norm1(x, silu: true)
    h = try conv1(h)
    if let timeEmbProj, let timeEmbedding {
      h = try Ops.addChannelVector(h, try timeEmbProj(timeEmbedding))
    }
    h = try norm2(h, silu: true)
    let shortcut = try convShortcut.map { try $0(x) } ?? x
    if outputScaleFactor == 1 {
      return try conv2(h, accumulate: shortcut)
    }
    return Ops.scale(try Ops.add(shortcut, try conv2(h)), 1 / outputScaleFactor)
  }
}

/// Stride-2 downsampling convolution, key `conv`.
///
/// matches: diffusers `Downsample2D(use_conv=True)`; with `padding == 0` it pads one pixel at the
/// bottom and right first (`F.pad(x, (0, 1, 0, 1))`), as the VAE encoder does.
public final class Downsample2D: Module {
  public let conv: Conv2d

  public init(channels: Int, outChannels: Int? = nil, padding: Int) {
    let pad = padding == 0 ? Padding2D(top: 0, left: 0, bottom: 1, right: 1) : .uniform(padding)
    conv = Conv2d(channels, outChannels ?? channels, kernelSize: 3, stride: 2, padding: pad)
  }

  public var children: [(String, any Module)] { [("conv", conv)] }

  public func callAsFunction(_ x: Tensor) throws -> Tensor { try conv(x) }
}

/// Nearest ×2 upsampling followed by a 3×3 convolution, key `conv`.
///
/// matches: diffusers `Upsample2D(use_conv=True)` with `interpolate(scale_factor=2, "nearest")`.
public final class Upsample2D: Module {
  public let conv: Conv2d

  public init(channels: Int, outChannels: Int? = nil) {
    conv = Conv2d(channels, outChannels ?? channels, kernelSize: 3, padding: 1)
  }

  public var children: [(String, any Module)] { [("conv", conv)] }

  /// - Parameter size: the output size when it is not exactly twice the input (diffusers'
  ///   `upsample_size`, used when the latent size is not a multiple of the UNet's total factor).
  public func callAsFunction(_ x: Tensor, size: (height: Int, width: Int)? = nil) throws -> Tensor {
    if let size { return try conv(try Ops.upsampleNearest(x, height: size.height, width: size.width)) }
    return try conv(try Ops.upsampleNearest2x(x))
  }
}
