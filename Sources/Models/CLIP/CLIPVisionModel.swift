import Foundation
import NN
import TensorCore
import Weights

/// The `config.json` of an image encoder folder (a transformers `CLIPVisionConfig`).
///
/// matches: transformers `CLIPVisionConfig` defaults (5.23). Trap: the class default of
/// `hidden_act` is `quick_gelu`, while the OpenCLIP ViT-H/14 and ViT-bigG/14 encoders IP-Adapter
/// uses say `gelu` — the file's value always wins.
public struct CLIPVisionConfig: Codable, Sendable, Equatable {
  public var hiddenSize: Int = 768
  public var intermediateSize: Int = 3072
  public var projectionDim: Int = 512
  public var numHiddenLayers: Int = 12
  public var numAttentionHeads: Int = 12
  public var numChannels: Int = 3
  public var imageSize: Int = 224
  public var patchSize: Int = 32
  public var hiddenAct: String = "quick_gelu"
  public var layerNormEps: Float = 1e-5

  enum CodingKeys: String, CodingKey {
    case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
    case projectionDim = "projection_dim", numHiddenLayers = "num_hidden_layers"
    case numAttentionHeads = "num_attention_heads", numChannels = "num_channels"
    case imageSize = "image_size", patchSize = "patch_size", hiddenAct = "hidden_act"
    case layerNormEps = "layer_norm_eps"
    case visionConfig = "vision_config"
  }

  public init() {}

  /// Accepts a vision config, or a full `CLIPConfig` whose `vision_config` holds it.
  public init(from decoder: Decoder) throws {
    let outer = try decoder.container(keyedBy: CodingKeys.self)
    let c = outer.contains(.visionConfig)
      ? try outer.nestedContainer(keyedBy: CodingKeys.self, forKey: .visionConfig) : outer
    var d = CLIPVisionConfig()
    func get<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
      try c.decodeIfPresent(T.self, forKey: key) ?? fallback
    }
    d.hiddenSize = try get(.hiddenSize, d.hiddenSize)
    d.intermediateSize = try get(.intermediateSize, d.intermediateSize)
    d.projectionDim = try get(.projectionDim, d.projectionDim)
    d.numHiddenLayers = try get(.numHiddenLayers, d.numHiddenLayers)
    d.numAttentionHeads = try get(.numAttentionHeads, d.numAttentionHeads)
    d.numChannels = try get(.numChannels, d.numChannels)
    d.imageSize = try get(.imageSize, d.imageSize)
    d.patchSize = try get(.patchSize, d.patchSize)
    d.hiddenAct = try get(.hiddenAct, d.hiddenAct)
    d.layerNormEps = try get(.layerNormEps, d.layerNormEps)
    self = d
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(hiddenSize, forKey: .hiddenSize)
    try c.encode(intermediateSize, forKey: .intermediateSize)
    try c.encode(projectionDim, forKey: .projectionDim)
    try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
    try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
    try c.encode(numChannels, forKey: .numChannels)
    try c.encode(imageSize, forKey: .imageSize)
    try c.encode(patchSize, forKey: .patchSize)
    try c.encode(hiddenAct, forKey: .hiddenAct)
    try c.encode(layerNormEps, forKey: .layerNormEps)
  }

  public func validate(path: String) throws -> CLIPActivation {
    guard let act = CLIPActivation(rawValue: hiddenAct) else {
      throw ModelConfigError.unsupported(path: path, field: "hidden_act", value: hiddenAct, supported: "quick_gelu, gelu")
    }
    let check = ConfigChecker(path: path)
    try check.checkCLIPEncoder(
      hiddenSize: hiddenSize, intermediateSize: intermediateSize, layers: numHiddenLayers, heads: numAttentionHeads,
      projectionDim: projectionDim, layerNormEps: layerNormEps)
    try check.check("num_channels", numChannels, in: ConfigLimits.imageChannels)
    try check.check("image_size", imageSize, in: 1...4_096)
    try check.check("patch_size", patchSize, in: 1...imageSize)
    guard hiddenSize % numAttentionHeads == 0 else {
      throw ModelConfigError.malformed(
        path: path, field: "num_attention_heads", reason: "\(numAttentionHeads) heads do not divide hidden_size \(hiddenSize)")
    }
    guard imageSize % patchSize == 0 else {
      throw ModelConfigError.malformed(
        path: path, field: "patch_size", reason: "\(patchSize) does not divide image_size \(imageSize)")
    }
    return act
  }

  /// Tokens per image: one per patch plus the class token (257 for ViT-H/14 at 224²).
  public var tokenCount: Int { (imageSize / patchSize) * (imageSize / patchSize) + 1 }
}

/// What to compute from an image.
public enum CLIPVisionOutputKind: Sendable {
  /// `image_embeds`: `visual_projection(post_layernorm(CLS))`, `[B, projection_dim]`.
  case imageEmbeds
  /// `hidden_states[-2]`: the penultimate layer's output for all tokens, **without** the post
  /// layer norm, `[B, tokens, hidden]` (the last layer is not run).
  case penultimateHiddenState
}

/// The CLIP image encoder with projection: keys `vision_model.embeddings.*`,
/// `vision_model.pre_layrnorm`, `vision_model.encoder.layers.N.*`, `vision_model.post_layernorm`,
/// `visual_projection`.
///
/// matches: transformers `CLIPVisionModelWithProjection` (5.23), without position-embedding
/// interpolation (inputs must be `image_size`²). Pixels are NHWC `[B, H, W, 3]`, normalised as
/// `CLIPImageProcessor` outputs them.
/// `@unchecked Sendable`: its layers' only mutable state, the lazily packed kernels, is guarded by `KernelLock`.
public final class CLIPVisionModel: Module, @unchecked Sendable {
  public let config: CLIPVisionConfig
  public let patchEmbedding: Conv2d
  public let classEmbedding: Parameter
  public let positionEmbedding: Embedding
  public let preLayerNorm: LayerNorm
  public let layers: [CLIPEncoderLayer]
  public let postLayerNorm: LayerNorm
  public let visualProjection: Linear
  private var classToken: Tensor?

  public init(config: CLIPVisionConfig, path: String = "image_encoder/config.json") throws {
    let act = try config.validate(path: path)
    self.config = config
    let h = config.hiddenSize
    patchEmbedding = Conv2d(
      config.numChannels, h, kernelSize: config.patchSize, stride: config.patchSize, padding: 0, bias: false)
    classEmbedding = Parameter([h])
    positionEmbedding = Embedding(config.tokenCount, h)
    preLayerNorm = LayerNorm(h, eps: config.layerNormEps)
    layers = (0..<config.numHiddenLayers).map { _ in
      CLIPEncoderLayer(
        hidden: h, intermediate: config.intermediateSize, heads: config.numAttentionHeads,
        eps: config.layerNormEps, activation: act)
    }
    postLayerNorm = LayerNorm(h, eps: config.layerNormEps)
    visualProjection = Linear(h, config.projectionDim, bias: false)
  }

  public var parameters: [(String, Parameter)] { [("vision_model.embeddings.class_embedding", classEmbedding)] }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = [
      ("vision_model.embeddings.patch_embedding", patchEmbedding),
      ("vision_model.embeddings.position_embedding", positionEmbedding),
      ("vision_model.pre_layrnorm", preLayerNorm),
    ]
    for (i, l) in layers.enumerated() { c.append(("vision_model.encoder.layers.\(i)", l)) }
    c += [("vision_model.post_layernorm", postLayerNorm), ("visual_projection", visualProjection)]
    return c
  }

  public func prepare(_ options: PrepareOptions) throws { classToken = classEmbedding.value.toFloat32() }

  /// Loads from a `model.safetensors` archive; the unused `position_ids` buffer of older files is
  /// ignored.
  public func load(from archive: any TensorArchive, source: String, prepare: PrepareOptions = PrepareOptions()) throws {
    try loadWeights(
      from: archive, source: source,
      options: LoadOptions(strict: true, ignore: { $0.hasSuffix("embeddings.position_ids") }, prepare: prepare))
  }

  /// Runs the encoder on NHWC pixels `[B, image_size, image_size, 3]`.
  public func callAsFunction(_ pixels: Tensor, output: CLIPVisionOutputKind) throws -> Tensor {
    let s = config.imageSize
    guard pixels.rank == 4, pixels.shape[1] == s, pixels.shape[2] == s, pixels.shape[3] == config.numChannels else {
      throw ModuleError.invalidInput(
        "image encoder input must be NHWC [B, \(s), \(s), \(config.numChannels)], got \(pixels.shape)")
    }
    guard let classToken else { throw ModuleError.notPrepared("CLIPVisionModel") }
    let b = pixels.shape[0]
    let h = config.hiddenSize
    let tokens = config.tokenCount
    let patches = try patchEmbedding(pixels).reshaped([b, tokens - 1, h])
    let positions = try positionEmbedding(Array(0..<tokens))
    let embeddings = Tensor(uninitializedShape: [b, tokens, h])
    let dst = embeddings.mutableFloatPointer
    let pos = positions.floatPointer
    let cls = classToken.floatPointer
    let patch = patches.asFloat32()
    for i in 0..<b {
      for t in 0..<tokens {
        let out = dst + (i * tokens + t) * h
        let p = pos + t * h
        if t == 0 {
          for c in 0..<h { out[c] = cls[c] + p[c] }
        } else {
          let src = patch.floatPointer + (i * (tokens - 1) + t - 1) * h
          for c in 0..<h { out[c] = src[c] + p[c] }
        }
      }
    }
    var x = try preLayerNorm(embeddings)
    let runLayers = output == .penultimateHiddenState ? layers.count - 1 : layers.count
    for layer in layers.prefix(runLayers) {
      try CancellationToken.checkCurrent()
      x = try layer(x, causal: false)
    }
    if output == .penultimateHiddenState { return x }
    let cls0 = Tensor(uninitializedShape: [b, h])
    for i in 0..<b {
      (cls0.mutableFloatPointer + i * h).update(from: x.floatPointer + i * tokens * h, count: h)
    }
    return try visualProjection(try postLayerNorm(cls0))
  }
}

extension ModelLoader {
  /// An image-encoder folder (`config.json` + `model.safetensors`) → `CLIPVisionModel`.
  public static func imageEncoder(_ folder: URL, prepare: PrepareOptions = PrepareOptions()) throws -> CLIPVisionModel {
    let configURL = folder.appendingPathComponent("config.json")
    let config = try ConfigFile.load(CLIPVisionConfig.self, from: configURL)
    let model = try CLIPVisionModel(config: config, path: configURL.path)
    let archive = try openWeights(in: folder, stem: "model")
    try model.load(from: archive, source: folder.path, prepare: prepare)
    return model
  }
}
