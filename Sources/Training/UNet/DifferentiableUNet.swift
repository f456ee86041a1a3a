import Autograd
import IPAdapter
import Models
import NN
import TensorCore

/// A UNet spatial transformer with frozen weights on the tape (its cross-attention layers carry
/// the trainable image branch).
///
/// matches: diffusers `Transformer2DModel` (continuous input): `proj_out(blocks(proj_in(norm(x)))) + x`;
/// `proj_in`/`proj_out` as 1×1 convolutions or linear layers act on each pixel's channels alike.
final class DifferentiableTransformer2D {
  let norm: FrozenNorm, projIn: FrozenLinear, projOut: FrozenLinear
  let blocks: [DifferentiableTransformerBlock]

  init(_ t: Transformer2DModel, ipWeights: (BasicTransformerBlock) throws -> (Tensor, Tensor)) throws {
    norm = FrozenNorm(t.norm)
    projIn = try FrozenLinear(projection: t.projIn)
    projOut = try FrozenLinear(projection: t.projOut)
    blocks = try t.blocks.map { block in
      let (k, v) = try ipWeights(block)
      return try DifferentiableTransformerBlock(block, toKIP: k, toVIP: v)
    }
  }

  func callAsFunction(_ x: Variable, text: Variable, image: Variable, scale: Float, on tape: Tape) throws -> Variable {
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    var tokens = try projIn(try tape.reshape(try norm(x, on: tape), [n, h * w, c]), on: tape)
    for block in blocks { tokens = try block(tokens, text: text, image: image, scale: scale, on: tape) }
    return try tape.add(try tape.reshape(try projOut(tokens, on: tape), [n, h, w, c]), x)
  }
}

/// One down, middle or up block of the UNet on the tape: its ResNets, transformers (if any) and
/// resampler, walked as the engine's inference block walks them.
final class DifferentiableUNetBlock {
  let resnets: [DifferentiableResnetBlock]
  let attentions: [DifferentiableTransformer2D]
  /// `downsamplers.0.conv` (stride 2) or `upsamplers.0.conv` (after a nearest ×2).
  let resample: FrozenConv?

  init(resnets: [ResnetBlock2D], attentions: [Transformer2DModel], resample: Conv2d?, ipWeights: (BasicTransformerBlock) throws -> (Tensor, Tensor)) throws {
    self.resnets = try resnets.map(DifferentiableResnetBlock.init)
    self.attentions = try attentions.map { try DifferentiableTransformer2D($0, ipWeights: ipWeights) }
    self.resample = try resample.map(FrozenConv.init)
  }
}

/// The whole frozen UNet on the tape, with IP-Adapter's decoupled image branch in every
/// cross-attention layer: differentiable with respect to the image tokens and every layer's
/// `to_k_ip` / `to_v_ip` (the trainable parts of an adapter); the UNet's own weights get no
/// gradient. Built from a loaded `UNet2DConditionModel`, whose module tree it walks (the same
/// down / middle / up blocks, skip connections and resamplers as the inference forward).
///
/// matches: diffusers `UNet2DConditionModel.forward` (0.42.1; SD 1.x/2.x and SDXL configurations,
/// one timestep per sample, SDXL's `text_time` addition embedding) with tencent-ailab/IP-Adapter's
/// `IPAttnProcessor2_0` on every `attn2` (text tokens first, then the image tokens) — the model
/// `tutorial_train.py` trains. With `gradientCheckpointing` every ResNet and transformer is
/// recomputed in the backward pass (`torch.utils.checkpoint`, as diffusers'
/// `enable_gradient_checkpointing`). Limitations: latent sizes must be multiples of the UNet's total
/// down factor; no ControlNet residuals.
public final class DifferentiableUNet {
  public let unet: UNet2DConditionModel
  /// Every cross-attention layer's trainable branch, in diffusers' processor order (the order of
  /// `unet.crossAttentionLayers`), with its released key (`1`, `3`, …).
  public let crossAttention: [(key: String, layer: TrainableDecoupledAttention)]
  let down: [DifferentiableUNetBlock]
  let mid: DifferentiableUNetBlock
  let up: [DifferentiableUNetBlock]
  let normOut: FrozenNorm, convOut: FrozenConv
  /// Recompute each ResNet's and transformer's activations during the backward pass instead of
  /// keeping them (`--gradient-checkpointing`).
  public var gradientCheckpointing = false

  /// - Parameter ipAdapter: the adapter's `ip_adapter` tensors under the released keys
  ///   (`1.to_k_ip.weight`, …; `AdapterInitialization.decoupledAttentionState` makes new ones).
  public init(_ unet: UNet2DConditionModel, ipAdapter: [String: Tensor]) throws {
    self.unet = unet
    let slots = IPAdapterLayerTable.slots(for: unet)
    var keyOf: [ObjectIdentifier: String] = [:]
    for (slot, layer) in zip(slots, unet.crossAttentionLayers) { keyOf[ObjectIdentifier(layer.block)] = String(slot.key) }
    func weights(_ block: BasicTransformerBlock) throws -> (Tensor, Tensor) {
      guard let key = keyOf[ObjectIdentifier(block)] else {
        throw AutogradError.invalidArgument("DifferentiableUNet: a transformer block is not among the UNet's cross-attention layers")
      }
      let names = ["\(key).to_k_ip.weight", "\(key).to_v_ip.weight"]
      guard let k = ipAdapter[names[0]], let v = ipAdapter[names[1]] else {
        throw AutogradError.invalidArgument("DifferentiableUNet: the adapter has no ip_adapter.\(names[0]) / \(names[1])")
      }
      return (k.asFloat32(), v.asFloat32())
    }
    down = try unet.downBlocks.map {
      try DifferentiableUNetBlock(resnets: $0.resnets, attentions: $0.attentions, resample: $0.downsampler?.conv, ipWeights: weights)
    }
    mid = try DifferentiableUNetBlock(resnets: unet.midBlock.resnets, attentions: unet.midBlock.attentions, resample: nil, ipWeights: weights)
    up = try unet.upBlocks.map {
      try DifferentiableUNetBlock(resnets: $0.resnets, attentions: $0.attentions, resample: $0.upsampler?.conv, ipWeights: weights)
    }
    normOut = FrozenNorm(unet.convNormOut)
    convOut = try FrozenConv(unet.convOut)
    // Processor order, as `unet.crossAttentionLayers` (down, up, mid).
    var byBlock: [ObjectIdentifier: TrainableDecoupledAttention] = [:]
    let pairs = zip(unet.downBlocks.flatMap(\.attentions) + unet.upBlocks.flatMap(\.attentions) + unet.midBlock.attentions,
                    (down + up + [mid]).flatMap(\.attentions))
    for (frozen, differentiable) in pairs {
      for (a, b) in zip(frozen.blocks, differentiable.blocks) { byBlock[ObjectIdentifier(a)] = b.crossAttention }
    }
    crossAttention = unet.crossAttentionLayers.map { layer in
      let id = ObjectIdentifier(layer.block)
      return (keyOf[id]!, byBlock[id]!)
    }
  }

  /// Every trainable `to_k_ip` / `to_v_ip` leaf under its `ip_adapter` key.
  public var parameters: [(key: String, variable: Variable)] {
    crossAttention.flatMap { [("\($0.key).to_k_ip.weight", $0.layer.toKIP), ("\($0.key).to_v_ip.weight", $0.layer.toVIP)] }
  }

  /// The current `ip_adapter` tensors by key.
  public func state() -> [String: Tensor] { Dictionary(uniqueKeysWithValues: parameters.map { ($0.key, $0.variable.value) }) }

  /// The UNet's prediction (noise or v) for NHWC latents `sample` `[B, h, w, in_channels]`, one
  /// timestep per sample, text tokens `[B, Lt, cross]` (frozen) and image tokens `[B, T, cross]`
  /// at scale λ (`IPAttnProcessor2_0(scale: 1.0)` in training).
  public func callAsFunction(
    _ sample: Variable, timesteps: [Float], text: Variable, image: Variable, scale: Float = 1,
    textTime: TextTimeConditions? = nil, on tape: Tape
  ) throws -> Variable {
    let config = unet.config
    let factor = 1 << (config.blockOutChannels.count - 1)
    guard sample.shape.count == 4, sample.shape[3] == config.inChannels, sample.shape[1] % factor == 0,
      sample.shape[2] % factor == 0, timesteps.count == sample.shape[0]
    else {
      throw AutogradError.invalidArgument(
        "DifferentiableUNet: sample must be NHWC [B, h, w, \(config.inChannels)] with h and w multiples of \(factor) and one "
          + "timestep per sample; got \(sample.shape) and \(timesteps.count) timesteps")
    }
    let batch = sample.shape[0]
    for (name, t) in [("text", text), ("image", image)] where t.shape.count != 3 || t.shape[0] != batch || t.shape[2] != unet.crossAttentionDim {
      throw AutogradError.invalidArgument("DifferentiableUNet: \(name) tokens must be [\(batch), L, \(unet.crossAttentionDim)], got \(t.shape)")
    }
    // The time embedding depends on no trainable value: computed once by the inference encoder
    // (already passed through the SiLU every ResNet applies to it).
    let temb = Variable(constant: try unet.encoder.timeEmbedding(timesteps: timesteps, textTime: textTime))
    // conv_in reads only the (constant) latents.
    var h = Variable(constant: try unet.convIn(sample.value))
    var skips = [h]
    for block in down {
      for (i, resnet) in block.resnets.enumerated() {
        h = try run(resnet, h, temb, on: tape)
        if !block.attentions.isEmpty { h = try run(block.attentions[i], h, text, image, scale, on: tape) }
        skips.append(h)
      }
      if let conv = block.resample {
        h = try conv(h, on: tape)
        skips.append(h)
      }
    }
    h = try run(mid.resnets[0], h, temb, on: tape)
    h = try run(mid.attentions[0], h, text, image, scale, on: tape)
    h = try run(mid.resnets[1], h, temb, on: tape)
    for block in up {
      for (i, resnet) in block.resnets.enumerated() {
        h = try run(resnet, try tape.concatLast(h, skips.removeLast()), temb, on: tape)
        if !block.attentions.isEmpty { h = try run(block.attentions[i], h, text, image, scale, on: tape) }
      }
      if let conv = block.resample { h = try conv(try tape.upsampleNearest2x(h), on: tape) }
    }
    return try convOut(tape.silu(try normOut(h, on: tape)), on: tape)
  }

  private func run(_ resnet: DifferentiableResnetBlock, _ x: Variable, _ temb: Variable, on tape: Tape) throws -> Variable {
    // A ResNet reading only constants (the first ones, before any image token) is not recorded.
    if !x.requiresGrad { return try resnet(x, timeEmbedding: temb, activated: true, on: tape) }
    guard gradientCheckpointing else { return try resnet(x, timeEmbedding: temb, activated: true, on: tape) }
    return try tape.checkpoint([x]) { t, v in try resnet(v[0], timeEmbedding: temb, activated: true, on: t) }
  }

  private func run(
    _ transformer: DifferentiableTransformer2D, _ x: Variable, _ text: Variable, _ image: Variable, _ scale: Float, on tape: Tape
  ) throws -> Variable {
    guard gradientCheckpointing else { return try transformer(x, text: text, image: image, scale: scale, on: tape) }
    return try tape.checkpoint([x, text, image]) { t, v in try transformer(v[0], text: v[1], image: v[2], scale: scale, on: t) }
  }
}
