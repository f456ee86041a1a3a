import NN
import TensorCore

/// A down block of the UNet: keys `resnets.N`, `attentions.N` (cross-attention blocks only) and
/// `downsamplers.0`.
///
/// matches: diffusers `CrossAttnDownBlock2D` (with attentions) and `DownBlock2D` (without).
public final class DownBlock: Module {
  public let resnets: [ResnetBlock2D]
  public let attentions: [Transformer2DModel]
  public let downsampler: Downsample2D?

  init(
    inChannels: Int, outChannels: Int, layers: Int, timeChannels: Int, groups: Int, eps: Float,
    attention: (heads: Int, contextDim: Int, transformerLayers: [Int], linear: Bool)?,
    addDownsample: Bool, downsamplePadding: Int
  ) {
    resnets = (0..<layers).map { i in
      ResnetBlock2D(
        inChannels: i == 0 ? inChannels : outChannels, outChannels: outChannels,
        timeEmbeddingChannels: timeChannels, groups: groups, eps: eps)
    }
    if let attention {
      attentions = (0..<layers).map { i in
        Transformer2DModel(
          channels: outChannels, heads: attention.heads, contextDim: attention.contextDim,
          layers: i < attention.transformerLayers.count ? attention.transformerLayers[i] : 1, groups: groups,
          linearProjection: attention.linear)
      }
    } else {
      attentions = []
    }
    downsampler = addDownsample ? Downsample2D(channels: outChannels, padding: downsamplePadding) : nil
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = []
    for (i, r) in resnets.enumerated() { c.append(("resnets.\(i)", r)) }
    for (i, a) in attentions.enumerated() { c.append(("attentions.\(i)", a)) }
    if let downsampler { c.append(("downsamplers.0", downsampler)) }
    return c
  }

  /// Returns the block output and the skip tensors it hands to the up path (one per layer, plus
  /// one after downsampling).
  func callAsFunction(
    _ x: Tensor, timeEmbedding: Tensor, conditioning: CrossAttentionConditioning,
    residualsOut: inout [Tensor]
  ) throws -> Tensor {
    var h = x
    for (i, resnet) in resnets.enumerated() {
      h = try resnet(h, timeEmbedding: timeEmbedding)
      if !attentions.isEmpty { h = try attentions[i](h, conditioning: conditioning) }
      residualsOut.append(h)
    }
    if let downsampler {
      h = try downsampler(h)
      residualsOut.append(h)
    }
    return h
  }
}

/// An up block of the UNet: keys `resnets.N`, `attentions.N` and `upsamplers.0`.
///
/// matches: diffusers `CrossAttnUpBlock2D` / `UpBlock2D`: each layer concatenates the next skip
/// tensor (last in, first out) along channels before its ResNet.
public final class UpBlock: Module {
  public let resnets: [ResnetBlock2D]
  public let attentions: [Transformer2DModel]
  public let upsampler: Upsample2D?

  init(
    inChannels: Int, outChannels: Int, previousOutChannels: Int, layers: Int, timeChannels: Int,
    groups: Int, eps: Float, attention: (heads: Int, contextDim: Int, transformerLayers: [Int], linear: Bool)?,
    addUpsample: Bool
  ) {
    resnets = (0..<layers).map { i in
      let skip = i == layers - 1 ? inChannels : outChannels
      let input = i == 0 ? previousOutChannels : outChannels
      return ResnetBlock2D(
        inChannels: input + skip, outChannels: outChannels, timeEmbeddingChannels: timeChannels,
        groups: groups, eps: eps)
    }
    if let attention {
      attentions = (0..<layers).map { i in
        Transformer2DModel(
          channels: outChannels, heads: attention.heads, contextDim: attention.contextDim,
          layers: i < attention.transformerLayers.count ? attention.transformerLayers[i] : 1, groups: groups,
          linearProjection: attention.linear)
      }
    } else {
      attentions = []
    }
    upsampler = addUpsample ? Upsample2D(channels: outChannels) : nil
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = []
    for (i, r) in resnets.enumerated() { c.append(("resnets.\(i)", r)) }
    for (i, a) in attentions.enumerated() { c.append(("attentions.\(i)", a)) }
    if let upsampler { c.append(("upsamplers.0", upsampler)) }
    return c
  }

  /// - Parameter upsampleSize: explicit output size of the upsampler (see `Upsample2D`).
  func callAsFunction(
    _ x: Tensor, timeEmbedding: Tensor, conditioning: CrossAttentionConditioning,
    residuals: inout [Tensor], upsampleSize: (height: Int, width: Int)? = nil
  ) throws -> Tensor {
    var h = x
    for (i, resnet) in resnets.enumerated() {
      let skip = residuals.removeLast()
      h = try resnet(try Ops.concatLast(h, skip), timeEmbedding: timeEmbedding)
      if !attentions.isEmpty { h = try attentions[i](h, conditioning: conditioning) }
    }
    if let upsampler { h = try upsampler(h, size: upsampleSize) }
    return h
  }
}

/// The UNet's middle: keys `resnets.0`, `attentions.0`, `resnets.1`.
///
/// matches: diffusers `UNetMidBlock2DCrossAttn` (one transformer block group).
public final class MidBlock: Module {
  public let resnets: [ResnetBlock2D]
  public let attentions: [Transformer2DModel]

  init(
    channels: Int, timeChannels: Int, groups: Int, eps: Float, outputScaleFactor: Float,
    heads: Int, contextDim: Int, transformerLayers: Int, linear: Bool
  ) {
    resnets = (0..<2).map { _ in
      ResnetBlock2D(
        inChannels: channels, outChannels: channels, timeEmbeddingChannels: timeChannels,
        groups: groups, eps: eps, outputScaleFactor: outputScaleFactor)
    }
    attentions = [
      Transformer2DModel(
        channels: channels, heads: heads, contextDim: contextDim, layers: transformerLayers,
        groups: groups, linearProjection: linear)
    ]
  }

  public var children: [(String, any Module)] {
    [("resnets.0", resnets[0]), ("attentions.0", attentions[0]), ("resnets.1", resnets[1])]
  }

  func callAsFunction(_ x: Tensor, timeEmbedding: Tensor, conditioning: CrossAttentionConditioning) throws -> Tensor {
    var h = try resnets[0](x, timeEmbedding: timeEmbedding)
    h = try attentions[0](h, conditioning: conditioning)
    return try resnets[1](h, timeEmbedding: timeEmbedding)
  }
}
