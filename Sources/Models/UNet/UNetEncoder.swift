import NN
import TensorCore

/// What the encoder half of a UNet needs from its config: the common core of
/// `UNet2DConditionConfig` and `ControlNetConfig` (values already validated by the config).
public protocol UNetEncoderConfiguration {
  var inChannels: Int { get }
  var blockOutChannels: [Int] { get }
  var downBlockTypes: [String] { get }
  /// Resnets per down block, one entry per block.
  var encoderLayersPerBlock: [Int] { get }
  var headsPerBlock: [Int] { get }
  /// Transformer blocks of each attention of each down block.
  var downTransformerLayers: [[Int]] { get }
  /// Of the middle block's attention.
  var midTransformerLayers: Int { get }
  var groups: Int { get }
  var normEps: Float { get }
  /// Width of the tokens the cross-attention layers take.
  var crossAttentionWidth: Int { get }
  var useLinearProjection: Bool { get }
  var downsamplePadding: Int { get }
  var midBlockScaleFactor: Float { get }
  var flipSinToCos: Bool { get }
  var freqShift: Int { get }
  /// Kernel size of `conv_in` (3 for every SD model; odd).
  var convInKernel: Int { get }
  /// SDXL's addition embedding, if the model has one.
  var textTimeEmbedding: TextTimeEmbeddingShape? { get }
}

/// The encoder half shared by `UNet2DConditionModel` and `ControlNetModel`: `conv_in`, the time
/// embedding, the down blocks and the middle block, and their cross-attention layers. Both models
/// list its parts at their own root (`conv_in`, `time_embedding.linear_1`, `down_blocks.N`,
/// `mid_block`), as diffusers' checkpoints do.
///
/// matches: the `conv_in` / `time_proj` + `time_embedding` / `down_blocks` / `mid_block` part of
/// diffusers `UNet2DConditionModel.forward` and `ControlNetModel.forward` (0.42.1), which build
/// them from the same block classes. Limitations: positional time embedding only, no
/// class embeddings; the only addition embedding is SDXL's `text_time`.
public final class UNetEncoder {
  public let convIn: Conv2d
  public let timeLinear1: Linear
  public let timeLinear2: Linear
  /// SDXL's `add_embedding.linear_1` / `linear_2` (nil without an addition embedding).
  public let addLinear1: Linear?
  public let addLinear2: Linear?
  let textTimeShape: TextTimeEmbeddingShape?
  public let downBlocks: [DownBlock]
  public let midBlock: MidBlock
  let timeDimension: Int
  let flipSinToCos: Bool
  let freqShift: Int

  public init(_ config: some UNetEncoderConfiguration) {
    let channels = config.blockOutChannels
    let n = channels.count
    let timeChannels = channels[0] * 4
    let heads = config.headsPerBlock
    let layers = config.encoderLayersPerBlock
    let transformerLayers = config.downTransformerLayers
    let (groups, eps) = (config.groups, config.normEps)
    let (context, linear) = (config.crossAttentionWidth, config.useLinearProjection)

    convIn = Conv2d(
      config.inChannels, channels[0], kernelSize: config.convInKernel, padding: (config.convInKernel - 1) / 2)
    timeLinear1 = Linear(channels[0], timeChannels)
    timeLinear2 = Linear(timeChannels, timeChannels)
    textTimeShape = config.textTimeEmbedding
    addLinear1 = textTimeShape.map { Linear($0.inputDim, timeChannels) }
    addLinear2 = textTimeShape.map { _ in Linear(timeChannels, timeChannels) }
    var down: [DownBlock] = []
    var output = channels[0]
    for i in 0..<n {
      let input = output
      output = channels[i]
      let cross = config.downBlockTypes[i] == "CrossAttnDownBlock2D"
      down.append(
        DownBlock(
          inChannels: input, outChannels: output, layers: layers[i], timeChannels: timeChannels, groups: groups,
          eps: eps, attention: cross ? (heads[i], context, transformerLayers[i], linear) : nil,
          addDownsample: i < n - 1, downsamplePadding: config.downsamplePadding))
    }
    downBlocks = down
    midBlock = MidBlock(
      channels: channels[n - 1], timeChannels: timeChannels, groups: groups, eps: eps,
      outputScaleFactor: config.midBlockScaleFactor, heads: heads[n - 1], contextDim: context,
      transformerLayers: config.midTransformerLayers, linear: linear)
    timeDimension = channels[0]
    flipSinToCos = config.flipSinToCos
    freqShift = config.freqShift
  }

  /// `conv_in` and the time embedding under their checkpoint names (each model places them, the
  /// down blocks and `mid_block` among its own children).
  var stemChildren: [(String, any Module)] {
    var c: [(String, any Module)] = [
      ("conv_in", convIn), ("time_embedding.linear_1", timeLinear1), ("time_embedding.linear_2", timeLinear2),
    ]
    if let addLinear1, let addLinear2 {
      c += [("add_embedding.linear_1", addLinear1), ("add_embedding.linear_2", addLinear2)]
    }
    return c
  }

  var downChildren: [(String, any Module)] { downBlocks.enumerated().map { ("down_blocks.\($0)", $1 as any Module) } }

  /// The time embedding `silu(time_embedding(time_proj(t)) [+ add_embedding(…)])` for a batch of
  /// `batch` samples (the SiLU every ResNet applies to it first, done once here).
  ///
  /// matches: diffusers `UNet2DConditionModel.forward`'s `emb = time_embedding(t_emb)` and, for
  /// `addition_embed_type: "text_time"`, `emb + add_embedding(cat([text_embeds,
  /// add_time_proj(time_ids).reshape(B, -1)], -1))`.
  func timeEmbedding(_ timestep: Float, batch: Int, textTime: TextTimeConditions?) throws -> Tensor {
    let sinusoid = TimestepEmbedding.sinusoidal(
      timesteps: [timestep], dimension: timeDimension, flipSinToCos: flipSinToCos,
      downscaleFreqShift: Float(freqShift))
    let emb = try Ops.concatRows(
      Array(repeating: try timeLinear2(try timeLinear1(sinusoid).applyingSiLU()), count: batch))
    return try addingTextTime(emb, batch: batch, textTime: textTime)
  }

  /// The activated time embedding `[B, time channels]` for one timestep per sample (training,
  /// where every sample of a batch has its own), as `timeEmbedding(_:batch:textTime:)`.
  public func timeEmbedding(timesteps: [Float], textTime: TextTimeConditions?) throws -> Tensor {
    guard !timesteps.isEmpty else { throw ModuleError.invalidInput("the time embedding needs at least one timestep") }
    let sinusoid = TimestepEmbedding.sinusoidal(
      timesteps: timesteps, dimension: timeDimension, flipSinToCos: flipSinToCos,
      downscaleFreqShift: Float(freqShift))
    let emb = try timeLinear2(try timeLinear1(sinusoid).applyingSiLU())
    return try addingTextTime(emb, batch: timesteps.count, textTime: textTime)
  }

  /// `silu(emb [+ add_embedding(text_time)])`.
  private func addingTextTime(_ timeEmbedding: Tensor, batch: Int, textTime: TextTimeConditions?) throws -> Tensor {
    var emb = timeEmbedding
    if let shape = textTimeShape, let addLinear1, let addLinear2 {
      guard let textTime else {
        throw ModuleError.invalidInput("this UNet (SDXL) needs pooled text embeddings and time ids (text_time)")
      }
      let pooled = textTime.textEmbeds
      let count = textTime.timeIds.first?.count ?? 0
      guard pooled.rank == 2, pooled.shape[0] == batch, textTime.timeIds.count == batch,
        textTime.timeIds.allSatisfy({ $0.count == count }),
        pooled.shape[1] + count * shape.timeEmbedDim == shape.inputDim
      else {
        throw ModuleError.invalidInput(
          "text_time conditioning of \(pooled.shape) text embeds and \(textTime.timeIds.count)×\(count) time ids "
            + "does not fit this UNet's add_embedding (batch \(batch), \(shape.inputDim) inputs, "
            + "\(shape.timeEmbedDim) per time id)")
      }
      let times = TimestepEmbedding.sinusoidal(
        timesteps: textTime.timeIds.flatMap { $0 }, dimension: shape.timeEmbedDim, flipSinToCos: flipSinToCos,
        downscaleFreqShift: Float(freqShift)
      ).reshaped([batch, count * shape.timeEmbedDim])
      let aug = try addLinear2(try addLinear1(try Ops.concatLast(pooled, times)).applyingSiLU())
      emb = try Ops.add(emb, aug)
    }
    return Ops.silu(emb)
  }

  /// `conv_in` (plus `accumulate`, the ControlNet's control embedding) and the down blocks: the
  /// last hidden state and every skip tensor (`conv_in` output first). Checks for cancellation
  /// before every block.
  func down(
    _ sample: Tensor, accumulate: Tensor? = nil, timeEmbedding temb: Tensor, conditioning: CrossAttentionConditioning
  ) throws -> (hidden: Tensor, skips: [Tensor]) {
    var h = try accumulate.map { try convIn(sample, accumulate: $0) } ?? convIn(sample)
    var skips = [h]
    for block in downBlocks {
      try CancellationToken.checkCurrent()
      h = try block(h, timeEmbedding: temb, conditioning: conditioning, residualsOut: &skips)
    }
    return (h, skips)
  }

  /// Appends the cross-attention layers of the down blocks (or the middle block) to `layers`,
  /// numbering each block's `crossAttentionIndex` by its position there.
  func collectCrossAttention(middle: Bool, into layers: inout [(name: String, block: BasicTransformerBlock)]) {
    if middle {
      Self.collect("mid_block", midBlock.attentions, into: &layers)
    } else {
      for (i, b) in downBlocks.enumerated() { Self.collect("down_blocks.\(i)", b.attentions, into: &layers) }
    }
  }

  /// Appends the `attn2` of every transformer block of `attentions` (key paths under `prefix`).
  static func collect(
    _ prefix: String, _ attentions: [Transformer2DModel], into layers: inout [(name: String, block: BasicTransformerBlock)]
  ) {
    for (a, t) in attentions.enumerated() {
      for (b, block) in t.blocks.enumerated() {
        block.crossAttentionIndex = layers.count
        layers.append(("\(prefix).attentions.\(a).transformer_blocks.\(b).attn2", block))
      }
    }
  }

  /// The text keys/values of `layers` (one source each), computed once per generation.
  static func conditioning(
    _ layers: [(name: String, block: BasicTransformerBlock)], encoderHiddenStates: Tensor, width: Int, model: String
  ) throws -> CrossAttentionConditioning {
    guard encoderHiddenStates.rank == 3, encoderHiddenStates.shape[2] == width else {
      throw ModuleError.invalidInput("\(model) text embeddings must be [B, L, \(width)], got \(encoderHiddenStates.shape)")
    }
    let sources = try layers.map { layer -> [AttentionSource] in
      let (k, v) = try layer.block.attn2.keyValue(encoderHiddenStates)
      return [AttentionSource(key: k, value: v)]
    }
    return CrossAttentionConditioning(sources: sources, batch: encoderHiddenStates.shape[0])
  }
}

extension UNet2DConditionConfig: UNetEncoderConfiguration {
  public var encoderLayersPerBlock: [Int] { layersPerBlockList }
}

extension ControlNetConfig: UNetEncoderConfiguration {
  public var encoderLayersPerBlock: [Int] { Array(repeating: layersPerBlock, count: blockOutChannels.count) }
  public var crossAttentionWidth: Int { crossAttentionDim }
  public var convInKernel: Int { 3 }
}
