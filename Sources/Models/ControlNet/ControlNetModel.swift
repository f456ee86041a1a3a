import Foundation
import NN
import TensorCore
import Weights

/// A ControlNet for Stable Diffusion 1.x/2.x or SDXL, built from its `config.json`, with NHWC
/// activations. Parameter keys are diffusers' (`controlnet_cond_embedding.blocks.3.weight`,
/// `down_blocks.1.attentions.0.proj_in.weight`, `controlnet_down_blocks.4.weight`, …).
///
/// matches: diffusers `ControlNetModel` (0.42.1): the UNet's encoder half (`conv_in`, time
/// embedding, `down_blocks`, `mid_block` — the same block classes as `UNet2DConditionModel`) fed
/// with `conv_in(latents) + controlnet_cond_embedding(control image)`; every skip tensor and the
/// middle output go through a 1×1 convolution (`controlnet_down_blocks.N`,
/// `controlnet_mid_block`) and are scaled by `conditioning_scale` — in guess mode by
/// `logspace(-1, 0, n + 1) · conditioning_scale` instead (0.1 for the first skip, 1 for the
/// middle); with `global_pool_conditions` each residual is replaced by its spatial mean.
///
/// An SDXL ControlNet (`addition_embed_type: "text_time"`) takes the same pooled text embedding
/// and micro-conditioning as its UNet (`makeConditioning(encoderHiddenStates:textTime:)`).
///
/// Limitations: no class embeddings or other addition embeddings (Kandinsky), no attention masks;
/// `upcast_attention` is irrelevant (attention always runs in fp32). With
/// `global_pool_conditions` the means are returned broadcast to the full spatial size (diffusers
/// returns `[B, C, 1, 1]` and relies on broadcasting in the UNet's additions — same sums).
///
/// The ControlNet attends to the **text** tokens only (diffusers never installs IP-Adapter
/// processors in it): build its conditioning with its own `makeConditioning`.
/// `@unchecked Sendable`: its layers' only mutable state, the lazily packed kernels, is guarded by `KernelLock`; a pipeline's queue runs one generation at a time.
public final class ControlNetModel: Module, @unchecked Sendable {
  public let config: ControlNetConfig
  /// `conv_in`, time embedding, down blocks and middle block (shared with `UNet2DConditionModel`).
  public let encoder: UNetEncoder
  public let conditioningEmbedding: ControlNetConditioningEmbedding
  /// One 1×1 convolution per skip tensor (`conv_in` output, each layer, each downsampler).
  public let controlNetDownBlocks: [Conv2d]
  public let controlNetMidBlock: Conv2d
  /// Cross-attention layers in diffusers' attention-processor order (down, then mid), with the
  /// key path of each `attn2`.
  public let crossAttentionLayers: [(name: String, block: BasicTransformerBlock)]

  public init(config: ControlNetConfig, path: String = "controlnet/config.json") throws {
    try config.validate(path: path)
    self.config = config
    encoder = UNetEncoder(config)
    let channels = config.blockOutChannels
    let n = channels.count
    conditioningEmbedding = ControlNetConditioningEmbedding(
      conditioningChannels: config.conditioningChannels, channels: config.embeddingChannels,
      outChannels: channels[0])
    var zeroConvs = [Conv2d(channels[0], channels[0], kernelSize: 1)]
    for i in 0..<n {
      let skips = config.layersPerBlock + (i < n - 1 ? 1 : 0)
      zeroConvs += (0..<skips).map { _ in Conv2d(channels[i], channels[i], kernelSize: 1) }
    }
    controlNetDownBlocks = zeroConvs
    controlNetMidBlock = Conv2d(channels[n - 1], channels[n - 1], kernelSize: 1)
    var crossLayers: [(name: String, block: BasicTransformerBlock)] = []
    encoder.collectCrossAttention(middle: false, into: &crossLayers)
    encoder.collectCrossAttention(middle: true, into: &crossLayers)
    crossAttentionLayers = crossLayers
  }

  public var children: [(String, any Module)] {
    var c = encoder.stemChildren + [("controlnet_cond_embedding", conditioningEmbedding)] + encoder.downChildren
    for (i, conv) in controlNetDownBlocks.enumerated() { c.append(("controlnet_down_blocks.\(i)", conv)) }
    c += [("controlnet_mid_block", controlNetMidBlock), ("mid_block", encoder.midBlock)]
    return c
  }

  /// Width of the text tokens the cross-attention layers take.
  public var crossAttentionDim: Int { config.crossAttentionDim }

  /// Channels of each residual this ControlNet produces: the down residuals in order, then the
  /// middle one.
  public var residualChannels: [Int] { controlNetDownBlocks.map(\.outChannels) + [controlNetMidBlock.outChannels] }

  /// Checks that this ControlNet's residuals fit `unet`: same text width, and one residual per
  /// skip connection with the same channels. Throws `ControlNetError`.
  public func validate(against unet: UNet2DConditionModel) throws {
    guard crossAttentionDim == unet.crossAttentionDim else {
      throw ControlNetError.crossAttentionDimMismatch(controlNet: crossAttentionDim, unet: unet.crossAttentionDim)
    }
    guard config.textTimeEmbedding == unet.textTimeEmbedding else {
      throw ControlNetError.additionEmbeddingMismatch(
        controlNet: config.textTimeEmbedding.map { "text_time \($0.inputDim)" } ?? "none",
        unet: unet.textTimeEmbedding.map { "text_time \($0.inputDim)" } ?? "none")
    }
    var unetChannels = [unet.convIn.outChannels]
    for block in unet.downBlocks {
      for resnet in block.resnets { unetChannels.append(resnet.conv2.outChannels) }
      if let d = block.downsampler { unetChannels.append(d.conv.outChannels) }
    }
    unetChannels.append(unet.midBlock.resnets[1].conv2.outChannels)
    guard residualChannels == unetChannels else {
      throw ControlNetError.residualLayoutMismatch(controlNet: residualChannels, unet: unetChannels)
    }
  }

  /// Computes the text keys/values of every cross-attention layer once.
  /// - Parameter encoderHiddenStates: `[B, L, cross_attention_dim]` (text only, uncond first with CFG).
  /// - Parameter textTime: SDXL's pooled text embedding and time ids (required by an SDXL
  ///   ControlNet, as for its UNet).
  public func makeConditioning(
    encoderHiddenStates: Tensor, textTime: TextTimeConditions? = nil
  ) throws -> CrossAttentionConditioning {
    var c = try UNetEncoder.conditioning(
      crossAttentionLayers, encoderHiddenStates: encoderHiddenStates, width: crossAttentionDim, model: "ControlNet")
    c.textTime = textTime
    return c
  }

  /// `controlnet_cond_embedding(image)` after the configured channel order is applied. It does not
  /// depend on the step, so a pipeline may compute it once and pass it to
  /// `callAsFunction(_:timestep:conditioning:controlEmbedding:scale:guessMode:)`.
  /// - Parameter controlImage: NHWC `[B, H, W, conditioning_channels]`, values in [0, 1] (as
  ///   diffusers' control image processor produces; not checked).
  public func embedControlImage(_ controlImage: Tensor) throws -> Tensor {
    guard controlImage.rank == 4, controlImage.shape[3] == config.conditioningChannels else {
      throw ModuleError.invalidInput(
        "ControlNet control image must be NHWC [B, H, W, \(config.conditioningChannels)], got \(controlImage.shape)")
    }
    let image = config.controlnetConditioningChannelOrder == "bgr" ? Self.reversingChannels(controlImage) : controlImage
    return try conditioningEmbedding(image)
  }

  /// The residuals for NHWC latents `sample` `[B, h, w, in_channels]` and a control image
  /// `[B or 1, 8h, 8w, conditioning_channels]` (for 4 embedding widths; `2ⁿ·h` in general).
  /// - Parameters:
  ///   - scale: `conditioning_scale`.
  ///   - guessMode: diffusers' `guess_mode` residual scaling (ignored with `global_pool_conditions`).
  public func callAsFunction(
    _ sample: Tensor, timestep: Float, conditioning: CrossAttentionConditioning, controlImage: Tensor,
    scale: Float, guessMode: Bool
  ) throws -> ControlResiduals {
    try self(
      sample, timestep: timestep, conditioning: conditioning, controlEmbedding: try embedControlImage(controlImage),
      scale: scale, guessMode: guessMode)
  }

  /// The residuals given a precomputed `embedControlImage` result `[B or 1, h, w, block_out_channels[0]]`
  /// (a batch of 1 is shared by every sample).
  public func callAsFunction(
    _ sample: Tensor, timestep: Float, conditioning: CrossAttentionConditioning, controlEmbedding: Tensor,
    scale: Float, guessMode: Bool
  ) throws -> ControlResiduals {
    let channels = config.blockOutChannels
    guard sample.rank == 4, sample.shape[3] == config.inChannels else {
      throw ModuleError.invalidInput("ControlNet input must be NHWC [B, H, W, \(config.inChannels)], got \(sample.shape)")
    }
    let batch = sample.shape[0]
    guard conditioning.batch == batch else {
      throw ModuleError.invalidInput("ControlNet batch \(batch) does not match the conditioning batch \(conditioning.batch)")
    }
    guard conditioning.sources.count == crossAttentionLayers.count else {
      throw ModuleError.invalidInput(
        "ControlNet conditioning has \(conditioning.sources.count) layers, the ControlNet has "
          + "\(crossAttentionLayers.count): build it with ControlNetModel.makeConditioning")
    }
    let expected = [sample.shape[1], sample.shape[2], channels[0]]
    guard controlEmbedding.rank == 4, Array(controlEmbedding.shape[1...]) == expected,
      controlEmbedding.shape[0] == batch || controlEmbedding.shape[0] == 1
    else {
      let d = config.controlImageDownsamplings
      throw ModuleError.invalidInput(
        "ControlNet control image must be \(sample.shape[1] << d)×\(sample.shape[2] << d) (latents × \(1 << d)) "
          + "with batch 1 or \(batch); its embedding is \(controlEmbedding.shape), expected [\(batch), \(expected.map(String.init).joined(separator: ", "))]")
    }
    guard scale.isFinite else { throw ModuleError.invalidInput("ControlNet conditioning scale must be finite, got \(scale)") }
    let cond = controlEmbedding.shape[0] == batch
      ? controlEmbedding : try Ops.concatRows(Array(repeating: controlEmbedding, count: batch))

    let temb = try encoder.timeEmbedding(timestep, batch: batch, textTime: conditioning.textTime)
    var (h, skips) = try encoder.down(sample, accumulate: cond, timeEmbedding: temb, conditioning: conditioning)
    h = try encoder.midBlock(h, timeEmbedding: temb, conditioning: conditioning)

    let pool = config.globalPoolConditions
    let scales = guessMode && !pool
      ? Self.guessModeScales(count: skips.count + 1).map { $0 * scale }
      : Array(repeating: scale, count: skips.count + 1)
    func finish(_ x: Tensor, _ s: Float) -> Tensor {
      let scaled = s == 1 ? x : Ops.scale(x, s)
      return pool ? Self.spatialMeanBroadcast(scaled) : scaled
    }
    let down = try zip(skips, controlNetDownBlocks).enumerated().map { i, pair in
      finish(try pair.1(pair.0), scales[i])
    }
    let mid = finish(try controlNetMidBlock(h), scales[skips.count])
    return ControlResiduals(down: down, mid: mid)
  }

  /// diffusers' guess-mode scales `torch.logspace(-1, 0, count)` in float32 (computed as torch
  /// does: powers of 10 in double, the upper half counted back from the end point).
  public static func guessModeScales(count: Int) -> [Float] {
    guard count > 1 else { return count == 1 ? [0.1] : [] }
    let step = 1.0 / Double(count - 1)
    return (0..<count).map { i in
      let exponent = i < count / 2 ? -1 + step * Double(i) : -step * Double(count - 1 - i)
      return Float(pow(10.0, exponent))
    }
  }

  /// NHWC channels in reverse order (`torch.flip(x, dims=[1])` on NCHW).
  static func reversingChannels(_ x: Tensor) -> Tensor {
    let input = x.asFloat32()
    let c = x.shape[3]
    let out = Tensor(uninitializedShape: x.shape)
    let (s, d) = (input.floatPointer, out.mutableFloatPointer)
    for p in 0..<(x.count / max(c, 1)) {
      for k in 0..<c { d[p * c + k] = s[p * c + c - 1 - k] }
    }
    return out
  }

  /// Each channel's mean over height and width, repeated over the spatial size
  /// (`torch.mean(x, dim=(2, 3), keepdim=True)` then broadcast).
  static func spatialMeanBroadcast(_ x: Tensor) -> Tensor {
    let input = x.asFloat32()
    let (n, hw, c) = (x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
    let out = Tensor(uninitializedShape: x.shape)
    let (s, d) = (input.floatPointer, out.mutableFloatPointer)
    var sums = [Double](repeating: 0, count: c)
    for b in 0..<n {
      for k in 0..<c { sums[k] = 0 }
      for p in 0..<hw {
        for k in 0..<c { sums[k] += Double(s[(b * hw + p) * c + k]) }
      }
      for p in 0..<hw {
        for k in 0..<c { d[(b * hw + p) * c + k] = Float(sums[k] / Double(hw)) }
      }
    }
    return out
  }
}

extension ModelLoader {
  /// A ControlNet folder (`config.json` + `diffusion_pytorch_model[.fp16].safetensors`, or a sharded
  /// index) → `ControlNetModel`, loaded strictly (every key must match).
  public static func controlNet(_ folder: URL, prepare: PrepareOptions = PrepareOptions()) throws -> ControlNetModel {
    let configURL = folder.appendingPathComponent("config.json")
    let config = try ConfigFile.load(ControlNetConfig.self, from: configURL)
    let model = try ControlNetModel(config: config, path: configURL.path)
    let archive = try openWeights(in: folder, stem: "diffusion_pytorch_model")
    try model.loadWeights(from: archive, source: folder.path, options: LoadOptions(prepare: prepare))
    return model
  }
}
