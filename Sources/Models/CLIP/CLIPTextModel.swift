import Foundation
import NN
import TensorCore
import Weights

/// The `text_encoder/config.json` of a pipeline (a transformers `CLIPTextConfig`).
///
/// matches: transformers `CLIPTextConfig` defaults (5.23), notably `hidden_act = "quick_gelu"`
/// when the file does not name one — real configs always do, and SD 2.x uses `gelu`.
public struct CLIPTextConfig: Codable, Sendable, Equatable {
  public var vocabSize: Int = 49408
  public var hiddenSize: Int = 512
  public var intermediateSize: Int = 2048
  public var numHiddenLayers: Int = 12
  public var numAttentionHeads: Int = 8
  public var maxPositionEmbeddings: Int = 77
  public var hiddenAct: String = "quick_gelu"
  public var layerNormEps: Float = 1e-5
  public var eosTokenId: Int = 49407
  public var projectionDim: Int = 512

  enum CodingKeys: String, CodingKey {
    case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
    case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
    case maxPositionEmbeddings = "max_position_embeddings", hiddenAct = "hidden_act"
    case layerNormEps = "layer_norm_eps", eosTokenId = "eos_token_id", projectionDim = "projection_dim"
  }

  public init() {}

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    var d = CLIPTextConfig()
    func get<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
      try c.decodeIfPresent(T.self, forKey: key) ?? fallback
    }
    d.vocabSize = try get(.vocabSize, d.vocabSize)
    d.hiddenSize = try get(.hiddenSize, d.hiddenSize)
    d.intermediateSize = try get(.intermediateSize, d.intermediateSize)
    d.numHiddenLayers = try get(.numHiddenLayers, d.numHiddenLayers)
    d.numAttentionHeads = try get(.numAttentionHeads, d.numAttentionHeads)
    d.maxPositionEmbeddings = try get(.maxPositionEmbeddings, d.maxPositionEmbeddings)
    d.hiddenAct = try get(.hiddenAct, d.hiddenAct)
    d.layerNormEps = try get(.layerNormEps, d.layerNormEps)
    d.eosTokenId = try get(.eosTokenId, d.eosTokenId)
    d.projectionDim = try get(.projectionDim, d.projectionDim)
    self = d
  }

  public func validate(path: String) throws -> CLIPActivation {
    guard let act = CLIPActivation(rawValue: hiddenAct) else {
      throw ModelConfigError.unsupported(path: path, field: "hidden_act", value: hiddenAct, supported: "quick_gelu, gelu")
    }
    let check = ConfigChecker(path: path)
    try check.checkCLIPEncoder(
      hiddenSize: hiddenSize, intermediateSize: intermediateSize, layers: numHiddenLayers, heads: numAttentionHeads,
      projectionDim: projectionDim, layerNormEps: layerNormEps)
    try check.check("vocab_size", vocabSize, in: ConfigLimits.vocabulary)
    try check.check("max_position_embeddings", maxPositionEmbeddings, in: ConfigLimits.positions)
    try check.check("eos_token_id", eosTokenId, in: 0...(vocabSize - 1))
    guard hiddenSize % numAttentionHeads == 0 else {
      throw ModelConfigError.malformed(
        path: path, field: "num_attention_heads",
        reason: "\(numAttentionHeads) heads do not divide hidden_size \(hiddenSize)")
    }
    return act
  }
}

/// The output of the CLIP text encoder.
public struct CLIPTextOutput: Sendable {
  /// `final_layer_norm(hidden_states[-1])`, `[B, L, hidden]` — what Stable Diffusion conditions on.
  public var lastHiddenState: Tensor
  /// `hidden_states[0]` (embeddings) … `hidden_states[layers]` (last layer, before the final norm).
  public var hiddenStates: [Tensor]
}

/// The CLIP text transformer with keys `embeddings.*`, `encoder.layers.N.*`, `final_layer_norm`
/// (checkpoints name them with a `text_model.` prefix — hub folders — or without it —
/// transformers 5; both load).
///
/// matches: transformers `CLIPTextModel` (5.23) with a causal mask and no padding mask (as
/// diffusers calls it for Stable Diffusion), and with `withProjection`
/// `CLIPTextModelWithProjection` (SDXL's `text_encoder_2`: keys `text_model.*` and
/// `text_projection.weight`; `textEmbeds` gives its pooled, projected `text_embeds`).
/// `@unchecked Sendable`: its layers' only mutable state, the lazily packed kernels, is guarded by `KernelLock`; a pipeline's queue runs one generation at a time.
public final class CLIPTextModel: Module, @unchecked Sendable {
  public let config: CLIPTextConfig
  public let tokenEmbedding: Embedding
  public let positionEmbedding: Embedding
  public let layers: [CLIPEncoderLayer]
  public let finalLayerNorm: LayerNorm
  /// `text_projection` (bias-free) of a `CLIPTextModelWithProjection`, else nil.
  public let textProjection: Linear?

  public init(config: CLIPTextConfig, path: String = "text_encoder/config.json", withProjection: Bool = false) throws {
    let act = try config.validate(path: path)
    self.config = config
    tokenEmbedding = Embedding(config.vocabSize, config.hiddenSize)
    positionEmbedding = Embedding(config.maxPositionEmbeddings, config.hiddenSize)
    layers = (0..<config.numHiddenLayers).map { _ in
      CLIPEncoderLayer(
        hidden: config.hiddenSize, intermediate: config.intermediateSize, heads: config.numAttentionHeads,
        eps: config.layerNormEps, activation: act)
    }
    finalLayerNorm = LayerNorm(config.hiddenSize, eps: config.layerNormEps)
    textProjection = withProjection ? Linear(config.hiddenSize, config.projectionDim, bias: false) : nil
  }

  /// Without a projection the transformer's keys (the `text_model.` prefix is handled by `load`);
  /// with one, `text_model.*` and `text_projection`, as transformers names them.
  public var children: [(String, any Module)] {
    let p = textProjection == nil ? "" : "text_model."
    var c: [(String, any Module)] = [
      (p + "embeddings.token_embedding", tokenEmbedding), (p + "embeddings.position_embedding", positionEmbedding),
    ]
    for (i, l) in layers.enumerated() { c.append((p + "encoder.layers.\(i)", l)) }
    c.append((p + "final_layer_norm", finalLayerNorm))
    if let textProjection { c.append(("text_projection", textProjection)) }
    return c
  }

  /// Loads from an archive whose keys may or may not carry the `text_model.` prefix (a model with
  /// a projection needs it); the unused `position_ids` buffer of older checkpoints is ignored.
  public func load(from archive: any TensorArchive, source: String, prepare: PrepareOptions = PrepareOptions()) throws {
    let prefixed = textProjection == nil && archive.keys.contains { $0.hasPrefix("text_model.") }
    try loadWeights(
      from: archive, source: source,
      options: LoadOptions(
        strict: true, prefix: prefixed ? "text_model." : "",
        ignore: { $0.hasSuffix("embeddings.position_ids") }, prepare: prepare))
  }

  /// Index of the pooled token of each row: transformers' rule — the first highest id when the
  /// config's `eos_token_id` is the legacy 2, else the first `eos_token_id` (0 if absent).
  public func pooledPositions(_ ids: [[Int]]) -> [Int] {
    ids.map { row in
      if config.eosTokenId == 2 {
        var best = 0
        for (i, id) in row.enumerated() where id > row[best] { best = i }
        return best
      }
      return row.firstIndex(of: config.eosTokenId) ?? 0
    }
  }

  /// `text_projection(last_hidden_state[pooled position])` of each row: transformers
  /// `CLIPTextModelWithProjection(...).text_embeds`, `[B, projection_dim]`.
  /// - Parameter lastHiddenState: `output.lastHiddenState` of the same `ids`.
  public func textEmbeds(lastHiddenState: Tensor, ids: [[Int]]) throws -> Tensor {
    guard let textProjection else {
      throw ModuleError.invalidInput("this text encoder has no text_projection (not a CLIPTextModelWithProjection)")
    }
    let (b, l, h) = (lastHiddenState.shape[0], lastHiddenState.shape[1], lastHiddenState.shape[2])
    guard b == ids.count else { throw ModuleError.invalidInput("\(ids.count) token rows for a batch of \(b)") }
    let flat = lastHiddenState.reshaped([b * l, h])
    let rows = pooledPositions(ids).enumerated().map { flat.slice(rows: ($0 * l + $1)..<($0 * l + $1 + 1)) }
    return try textProjection(try Ops.concatRows(rows))
  }

  /// Encodes a batch of token-id rows (all the same length ≤ `max_position_embeddings`).
  /// - Parameter keepHiddenStates: also return every layer's output (for clip-skip).
  public func callAsFunction(_ ids: [[Int]], keepHiddenStates: Bool = false) throws -> CLIPTextOutput {
    guard let length = ids.first?.count, ids.allSatisfy({ $0.count == length }), length > 0 else {
      throw ModuleError.invalidInput("text encoder input rows must be non-empty and of equal length")
    }
    guard length <= config.maxPositionEmbeddings else {
      throw ModuleError.invalidInput(
        "\(length) tokens exceed the text encoder's \(config.maxPositionEmbeddings) positions")
    }
    let positions = try positionEmbedding(Array(0..<length))
    var rows: [Tensor] = []
    for row in ids {
      rows.append(try Ops.add(try tokenEmbedding(row), positions))
    }
    var h = try Ops.concatRows(rows).reshaped([ids.count, length, config.hiddenSize])
    var states = keepHiddenStates ? [h] : []
    for layer in layers {
      try CancellationToken.checkCurrent()
      h = try layer(h, causal: true)
      if keepHiddenStates { states.append(h) }
    }
    return CLIPTextOutput(lastHiddenState: try finalLayerNorm(h), hiddenStates: states)
  }

  /// diffusers' clip-skip: `final_layer_norm(hidden_states[-(skip + 1)])`; `skip == 0` is the
  /// normal last hidden state.
  public func encode(_ ids: [[Int]], clipSkip: Int = 0) throws -> Tensor {
    guard clipSkip >= 0, clipSkip < layers.count else {
      throw ModuleError.invalidInput("clip skip \(clipSkip) must be in 0..<\(layers.count)")
    }
    if clipSkip == 0 { return try self(ids).lastHiddenState }
    let out = try self(ids, keepHiddenStates: true)
    return try finalLayerNorm(out.hiddenStates[out.hiddenStates.count - 1 - clipSkip])
  }
}
