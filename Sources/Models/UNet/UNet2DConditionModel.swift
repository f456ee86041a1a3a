import Foundation
import NN
import TensorCore
import Weights

/// Residuals a ControlNet adds to the UNet's skip connections and middle block output.
public struct ControlResiduals: Sendable {
  /// One per skip tensor of the down path, in order.
  public var down: [Tensor]
  public var mid: Tensor

  public init(down: [Tensor], mid: Tensor) {
    self.down = down
    self.mid = mid
  }
}

/// The conditional denoising UNet of Stable Diffusion, built from its `config.json`, with NHWC
/// activations. Parameter keys are diffusers' (`down_blocks.0.attentions.1.proj_in.weight`, …).
///
/// matches: diffusers `UNet2DConditionModel` (0.42.1) for SD 1.x/2.x and SDXL configurations
/// (CrossAttnDownBlock2D / DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D / CrossAttnUpBlock2D,
/// positional time embedding, SDXL's `text_time` addition embedding fed by
/// `CrossAttentionConditioning.textTime`). Limitations: no class embeddings, no LoRA.
///
/// Cross-attention is driven by a `CrossAttentionConditioning`: the text keys/values of every
/// cross-attention layer are computed once per generation by `makeConditioning`, and adapters
/// (IP-Adapter) append their own sources to it.
/// `@unchecked Sendable`: its layers' only mutable state, the lazily packed kernels, is guarded by `KernelLock`; a pipeline's queue runs one generation at a time.
public final class UNet2DConditionModel: Module, @unchecked Sendable {
  public let config: UNet2DConditionConfig
  /// `conv_in`, time embedding, down blocks and middle block (shared with `ControlNetModel`).
  public let encoder: UNetEncoder
  public let upBlocks: [UpBlock]
  public let convNormOut: GroupNorm
  public let convOut: Conv2d
  /// Cross-attention layers in diffusers' attention-processor order (down, up, mid), with the key
  /// path of each `attn2`.
  public let crossAttentionLayers: [(name: String, block: BasicTransformerBlock)]

  public var convIn: Conv2d { encoder.convIn }
  public var downBlocks: [DownBlock] { encoder.downBlocks }
  public var midBlock: MidBlock { encoder.midBlock }

  public init(config: UNet2DConditionConfig, path: String = "unet/config.json") throws {
    try config.validate(path: path)
    self.config = config
    encoder = UNetEncoder(config)
    let channels = config.blockOutChannels
    let n = channels.count
    let timeChannels = channels[0] * 4
    let reversed = Array(channels.reversed())
    let reversedHeads = Array(config.headsPerBlock.reversed())
    let reversedLayers = Array(config.layersPerBlockList.reversed())
    let upTransformerLayers = config.upTransformerLayers
    let (groups, eps) = (config.groups, config.normEps)
    let (context, linear) = (config.crossAttentionWidth, config.useLinearProjection)
    var up: [UpBlock] = []
    var output = reversed[0]
    for i in 0..<n {
      let previous = output
      output = reversed[i]
      let input = reversed[min(i + 1, n - 1)]
      let cross = config.upBlockTypes[i] == "CrossAttnUpBlock2D"
      up.append(
        UpBlock(
          inChannels: input, outChannels: output, previousOutChannels: previous,
          layers: reversedLayers[i] + 1, timeChannels: timeChannels, groups: groups, eps: eps,
          attention: cross ? (reversedHeads[i], context, upTransformerLayers[i], linear) : nil,
          addUpsample: i < n - 1))
    }
    upBlocks = up
    convNormOut = GroupNorm(groups: groups, channels: channels[0], eps: eps)
    convOut = Conv2d(
      channels[0], config.outChannels, kernelSize: config.convOutKernel, padding: (config.convOutKernel - 1) / 2)

    var crossLayers: [(name: String, block: BasicTransformerBlock)] = []
    encoder.collectCrossAttention(middle: false, into: &crossLayers)
    for (i, b) in up.enumerated() { UNetEncoder.collect("up_blocks.\(i)", b.attentions, into: &crossLayers) }
    encoder.collectCrossAttention(middle: true, into: &crossLayers)
    crossAttentionLayers = crossLayers
  }

  public var children: [(String, any Module)] {
    var c = encoder.stemChildren + encoder.downChildren
    c.append(("mid_block", encoder.midBlock))
    for (i, b) in upBlocks.enumerated() { c.append(("up_blocks.\(i)", b)) }
    c += [("conv_norm_out", convNormOut), ("conv_out", convOut)]
    return c
  }

  /// Width of the text (and image-prompt) tokens the cross-attention layers take.
  public var crossAttentionDim: Int { config.crossAttentionWidth }

  /// Latent channels the UNet consumes (`in_channels`: 4, or 9 for inpainting models).
  public var inChannels: Int { config.inChannels }

  /// Computes the text keys/values of every cross-attention layer once.
  /// - Parameter encoderHiddenStates: `[B, L, cross_attention_dim]` (uncond first with CFG).
  /// - Parameter textTime: SDXL's pooled text embeddings and time ids (required by SDXL UNets).
  public func makeConditioning(
    encoderHiddenStates: Tensor, textTime: TextTimeConditions? = nil
  ) throws -> CrossAttentionConditioning {
    var c = try UNetEncoder.conditioning(
      crossAttentionLayers, encoderHiddenStates: encoderHiddenStates, width: crossAttentionDim, model: "UNet")
    c.textTime = textTime
    return c
  }

  /// SDXL's addition embedding (nil for SD 1.x/2.x UNets).
  public var textTimeEmbedding: TextTimeEmbeddingShape? { config.textTimeEmbedding }

  /// Predicts the noise (or v) for NHWC latents `sample` `[B, H, W, in_channels]` at `timestep`.
  public func callAsFunction(
    _ sample: Tensor, timestep: Float, conditioning: CrossAttentionConditioning,
    controlResiduals: ControlResiduals? = nil
  ) throws -> Tensor {
    guard sample.rank == 4, sample.shape[3] == config.inChannels else {
      throw ModuleError.invalidInput(
        "UNet input must be NHWC [B, H, W, \(config.inChannels)], got \(sample.shape)")
    }
    // diffusers' forward_upsample_size: sizes that are not a multiple of the total down factor
    // upsample to the exact size of the skip tensors instead of ×2.
    let factor = 1 << (config.blockOutChannels.count - 1)
    let exactUpsampling = sample.shape[1] % factor != 0 || sample.shape[2] % factor != 0
    guard conditioning.batch == sample.shape[0] else {
      throw ModuleError.invalidInput(
        "UNet batch \(sample.shape[0]) does not match the conditioning batch \(conditioning.batch)")
    }
    let batch = sample.shape[0]
    let temb = try encoder.timeEmbedding(timestep, batch: batch, textTime: conditioning.textTime)
    var (h, residuals) = try encoder.down(sample, timeEmbedding: temb, conditioning: conditioning)
    if let controlResiduals {
      guard controlResiduals.down.count == residuals.count else {
        throw ModuleError.invalidInput(
          "ControlNet gave \(controlResiduals.down.count) down residuals, the UNet has \(residuals.count)")
      }
      residuals = try zip(residuals, controlResiduals.down).map { try Ops.add($0, $1) }
    }
    h = try midBlock(h, timeEmbedding: temb, conditioning: conditioning)
    if let controlResiduals { h = try Ops.add(h, controlResiduals.mid) }
    for (i, block) in upBlocks.enumerated() {
      try CancellationToken.checkCurrent()
      var size: (height: Int, width: Int)?
      if exactUpsampling, i < upBlocks.count - 1 {
        let next = residuals[residuals.count - block.resnets.count - 1]
        size = (next.shape[1], next.shape[2])
      }
      h = try block(h, timeEmbedding: temb, conditioning: conditioning, residuals: &residuals, upsampleSize: size)
    }
    h = try convNormOut(h, silu: true)
    return try convOut(h)
  }
}

extension Tensor {
  /// `silu(self)`.
  func applyingSiLU() -> Tensor { Ops.silu(self) }
}
