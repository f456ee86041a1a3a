import Imaging
import Models
import TensorCore

/// Projected image-prompt tokens of one adapter: conditional and unconditional, `[1, N·T, C]`.
public struct ImagePromptEmbeds: Sendable {
  public var conditional: Tensor
  public var unconditional: Tensor
  /// Images whose tokens are concatenated (1 after a non-concat combine mode).
  public var imageCount: Int

  public init(conditional: Tensor, unconditional: Tensor, imageCount: Int = 1) {
    self.conditional = conditional
    self.unconditional = unconditional
    self.imageCount = imageCount
  }
}

/// How the reference images of one adapter become CLIP features before projection.
public struct ImageFeatureOptions: Sendable {
  /// ComfyUI's combine mode over the images (concat keeps one token block per image).
  public var combine: IPAdapterCombineMode = .concat
  /// Per-image weights applied to the features before combining (nil = all 1).
  public var weights: [Float]?
  /// The unconditional convention: reference zeros, ComfyUI's black image, or a given image.
  public var negative: IPAdapterNegativeImage = .zeros
  /// Most pixels of the CLIP resize of each image (`ImageLimits.maxPixels`).
  public var maxPixels: Int = ImageLimits.default.maxPixels

  public init(combine: IPAdapterCombineMode = .concat, weights: [Float]? = nil, negative: IPAdapterNegativeImage = .zeros) {
    self.combine = combine
    self.weights = weights
    self.negative = negative
  }
}

/// One adapter's contribution to a generation: its tokens and how strongly, where and when they
/// act.
///
/// matches: diffusers `IPAdapterAttnProcessor2_0` (scale, per-layer scales from
/// `set_ip_adapter_scale`, regional masks with one softmax per image), the official step gating
/// (`StableDiffusionXLCustomPipeline`), and ComfyUI_IPAdapter_plus' weight types and embeds
/// scaling.
public struct ImagePrompt: Sendable {
  public var adapter: IPAdapter
  public var embeds: ImagePromptEmbeds
  /// λ in `out = Attn(Q, K_t, V_t) + λ·Attn(Q, K_ip, V_ip)` when `layerScales` is uniform;
  /// 0 switches the adapter off exactly.
  public var scale: Float
  /// Per-layer scales (diffusers dictionary, InstantStyle preset, ComfyUI weight type); nil =
  /// `scale` everywhere.
  public var layerScales: IPAdapterLayerScales?
  /// The steps where the adapter acts; outside it the adapter adds nothing and costs nothing.
  public var window: IPAdapterStepWindow = .full
  /// One mask `[H, W]` of 0/1 per image at the output size (`IPAdapterMasks.preprocess`); each
  /// masked image attends with its own softmax, weighted per query.
  public var masks: Tensor?
  /// A region `[H, W]` at the output size (1 inside): the adapter's attention output is multiplied
  /// by it, sampled nearest at each layer's resolution (InstantID's `enhance_face_region`:
  /// `region_control` in its attention processor). Exclusive with `masks` (both: an error).
  public var regionMask: Tensor?
  /// How the adapter's keys/values carry its weight (ComfyUI's embeds scaling).
  public var embedsScaling: IPAdapterEmbedsScaling = .vOnly
  /// The weight of the adapter's FaceID LoRA (`adapter.faceIDLoRA`), fused into the UNet while
  /// this prompt is used (the reference's `lora_scale`, default 1; 0 leaves the UNet as is).
  public var faceIDLoRAScale: Float = 1

  public init(adapter: IPAdapter, embeds: ImagePromptEmbeds, scale: Float) {
    self.adapter = adapter
    self.embeds = embeds
    self.scale = scale
  }

  /// Encodes and projects `images` (tokens of all images concatenated in order, unless a combine
  /// mode merges them first).
  public static func embeds(
    adapter: IPAdapter, encoder: ImagePromptEncoder, images: [Image], options: ImageFeatureOptions = ImageFeatureOptions()
  ) throws -> ImagePromptEmbeds {
    try adapter.checkEncoder(encoder.model.config, encoderPath: encoder.path)
    let kind = adapter.projection.inputKind
    let features = try options.combine.combine(try encoder.features(images, kind: kind, maxPixels: options.maxPixels), weights: options.weights)
    let count = features.shape[0]
    let uncond: Tensor
    switch options.negative.encoderInput(kind: kind, imageSize: encoder.model.config.imageSize) {
    case .zeroEmbedding, .zeroPixels:
      uncond = try encoder.unconditionalFeatures(count: count, kind: kind)
    case .image(let negative):
      let one = try encoder.features([negative], kind: kind, maxPixels: options.maxPixels)
      uncond = try Ops.concatRows(Array(repeating: one, count: count))
    }
    return ImagePromptEmbeds(
      conditional: try adapter.tokens(features), unconditional: try adapter.tokens(uncond), imageCount: count)
  }

  /// Projects face embeddings (FaceID family): `faces` `[N, idDim]`, one row per face; each face
  /// gives its own block of tokens, concatenated (Portrait: 16 tokens per face).
  ///
  /// matches: tencent-ailab/IP-Adapter `IPAdapterFaceID.get_image_embeds` (conditional: the
  /// projection of the embedding; unconditional: of a zero embedding), `IPAdapterFaceIDPlus`
  /// (plus the CLIP penultimate hidden states of the face crop, unconditional: of zero pixels;
  /// `shortcut`/`s_scale`), `ip_adapter_faceid_separate` (Portrait: several faces concatenated),
  /// and for a Resampler whose input width is the embedding's (ip-adapter-faceid-portrait_sdxl_unnorm,
  /// which takes raw, unnormalised embeddings) ComfyUI_IPAdapter_plus' reading: each face a
  /// one-token sequence, unconditional from zero embeddings.
  /// - Parameters:
  ///   - encoder, faceImages: FaceID-Plus only — the CLIP encoder and one aligned face crop per face.
  ///   - shortcutScale: FaceID-Plus only — nil: Plus v1 (no shortcut); s: Plus v2, `x + s·out`.
  public static func faceEmbeds(
    adapter: IPAdapter, faces: Tensor, encoder: ImagePromptEncoder? = nil, faceImages: [Image] = [],
    shortcutScale: Float? = nil, maxPixels: Int = ImageLimits.default.maxPixels
  ) throws -> ImagePromptEmbeds {
    var resamplerOverFaces: Resampler.Shape?
    if case .plus(let s) = adapter.variant { resamplerOverFaces = s }
    guard let dim = adapter.variant.faceEmbeddingDim ?? resamplerOverFaces?.embeddingDim else {
      throw IPAdapterError.badInput("\(adapter.path) is not a FaceID adapter (\(adapter.variant)); it takes images, not face embeddings")
    }
    guard faces.rank == 2, faces.shape[1] == dim, faces.shape[0] >= 1 else {
      throw IPAdapterError.badEmbeds(
        path: adapter.path, reason: "face embeddings must be [faces, \(dim)] (one \(dim)-d embedding per face), got \(faces.shape)")
    }
    if let i = NonFinite.firstIndex(faces) {
      throw IPAdapterError.badEmbeds(path: adapter.path, reason: "face embedding element \(i) is NaN or infinite")
    }
    let n = faces.shape[0]
    if case .faceID(let f) = adapter.variant, f.tokens >= 16, n < 2 {
      // The Portrait adapters (16 tokens per face) were trained on several photos of one person.
      throw IPAdapterError.badInput(
        "\(adapter.path) is a FaceID Portrait adapter (\(f.tokens) tokens per face): it takes several face embeddings of one person (the reference uses 5), got 1")
    }
    let zeros = Tensor.zeros(faces.shape)
    func joined(_ t: Tensor) -> Tensor { t.reshaped([1, t.shape[0] * t.shape[1], t.shape[2]]) }
    switch adapter.variant {
    case .faceIDPlus:
      guard let plus = adapter.projection as? FaceIDPlusProjModel else {
        throw IPAdapterError.badInput("\(adapter.path): FaceID-Plus adapter without its projection")
      }
      guard let encoder else {
        throw IPAdapterError.missingImageEncoder(path: adapter.path, tried: "none given (FaceID-Plus reads the face crop with the ViT-H image encoder)")
      }
      guard faceImages.count == n else {
        throw IPAdapterError.badInput(
          "\(adapter.path) is a FaceID-Plus adapter: it needs one aligned face crop per face embedding (\(n) embedding(s), \(faceImages.count) face image(s))")
      }
      try adapter.checkEncoder(encoder.model.config, encoderPath: encoder.path)
      let clip = try encoder.features(faceImages, kind: .penultimateHiddenState, maxPixels: maxPixels)
      let zeroClip = try encoder.unconditionalFeatures(count: n, kind: .penultimateHiddenState)
      return ImagePromptEmbeds(
        conditional: joined(try plus(faces: faces, clip: clip, shortcutScale: shortcutScale)),
        unconditional: joined(try plus(faces: zeros, clip: zeroClip, shortcutScale: shortcutScale)), imageCount: n)
    case .plus:
      // A Resampler over face embeddings (ip-adapter-faceid-portrait_sdxl_unnorm, raw ArcFace
      // embeddings): each face is a one-token sequence giving the Resampler's queries' tokens.
      guard faceImages.isEmpty else {
        throw IPAdapterError.badInput("\(adapter.path): a Resampler over face embeddings takes no face images")
      }
      return ImagePromptEmbeds(
        conditional: joined(try adapter.projection(faces.reshaped([n, 1, dim]))),
        unconditional: joined(try adapter.projection(zeros.reshaped([n, 1, dim]))), imageCount: n)
    default:
      guard faceImages.isEmpty else {
        throw IPAdapterError.badInput("\(adapter.path) is a plain FaceID adapter: it takes face embeddings only, not face images")
      }
      return ImagePromptEmbeds(
        conditional: joined(try adapter.projection(faces)), unconditional: joined(try adapter.projection(zeros)), imageCount: n)
    }
  }

  /// The attention sources of every patched layer, computed once per generation: keys/values of
  /// the tokens (batch `[unconditional, conditional]` with guidance), layer scales, branch swaps,
  /// embeds scaling and masks applied. Layers whose scale is 0 get nothing.
  /// - Parameter latentSize: latent height and width (needed to downsample masks per layer).
  public func sources(batch: Int, latentSize: (height: Int, width: Int), blockCount: Int) throws -> [Int: [AttentionSource]] {
    guard let attention = adapter.attention else {
      throw IPAdapterError.badInput("\(adapter.path) was loaded without a UNet and cannot patch attention")
    }
    let c = adapter.variant.crossDim
    guard embeds.conditional.rank == 3, embeds.conditional.shape[0] == 1, embeds.conditional.shape[2] == c,
      embeds.unconditional.shape == embeds.conditional.shape
    else {
      throw IPAdapterError.badEmbeds(
        path: adapter.path,
        reason: "image prompt embeds must be [1, tokens, \(c)] for both halves, got \(embeds.conditional.shape) / \(embeds.unconditional.shape)")
    }
    if regionMask != nil, masks != nil {
      throw IPAdapterError.badInput("\(adapter.path): give regional masks (one per image) or a region mask, not both")
    }
    let controls = try (layerScales ?? .uniform(scale)).layers(for: attention.slots)
    guard controls.contains(where: { $0.scale != 0 }) else { return [:] }
    let tokens = batch == 2 ? try Ops.concatRows([embeds.unconditional, embeds.conditional]) : embeds.conditional

    // Masked: one token block per image, each with its own softmax and per-query mask.
    var blocks = [tokens]
    if let masks {
      let n = embeds.imageCount
      guard masks.rank == 3, masks.shape[0] == n else {
        throw IPAdapterError.badInput("\(n) image(s) for \(adapter.path) but \(masks.rank == 3 ? masks.shape[0] : -1) mask(s)")
      }
      let total = tokens.shape[1]
      guard total % n == 0 else { throw IPAdapterError.badInput("\(total) tokens do not split into \(n) images") }
      blocks = try (0..<n).map { i in try Self.tokenSlice(tokens, from: i * total / n, count: total / n) }
    }
    let kvs = try blocks.map { try attention.keyValues($0) }
    var out: [Int: [AttentionSource]] = [:]
    for (i, slot) in attention.slots.enumerated() where controls[i].scale != 0 {
      var layerSources: [AttentionSource] = []
      for (b, kv) in kvs.enumerated() {
        var key = kv[i].key
        var value = kv[i].value
        if controls[i].swapBranches {
          key = try IPAdapterLayerControl.swappedBranches(key)
          value = try IPAdapterLayerControl.swappedBranches(value)
        }
        var weights: Tensor?
        if let region = regionMask {
          let q = try slot.position().queryCount(latentHeight: latentSize.height, latentWidth: latentSize.width, blockCount: blockCount)
          weights = try IPAdapterMasks.nearestRegion(region, queryCount: q)
        }
        if let masks {
          let q = try slot.position().queryCount(latentHeight: latentSize.height, latentWidth: latentSize.width, blockCount: blockCount)
          let mask = masks.slice(rows: b..<(b + 1)).reshaped([masks.shape[1], masks.shape[2]])
          weights = try IPAdapterMasks.downsample(mask, queryCount: q).weights
        }
        layerSources.append(try embedsScaling.source(key: key, value: value, weight: controls[i].scale, queryWeights: weights))
      }
      out[slot.layer] = layerSources
    }
    return out
  }

  /// Appends this adapter's sources to every layer it patches (the whole generation, no window).
  public func apply(to conditioning: inout CrossAttentionConditioning, latentSize: (height: Int, width: Int) = (64, 64), blockCount: Int = 4) throws {
    for (layer, list) in try sources(batch: conditioning.batch, latentSize: latentSize, blockCount: blockCount) {
      for s in list { conditioning.append(s, toLayer: layer) }
    }
  }

  /// Tokens `[B, L, C]` → `[B, count, C]` starting at `start`.
  static func tokenSlice(_ t: Tensor, from start: Int, count: Int) throws -> Tensor {
    let (b, l, c) = (t.shape[0], t.shape[1], t.shape[2])
    let out = Tensor(uninitializedShape: [b, count, c])
    let src = t.asFloat32()
    for i in 0..<b {
      (out.mutableFloatPointer + i * count * c).update(from: src.floatPointer + (i * l + start) * c, count: count * c)
    }
    return out
  }
}
