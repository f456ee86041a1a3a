import FaceAnalysis
import Foundation
import Hub
import IPAdapter
import Imaging
import Models
import NN
import TensorCore

/// Image prompts ready for a pipeline, and what the user should know about how they were built.
public struct BuiltImagePrompts: Sendable {
  public var prompts: [ImagePrompt]
  /// E.g. a mask whose aspect ratio differs from the output's.
  public var warnings: [String]
}

/// Turns `ImagePromptSpec`s into `ImagePrompt`s for one pipeline: loads each adapter against the
/// pipeline's UNet, loads each image encoder once (adapters naming the same folder share it),
/// encodes and projects the images (or reads an embeddings file), and prepares masks for the
/// output size. Build once and pass the prompts to many generations: the image encoding is then
/// paid once.
///
/// matches: diffusers `load_ip_adapter` + `prepare_ip_adapter_image_embeds` (0.42.1) with the
/// controls of `ImagePromptSpec`. Errors name the spec as `imagePrompts[i]`.
public struct ImagePromptBuilder: Sendable {
  /// Most pixels of every resized copy of an input image (CLIP preprocessing, masks).
  public var maxPixels: Int = ImageLimits.default.maxPixels
  /// Accept adapter or encoder weights holding NaN or infinity.
  public var allowNonFiniteWeights = false
  /// Arithmetic the adapters' projections and the image encoders are prepared for. `build(_:for:)`
  /// uses the pipeline's precision instead (so `--precision bf16` covers them too); `encode(_:)`,
  /// which has no pipeline, uses this one.
  public var precision: ComputePrecision = .float32
  /// For hub references (default: a client configured from the environment).
  public var hub: HubClient?
  public var downloadProgress: HubProgressHandler?

  public init() {}

  /// Builds the prompts on the calling thread; every reference must be local (hub references
  /// need the async `build`).
  public func build(
    _ specs: [ImagePromptSpec], for pipeline: StableDiffusionPipeline, parameters: GenerationParameters
  ) throws -> BuiltImagePrompts {
    for (i, spec) in specs.enumerated() {
      for reference in [spec.adapter] + (spec.imageEncoder.map { [$0] } ?? []) where reference.isRemote {
        throw PipelineError.invalidArgument(
          name: "imagePrompts[\(i)]", reason: "\(reference) is a hub reference: use the async build, which downloads it")
      }
    }
    let located = specs.map { spec in
      Located(spec: spec, adapter: localURL(spec.adapter), encoder: spec.imageEncoder.map(localURL))
    }
    return try forPipeline(pipeline).make(located, pipeline: pipeline, parameters: parameters)
  }

  /// Fetches hub references (adapters and, for hub adapters without an explicit encoder, the
  /// `image_encoder/` beside them), then builds on the pipeline's queue (cancellable).
  public func build(
    _ specs: [ImagePromptSpec], for pipeline: StableDiffusionPipeline, parameters: GenerationParameters
  ) async throws -> BuiltImagePrompts {
    let located = try await locate(specs)
    let builder = forPipeline(pipeline)
    return try await pipeline.compute.run { try builder.make(located, pipeline: pipeline, parameters: parameters) }
  }

  /// Encodes and projects one spec's images without a pipeline (to save them with
  /// `ImagePromptEmbedsFile` and generate later without the image encoder). The adapter is loaded
  /// for its projection only.
  /// - Parameters:
  ///   - spec: the adapter, encoder and images (masks and step window are not used here).
  ///   - processorConfig: a `preprocessor_config.json` (default: the encoder folder's, else CLIP's).
  public func encode(_ spec: ImagePromptSpec, processorConfig: URL? = nil) async throws
    -> (adapter: IPAdapter, embeds: ImagePromptEmbeds)
  {
    let located = try await locate([spec])[0]
    return try await ComputeQueue.detached {
      let adapter = try IPAdapter(path: located.adapter.path, unet: nil, prepare: self.prepare)
      var encoders: [String: ImagePromptEncoder] = [:]
      let embeds = try self.embeds(located, name: "imagePrompts[0]", adapter: adapter, processorConfig: processorConfig, encoders: &encoders)
      return (adapter, embeds)
    }
  }

  /// Hub references fetched into the cache.
  func locate(_ specs: [ImagePromptSpec]) async throws -> [Located] {
    let client = hub ?? (specs.contains { $0.adapter.isRemote || $0.imageEncoder?.isRemote == true } ? HubClient() : nil)
    var located: [Located] = []
    for spec in specs {
      var adapter = localURL(spec.adapter)
      var encoder = spec.imageEncoder.map(localURL)
      if let client {
        if spec.adapter.isRemote {
          adapter = try await client.resolveFile(spec.adapter, progress: downloadProgress)
          // A plain FaceID adapter (face embeddings without crops) reads no image encoder.
          let faceIDOnly = spec.faceEmbeddings != nil && spec.faceImages.isEmpty
          if spec.imageEncoder == nil, spec.embedsFile == nil, !faceIDOnly {
            encoder = try await client.resolveSiblingImageEncoder(ofAdapter: spec.adapter, progress: downloadProgress)
          }
        }
        if let e = spec.imageEncoder, e.isRemote {
          encoder = try await client.resolveFolder(e, files: .imageEncoder, progress: downloadProgress)
        }
      }
      located.append(Located(spec: spec, adapter: adapter, encoder: encoder))
    }
    return located
  }

  var prepare: PrepareOptions { PrepareOptions(precision: precision, allowNonFiniteWeights: allowNonFiniteWeights) }

  /// This builder with the pipeline's compute precision.
  func forPipeline(_ pipeline: StableDiffusionPipeline) -> ImagePromptBuilder {
    var builder = self
    builder.precision = pipeline.precision
    return builder
  }

  struct Located: Sendable {
    var spec: ImagePromptSpec
    var adapter: URL
    var encoder: URL?
  }

  /// A local reference's URL; a hub reference's text as a path, which `locate` replaces by the
  /// fetched file (the synchronous `build` refuses hub references first).
  func localURL(_ reference: HubReference) -> URL {
    reference.localURL ?? URL(fileURLWithPath: reference.description)
  }

  func make(_ specs: [Located], pipeline: StableDiffusionPipeline, parameters: GenerationParameters) throws
    -> BuiltImagePrompts
  {
    var encoders: [String: ImagePromptEncoder] = [:]
    var prompts: [ImagePrompt] = []
    var warnings: [String] = []
    for (i, located) in specs.enumerated() {
      let spec = located.spec
      let name = "imagePrompts[\(i)]"
      let adapter = try IPAdapter(path: located.adapter.path, unet: pipeline.unet, prepare: prepare)
      let embeds = try self.embeds(
        located, name: name, adapter: adapter, processorConfig: pipeline.featureExtractorConfig, encoders: &encoders)
      var prompt = ImagePrompt(adapter: adapter, embeds: embeds, scale: spec.scale)
      prompt.faceIDLoRAScale = spec.faceIDLoRAScale
      prompt.layerScales = spec.resolvedLayerScales
      prompt.window = spec.window
      prompt.embedsScaling = spec.embedsScaling
      prompt.regionMask = spec.regionMask
      if !spec.masks.isEmpty {
        guard spec.masks.count == embeds.imageCount else {
          throw PipelineError.invalidArgument(
            name: "\(name).masks", reason: "\(embeds.imageCount) image(s) after combining but \(spec.masks.count) mask(s)")
        }
        let (w, h) = try pipeline.outputSize(for: parameters)
        let masks = try IPAdapterMasks.preprocess(spec.masks, height: h, width: w, maxPixels: maxPixels)
        warnings += masks.warnings
        prompt.masks = masks.masks
      }
      prompts.append(prompt)
    }
    if !encoders.isEmpty {
      encoders = [:]  // the image encoders are done: give their memory back before the UNet runs
      Runtime.returnFreedMemory()
    }
    return BuiltImagePrompts(prompts: prompts, warnings: warnings)
  }

  /// One spec's projected tokens: read from its embeddings file, or its images encoded (the
  /// encoder loaded once per folder into `encoders`) and projected.
  func embeds(
    _ located: Located, name: String, adapter: IPAdapter, processorConfig: URL?,
    encoders: inout [String: ImagePromptEncoder]
  ) throws -> ImagePromptEmbeds {
    let spec = located.spec
    if let file = spec.embedsFile {
      guard spec.images.isEmpty else {
        throw PipelineError.invalidArgument(name: "\(name).embedsFile", reason: "give images or an embeddings file, not both")
      }
      return try ImagePromptEmbedsFile.read(file.path, adapter: adapter)
    }
    if !spec.facePhotos.isEmpty {
      var analysed = located
      analysed.spec = try Self.analyseFacePhotos(spec, name: name, adapter: adapter, file: located.adapter.lastPathComponent)
      return try embeds(analysed, name: name, adapter: adapter, processorConfig: processorConfig, encoders: &encoders)
    }
    if adapter.variant.usesFaceEmbedding {
      return try faceEmbeds(located, name: name, adapter: adapter, processorConfig: processorConfig, encoders: &encoders)
    }
    if case .plus = adapter.variant, let faces = spec.faceEmbeddings, spec.images.isEmpty {
      // A Resampler fed face embeddings (FaceID Portrait SDXL unnorm).
      return try ImagePrompt.faceEmbeds(adapter: adapter, faces: faces, faceImages: spec.faceImages, maxPixels: maxPixels)
    }
    if spec.faceEmbeddings != nil || !spec.faceImages.isEmpty {
      throw PipelineError.invalidArgument(
        name: "\(name).faceEmbeddings",
        reason: "\(located.adapter.lastPathComponent) is not a FaceID adapter (\(adapter.variant)): give images, not face embeddings")
    }
    guard !spec.images.isEmpty else {
      throw PipelineError.invalidArgument(
        name: "\(name).images", reason: "no image (and no embeddings file) for \(located.adapter.lastPathComponent)")
    }
    var features = ImageFeatureOptions(combine: spec.combine, weights: nil, negative: spec.negative)
    features.maxPixels = maxPixels
    if let w = spec.imageWeights {
      guard w.count == spec.images.count else {
        throw PipelineError.invalidArgument(
          name: "\(name).imageWeights", reason: "\(spec.images.count) image(s) but \(w.count) weight(s)")
      }
      features.weights = w
    }
    let folder = try located.encoder ?? Self.encoderBeside(located.adapter)
    let encoder = try encoders[folder.path]
      ?? ImagePromptEncoder(folder: folder, processorConfig: processorConfig, prepare: prepare)
    encoders[folder.path] = encoder
    return try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: spec.images, options: features)
  }

  /// The spec with `facePhotos` replaced by face embeddings (and FaceID-Plus crops) from its
  /// face analyzer: the first face of each photo (insightface order, highest score first).
  static func analyseFacePhotos(_ spec: ImagePromptSpec, name: String, adapter: IPAdapter, file: String) throws -> ImagePromptSpec {
    guard spec.faceEmbeddings == nil, spec.faceImages.isEmpty, spec.images.isEmpty else {
      throw PipelineError.invalidArgument(
        name: "\(name).facePhotos", reason: "give face photos, or face embeddings (and crops), or images — not several of them")
    }
    let rawEmbedding: Bool
    let needsCrop: Bool
    switch adapter.variant {
    case .faceID: (rawEmbedding, needsCrop) = (false, false)
    case .faceIDPlus: (rawEmbedding, needsCrop) = (false, true)
    case .plus: (rawEmbedding, needsCrop) = (true, false)  // Portrait SDXL "unnorm": a Resampler over raw embeddings
    default:
      throw PipelineError.invalidArgument(
        name: "\(name).facePhotos", reason: "\(file) is not a FaceID adapter (\(adapter.variant)): give images, not face photos")
    }
    guard let analyzer = spec.faceAnalyzer else {
      throw PipelineError.invalidArgument(
        name: "\(name).faceAnalyzer", reason: "face photos need a face analyzer (FaceAnalyzer(models:) on an insightface pack such as buffalo_l)")
    }
    var rows: [Float] = []
    var width = 0
    var crops: [Image] = []
    for (i, photo) in spec.facePhotos.enumerated() {
      let faces = try analyzer.analyze(photo, options: FaceAnalysisOptions(detectionSize: spec.faceDetectionSize, selection: .first))
      guard let face = faces.first else {
        throw PipelineError.invalidArgument(
          name: "\(name).facePhotos[\(i)]", reason: "no face found in face photo \(i + 1) (\(photo.width)×\(photo.height)); try a smaller detection size or a larger, frontal face")
      }
      let e = rawEmbedding ? face.embedding : face.normedEmbedding
      width = e.count
      rows += e
      if needsCrop { crops.append(try FaceAnalyzer.alignedCrop(of: face, in: photo, size: 224)) }
    }
    var out = spec
    out.facePhotos = []
    out.faceEmbeddings = try Tensor(shape: [spec.facePhotos.count, width], floats: rows)
    out.faceImages = crops
    return out
  }

  /// A FaceID adapter's tokens from the spec's face embeddings (and, for FaceID-Plus, face crops
  /// through the image encoder).
  func faceEmbeds(
    _ located: Located, name: String, adapter: IPAdapter, processorConfig: URL?,
    encoders: inout [String: ImagePromptEncoder]
  ) throws -> ImagePromptEmbeds {
    let spec = located.spec
    let file = located.adapter.lastPathComponent
    guard let faces = spec.faceEmbeddings else {
      throw PipelineError.invalidArgument(
        name: "\(name).faceEmbeddings", reason: "\(file) is a \(adapter.variant): it needs face embeddings (insightface normed_embedding, \(adapter.variant.faceEmbeddingDim ?? 512)-d)")
    }
    guard spec.images.isEmpty else {
      throw PipelineError.invalidArgument(
        name: "\(name).images", reason: "\(file) is a FaceID adapter: it takes face embeddings\(adapter.variant.needsImageEncoder ? " and face crops (faceImages)" : ""), not image prompts")
    }
    guard spec.faceIDLoRAScale.isFinite, spec.faceIDShortcutScale?.isFinite ?? true else {
      throw PipelineError.invalidArgument(name: "\(name).faceIDLoRAScale", reason: "the FaceID LoRA and shortcut scales must be finite")
    }
    var encoder: ImagePromptEncoder?
    var shortcut: Float?
    if case .faceIDPlus(let f, _) = adapter.variant {
      guard !spec.faceImages.isEmpty else {
        throw PipelineError.invalidArgument(
          name: "\(name).faceImages", reason: "\(file) is FaceID-Plus: it needs an aligned face crop per face embedding (224×224, insightface norm_crop)")
      }
      let folder = try located.encoder ?? Self.encoderBeside(located.adapter)
      let e = try encoders[folder.path] ?? ImagePromptEncoder(folder: folder, processorConfig: processorConfig, prepare: prepare)
      encoders[folder.path] = e
      encoder = e
      if spec.faceIDShortcut ?? (spec.faceIDShortcutScale != nil || f.crossDim == 2048) {
        shortcut = spec.faceIDShortcutScale ?? 1
      }
    } else if !spec.faceImages.isEmpty {
      throw PipelineError.invalidArgument(
        name: "\(name).faceImages", reason: "\(file) is a plain FaceID adapter: it reads face embeddings only (face crops are for FaceID-Plus)")
    }
    return try ImagePrompt.faceEmbeds(
      adapter: adapter, faces: faces, encoder: encoder, faceImages: spec.faceImages, shortcutScale: shortcut, maxPixels: maxPixels)
  }

  /// The adapter's encoder by the h94 layout (`AdapterEncoderLayout`): `image_encoder/` next to
  /// the file, or the sibling folder's for the `sdxl_models/*_vit-h` and `models/*_vit-G` files.
  static func encoderBeside(_ adapter: URL) throws -> URL {
    let beside = URL(fileURLWithPath: AdapterEncoderLayout.imageEncoderFolder(forAdapter: adapter.path))
    guard FileManager.default.fileExists(atPath: beside.path) else {
      throw IPAdapterError.missingImageEncoder(path: adapter.path, tried: beside.path)
    }
    return beside
  }
}
