import NN
import TensorCore

/// The small convolutional encoder that maps a control image (Canny edges, depth, pose, …) to
/// the latent resolution: keys `conv_in`, `blocks.N`, `conv_out`.
///
/// matches: diffusers `ControlNetConditioningEmbedding` (0.42.1): `conv_in` (3×3), then per step
/// a 3×3 convolution keeping the channels and a 3×3 stride-2 convolution to the next width, SiLU
/// after every convolution but the last, `conv_out` (3×3) to `block_out_channels[0]`.
public final class ControlNetConditioningEmbedding: Module {
  public let convIn: Conv2d
  /// Pairs of (same-width, stride-2) convolutions, flattened as diffusers stores them.
  public let blocks: [Conv2d]
  public let convOut: Conv2d

  /// - Parameters:
  ///   - conditioningChannels: channels of the control image.
  ///   - channels: `conditioning_embedding_out_channels`.
  ///   - outChannels: the ControlNet's `block_out_channels[0]`.
  public init(conditioningChannels: Int, channels: [Int], outChannels: Int) {
    precondition(!channels.isEmpty, "conditioning_embedding_out_channels must not be empty")
    convIn = Conv2d(conditioningChannels, channels[0], kernelSize: 3, padding: 1)
    var b: [Conv2d] = []
    for i in 0..<(channels.count - 1) {
      b.append(Conv2d(channels[i], channels[i], kernelSize: 3, padding: 1))
      b.append(Conv2d(channels[i], channels[i + 1], kernelSize: 3, stride: 2, padding: 1))
    }
    blocks = b
    convOut = Conv2d(channels[channels.count - 1], outChannels, kernelSize: 3, padding: 1)
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = [("conv_in", convIn)]
    for (i, conv) in blocks.enumerated() { c.append(("blocks.\(i)", conv)) }
    c.append(("conv_out", convOut))
    return c
  }

  /// NHWC control image `[B, H, W, conditioning_channels]` → `[B, H/2ⁿ, W/2ⁿ, block_out_channels[0]]`
  /// (sizes rounded up at every stride-2 step).
  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    var h = Ops.silu(try convIn(x))
    for conv in blocks { h = Ops.silu(try conv(h)) }
    return try convOut(h)
  }
}
