import Autograd
import Foundation
import IPAdapter
import Models
import Pipelines
import Schedulers
import TensorCore
import Tokenizers

/// The frozen parts of adapter training: the base model's UNet, VAE, text encoder(s) and
/// tokenizer(s), its noise schedule, and the CLIP image encoder. None of them learns. An SDXL
/// base model brings its second tokenizer and text encoder (`sdxl`); its refiner (aesthetic-score
/// micro-conditioning, no first text encoder) is refused.
public struct FrozenTrainingModels {
  public let unet: UNet2DConditionModel
  public let vae: AutoencoderKL
  public let textEncoder: CLIPTextModel
  public let tokenizer: CLIPTokenizer
  /// SDXL's `tokenizer_2` / `text_encoder_2` (nil for SD 1.x/2.x).
  public let sdxl: SDXLTextEncoders?
  public let imageEncoder: CLIPVisionModel
  public let schedule: TrainingNoiseSchedule

  public init(
    unet: UNet2DConditionModel, vae: AutoencoderKL, textEncoder: CLIPTextModel, tokenizer: CLIPTokenizer,
    sdxl: SDXLTextEncoders? = nil, imageEncoder: CLIPVisionModel, schedule: TrainingNoiseSchedule
  ) throws {
    let width = textEncoder.config.hiddenSize + (sdxl?.textEncoder2.config.hiddenSize ?? 0)
    if let shape = unet.config.textTimeEmbedding {
      guard let sdxl else {
        throw AutogradError.invalidArgument("this UNet is SDXL-shaped (text_time): training needs the model's tokenizer_2 and text_encoder_2")
      }
      let pooled = sdxl.textEncoder2.config.projectionDim
      guard sdxl.timeIdCount(for: shape) == 6, shape.inputDim == pooled + 6 * shape.timeEmbedDim else {
        throw AutogradError.invalidArgument(
          "adapter training supports SDXL base models (6 micro-conditioning values); this UNet's add_embedding takes "
            + "\(shape.inputDim) = pooled \(pooled) + time ids (an SDXL refiner?)")
      }
    } else if sdxl != nil {
      throw AutogradError.invalidArgument("a second text encoder was given for a UNet without SDXL's text_time embedding")
    }
    guard width == unet.crossAttentionDim else {
      throw AutogradError.invalidArgument(
        "the text encoders' width \(width) is not the UNet's cross_attention_dim \(unet.crossAttentionDim)")
    }
    (self.unet, self.vae, self.textEncoder, self.tokenizer, self.sdxl, self.imageEncoder, self.schedule) =
      (unet, vae, textEncoder, tokenizer, sdxl, imageEncoder, schedule)
  }

  /// The frozen parts of a loaded base model (its own noise schedule, `scheduler_config.json`)
  /// and an image encoder.
  public init(pipeline: StableDiffusionPipeline, imageEncoder: CLIPVisionModel) throws {
    guard let textEncoder = pipeline.textEncoder, let tokenizer = pipeline.tokenizer, !pipeline.requiresAestheticsScore else {
      throw AutogradError.invalidArgument(
        "adapter training needs an SD 1.x/2.x or SDXL base model with its tokenizer and text encoder (\(pipeline.modelName) "
          + "is a refiner or has no text encoder)")
    }
    try self.init(
      unet: pipeline.unet, vae: pipeline.vae, textEncoder: textEncoder, tokenizer: tokenizer, sdxl: pipeline.sdxl,
      imageEncoder: imageEncoder, schedule: try TrainingNoiseSchedule(config: pipeline.schedulerConfig))
  }

  /// Whether the base model is SDXL (two text encoders, micro-conditioning).
  public var isSDXL: Bool { sdxl != nil }

  /// The captions through the text encoder(s): SD 1.x/2.x `text_encoder(ids)[0]` (last hidden
  /// state); SDXL both encoders' `hidden_states[-2]` concatenated and `text_encoder_2`'s projected
  /// pooled output (`tutorial_train_sdxl.py`). `[B, 77, width]` and `[B, pooled]` (nil for SD 1.x/2.x).
  public func encodeTexts(_ texts: [String]) throws -> (hidden: Tensor, pooled: Tensor?) {
    let ids = texts.map { tokenizer($0).ids }
    guard let sdxl else { return (try textEncoder(ids).lastHiddenState, nil) }
    let first = try textEncoder(ids, keepHiddenStates: true)
    let ids2 = texts.map { sdxl.tokenizer2($0).ids }
    let second = try sdxl.textEncoder2(ids2, keepHiddenStates: true)
    let hidden = try Ops.concatLast(
      first.hiddenStates[first.hiddenStates.count - 2], second.hiddenStates[second.hiddenStates.count - 2])
    return (hidden, try sdxl.textEncoder2.textEmbeds(lastHiddenState: second.lastHiddenState, ids: ids2))
  }
}

/// Trains an IP-Adapter: the image projection and every cross-attention layer's `to_k_ip` /
/// `to_v_ip` learn; everything else is frozen.
///
/// matches: tencent-ailab/IP-Adapter `tutorial_train.py` (global `ImageProjModel` on
/// `image_embeds`; a dropped image is a zero embedding) and `tutorial_train_plus.py` (Resampler or
/// full-face `MLPProjModel` on `hidden_states[-2]`; a dropped image is a zero image through the
/// encoder), one step: `latents = vae.encode(x).latent_dist.sample() · scaling_factor`, noise
/// (+ `noise_offset · n[:, :, None, None]`), `add_noise` at per-sample timesteps, text
/// `text_encoder(ids)[0]` ("" where dropped), `unet(noisy, t, cat(text, image_proj(embeds)))`,
/// `F.mse_loss(pred, ε or v)` (mean), AdamW. The Qwen-VL resampler trains as the Plus projection
/// does (hidden states, a zero image when dropped). SDXL base models train as
/// `tutorial_train_sdxl.py`: both text encoders' `hidden_states[-2]` concatenated, `text_encoder_2`'s
/// pooled output and the example's `add_time_ids` as `added_cond_kwargs` ("" for both tokenizers
/// where the text is dropped). Limitations: no SDXL refiner; FaceID and FaceID-Plus projections are
/// not trainable yet.
public final class AdapterTrainer {
  public let models: FrozenTrainingModels
  public let variant: IPAdapterVariant
  public let projection: any TrainableProjection
  public let unet: DifferentiableUNet
  public let optimizer: AdamW
  /// Base learning rate; the optimiser's rate is this times `schedule.factor(step:)`.
  public let learningRate: Double
  public var learningRateSchedule: LearningRateSchedule = .constant
  /// `max_grad_norm` (nil: no clipping, as `tutorial_train.py`).
  public var maxGradNorm: Double?
  /// `--noise-offset` (0: none).
  public var noiseOffset: Float = 0
  /// Optimiser steps taken.
  public private(set) var step = 0
  private var emptyText: (hidden: Tensor, pooled: Tensor?)?
  private var zeroImage: Tensor?

  /// - Parameters:
  ///   - imageProj, ipAdapter: the adapter's starting tensors in the released layout (without the
  ///     `image_proj.` / `ip_adapter.` prefixes); `AdapterInitialization` makes a new adapter's.
  public init(
    models: FrozenTrainingModels, variant: IPAdapterVariant, imageProj: [String: Tensor], ipAdapter: [String: Tensor],
    learningRate: Double = 1e-4, weightDecay: Double = 1e-2
  ) throws {
    switch variant {
    case .global(let e, let c, _):
      guard e == models.imageEncoder.config.projectionDim, c == models.unet.crossAttentionDim else {
        throw AutogradError.invalidArgument(
          "a \(variant) needs image embeds of \(e) (the encoder gives \(models.imageEncoder.config.projectionDim)) and "
            + "tokens of \(c) (the UNet takes \(models.unet.crossAttentionDim))")
      }
    case .plus, .fullFace, .qwen: break
    case .faceID, .faceIDPlus: throw AutogradError.invalidArgument("training \(variant) adapters is not supported yet")
    }
    self.models = models
    self.variant = variant
    projection = try TrainableProjections.make(variant, state: imageProj)
    unet = try DifferentiableUNet(models.unet, ipAdapter: ipAdapter)
    self.learningRate = learningRate
    optimizer = try AdamW(
      parameters: projection.parameters.map(\.variable) + unet.parameters.map(\.variable), learningRate: learningRate,
      weightDecay: weightDecay)
  }

  /// Every trainable leaf under its key in the saved file (`image_proj.*`, then `ip_adapter.*`).
  public var parameters: [(key: String, variable: Variable)] {
    projection.parameters.map { ("image_proj." + $0.key, $0.variable) } + unet.parameters.map { ("ip_adapter." + $0.key, $0.variable) }
  }

  /// Whether the projection reads CLIP's `image_embeds` (global) or `hidden_states[-2]`.
  var imageFeatureKind: CLIPVisionOutputKind {
    if case .global = variant { return .imageEmbeds }
    return .penultimateHiddenState
  }

  /// The frozen half of a step: noisy latents, the training target and the conditions.
  public struct Conditioned {
    public var noisyLatents: Tensor
    public var target: Tensor
    public var text: Tensor
    public var imageFeatures: Tensor
    /// SDXL: the pooled text embeddings and `add_time_ids` (nil for SD 1.x/2.x).
    public var textTime: TextTimeConditions?
  }

  /// Everything of a step that does not depend on a trainable value. A batch with `precomputed`
  /// features (`--cache-dir`) skips the encoders: the latent is drawn from the stored posterior, a
  /// dropped caption is the empty caption's hidden states and a dropped image prompt the features
  /// of the zero image (or zero embeds), each computed once.
  public func condition(_ batch: TrainingBatch, _ r: StepRandomness) throws -> Conditioned {
    let b = batch.count
    guard b > 0, r.timesteps.count == b, r.dropText.count == b, r.dropImage.count == b else {
      throw AutogradError.invalidArgument(
        "a training batch of \(b) texts needs \(b) timesteps and dropout decisions; got \(r.timesteps.count) timesteps")
    }
    let posterior: DiagonalGaussian
    let text: Tensor
    var pooled: Tensor?
    let features: Tensor
    if let p = batch.precomputed {
      guard [p.latentMean, p.latentLogVariance, p.text, p.image].allSatisfy({ $0.rank >= 2 && $0.shape[0] == b }) else {
        throw AutogradError.invalidArgument(
          "precomputed features for \(b) examples: latents \(p.latentMean.shape), text \(p.text.shape), image \(p.image.shape)")
      }
      posterior = DiagonalGaussian(mean: p.latentMean, logVariance: p.latentLogVariance)
      let empty = try emptyTextHiddenStates()
      text = try Self.replacingRows(p.text, r.dropText, with: empty.hidden)
      if models.isSDXL {
        guard let rows = p.pooled, let emptyPooled = empty.pooled else {
          throw AutogradError.invalidArgument("precomputed features for an SDXL model need the pooled text embeddings")
        }
        pooled = try Self.replacingRows(rows, r.dropText, with: emptyPooled)
      }
      if imageFeatureKind == .imageEmbeds {
        features = Self.zeroingRows(p.image, r.dropImage)
      } else {
        features = try Self.replacingRows(p.image, r.dropImage, with: try zeroImageFeatures())
      }
    } else {
      guard batch.images.rank == 4, batch.images.shape[0] == b, batch.clipPixels.rank == 4, batch.clipPixels.shape[0] == b else {
        throw AutogradError.invalidArgument(
          "a training batch of \(b) texts needs \(b) images and CLIP images; got images \(batch.images.shape), "
            + "CLIP images \(batch.clipPixels.shape)")
      }
      posterior = try models.vae.encode(batch.images)
      (text, pooled) = try models.encodeTexts(zip(batch.texts, r.dropText).map { $1 ? "" : $0 })
      if imageFeatureKind == .imageEmbeds {
        features = Self.zeroingRows(try models.imageEncoder(batch.clipPixels, output: .imageEmbeds), r.dropImage)
      } else {
        features = try models.imageEncoder(Self.zeroingRows(batch.clipPixels, r.dropImage), output: .penultimateHiddenState)
      }
    }
    let latents = Ops.scale(try posterior.sample(noise: r.vaeNoise), models.vae.config.scalingFactor)
    var noise = r.noise
    if noiseOffset != 0, let offset = r.offsetNoise {
      noise = try Self.addingOffset(noise, offset, noiseOffset)
    }
    let noisy = try models.schedule.addNoise(latents, noise: noise, timesteps: r.timesteps)
    let target = try models.schedule.target(latents, noise: noise, timesteps: r.timesteps)
    var textTime: TextTimeConditions?
    if models.isSDXL {
      guard let rows = batch.timeIds, rows.count == b, rows.allSatisfy({ $0.count == 6 }), let pooled else {
        throw AutogradError.invalidArgument(
          "an SDXL training batch of \(b) needs 6 add_time_ids per example (original size, crop, target size); got "
            + "\(batch.timeIds.map { "\($0.count) rows" } ?? "none")")
      }
      textTime = TextTimeConditions(textEmbeds: pooled, timeIds: rows)
    }
    return Conditioned(noisyLatents: noisy, target: target, text: text, imageFeatures: features, textTime: textTime)
  }

  /// The frozen features of one example, as `TrainingFeatureCache` stores them (no batch axis).
  /// - Parameters:
  ///   - image: the diffusion target `[R, R, 3]` (`TrainingDataset.targetPixels`).
  ///   - clipPixels: the image prompt through the CLIP image processor, `[1, S, S, 3]` or `[S, S, 3]`.
  ///   - timeIds: SDXL's `add_time_ids` of the example (`TrainingDataset.targetPixelsSDXL`).
  public func features(image: Tensor, clipPixels: Tensor, text: String, timeIds: [Float]? = nil) throws -> TrainingFeatureCache.Features {
    func one(_ t: Tensor) -> Tensor { t.rank == 3 ? t.reshaped([1] + t.shape) : t }
    func drop(_ t: Tensor) -> Tensor { t.reshaped(Array(t.shape.dropFirst())) }
    let posterior = try models.vae.encode(one(image))
    let encoded = try models.encodeTexts([text])
    let clip = try models.imageEncoder(one(clipPixels), output: imageFeatureKind)
    return TrainingFeatureCache.Features(
      latentMean: drop(posterior.mean), latentLogVariance: drop(posterior.logVariance), text: drop(encoded.hidden),
      image: drop(clip), pooled: encoded.pooled.map(drop), timeIds: try timeIds.map { try Tensor(shape: [$0.count], floats: $0) })
  }

  /// The shapes `features(image:clipPixels:text:)` gives for `text` at `resolution`: the latent
  /// `[h, w, c]`, the text `[T, D]`, the image features `[E]` or `[L, D]`.
  /// SDXL adds the pooled embedding's `[P]` (nil otherwise).
  public func featureShapes(text: String, resolution: Int) -> (latent: [Int], text: [Int], image: [Int], pooled: [Int]?) {
    let side = resolution / models.vae.config.scaleFactor
    let vision = models.imageEncoder.config
    let tokens = (vision.imageSize / max(vision.patchSize, 1)) * (vision.imageSize / max(vision.patchSize, 1)) + 1
    return (
      [side, side, models.vae.config.latentChannels], [models.tokenizer(text).ids.count, models.unet.crossAttentionDim],
      imageFeatureKind == .imageEmbeds ? [vision.projectionDim] : [tokens, vision.hiddenSize],
      models.sdxl.map { [$0.textEncoder2.config.projectionDim] }
    )
  }

  /// The empty caption's hidden states `[T, D]` (and SDXL's pooled `[P]`) — a dropped caption —
  /// computed once.
  func emptyTextHiddenStates() throws -> (hidden: Tensor, pooled: Tensor?) {
    if let emptyText { return emptyText }
    let encoded = try models.encodeTexts([""])
    func drop(_ t: Tensor) -> Tensor { t.reshaped(Array(t.shape.dropFirst())) }
    emptyText = (drop(encoded.hidden), encoded.pooled.map(drop))
    return emptyText!
  }

  /// The zero image's `hidden_states[-2]` `[L, D]` (a dropped image prompt of
  /// `tutorial_train_plus.py`), computed once.
  func zeroImageFeatures() throws -> Tensor {
    if let zeroImage { return zeroImage }
    let side = models.imageEncoder.config.imageSize
    let hidden = try models.imageEncoder(Tensor.zeros([1, side, side, 3]), output: .penultimateHiddenState)
    zeroImage = hidden.reshaped(Array(hidden.shape.dropFirst()))
    return zeroImage!
  }

  /// The loss of a conditioned batch on `tape` (the trainable half of a step).
  public func loss(_ c: Conditioned, timesteps: [Int], on tape: Tape) throws -> Variable {
    let tokens = try projection(Variable(constant: c.imageFeatures), on: tape)
    let prediction = try unet(
      Variable(constant: c.noisyLatents), timesteps: timesteps.map(Float.init), text: Variable(constant: c.text),
      image: tokens, textTime: c.textTime, on: tape)
    return try tape.mseLoss(prediction, Variable(constant: c.target))
  }

  /// Adds this batch's gradients (of `loss / accumulationSteps`) to every parameter's and returns the loss.
  @discardableResult
  public func accumulate(_ batch: TrainingBatch, _ r: StepRandomness, accumulationSteps: Int = 1) throws -> Float {
    let conditioned = try condition(batch, r)
    let tape = Tape()
    let loss = try loss(conditioned, timesteps: r.timesteps, on: tape)
    let seed = try Tensor(shape: loss.shape, floats: [1 / Float(max(1, accumulationSteps))])
    try tape.backward(loss, seed: seed)
    return loss.value.floatPointer[0]
  }

  /// Clips (if `maxGradNorm`), updates every parameter with the scheduled learning rate, and
  /// clears the gradients.
  public func applyUpdate() throws {
    if let maxGradNorm { try GradientClipping.clipNorm(optimizer.parameters, maxNorm: maxGradNorm) }
    optimizer.learningRate = learningRate * learningRateSchedule.factor(step: step)
    try optimizer.step()
    optimizer.zeroGrad()
    step += 1
  }

  /// One optimiser step on one batch (no accumulation): the loss before the update.
  @discardableResult
  public func step(_ batch: TrainingBatch, _ r: StepRandomness) throws -> Float {
    optimizer.zeroGrad()
    let loss = try accumulate(batch, r)
    try applyUpdate()
    return loss
  }

  /// Sets the optimiser-step count (a restored checkpoint's).
  func restoreStep(_ step: Int) { self.step = step }

  /// The current adapter in the released layout (`image_proj.*`, `ip_adapter.*` keys).
  public func state() -> (imageProj: [String: Tensor], ipAdapter: [String: Tensor]) {
    (projection.state(), unet.state())
  }

  static func zeroingRows(_ t: Tensor, _ rows: [Bool]) -> Tensor {
    guard rows.contains(true) else { return t }
    var out = t.asFloat32()
    let per = out.count / max(rows.count, 1)
    out.withUnsafeMutableFloats { p in
      for (i, zero) in rows.enumerated() where zero { p.baseAddress!.advanced(by: i * per).update(repeating: 0, count: per) }
    }
    return out
  }

  /// `t` with the rows where `rows` is true replaced by `row` (`[B, …]`, `row` the shape of one).
  static func replacingRows(_ t: Tensor, _ rows: [Bool], with row: Tensor) throws -> Tensor {
    guard rows.contains(true) else { return t }
    let per = t.count / max(rows.count, 1)
    guard row.count == per, t.shape.count == row.shape.count + 1, Array(t.shape.dropFirst()) == row.shape else {
      throw AutogradError.shapeMismatch(operation: "replacing dropped rows", expected: Array(t.shape.dropFirst()), actual: row.shape)
    }
    var out = t.asFloat32()
    let source = row.asFloat32()
    out.withUnsafeMutableFloats { p in
      for (i, replace) in rows.enumerated() where replace {
        p.baseAddress!.advanced(by: i * per).update(from: source.floatPointer, count: per)
      }
    }
    return out
  }

  static func addingOffset(_ noise: Tensor, _ offset: Tensor, _ scale: Float) throws -> Tensor {
    let c = noise.shape.last ?? 0
    let b = noise.shape.first ?? 0
    guard offset.shape == [b, c] else {
      throw AutogradError.shapeMismatch(operation: "noise offset", expected: [b, c], actual: offset.shape)
    }
    var out = noise.asFloat32()
    let o = offset.asFloat32()
    let per = out.count / max(b, 1)
    out.withUnsafeMutableFloats { p in
      for i in 0..<b { for j in 0..<per { p[i * per + j] += scale * o.floatPointer[i * c + j % c] } }
    }
    return out
  }
}
