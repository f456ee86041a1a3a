import ArgumentParser
import Foundation
import IPAdapter
import Imaging
import NN
import Pipelines
import TensorCore
import Weights

/// The image-prompt flags shared by `generate` and `embed`.
///
/// One adapter: `--ip-adapter FILE --ip-image A.png [--ip-image B.png] [--ip-scale 0.6]`.
/// Several adapters: repeat `--ip-adapter`; give each image to an adapter with `N=FILE`
/// (1-based, `--ip-image 2=style.png`; a bare FILE belongs to adapter 1), and repeat `--ip-scale`
/// and `--image-encoder` in adapter order (a single value applies to every adapter).
struct ImagePromptOptions: ParsableArguments {
  @Option(help: "An IP-Adapter checkpoint (.safetensors or .bin, or a hub reference org/name/path/file); repeat for several adapters.")
  var ipAdapter: [String] = []

  @Option(help: "Image encoder folder or hub reference (default: 'image_encoder' next to the adapter file); one for all adapters or one per adapter.")
  var imageEncoder: [String] = []

  @Option(help: "An image prompt, '[N=]FILE' (N = adapter number, default 1); repeat for several images — their tokens are concatenated in order.")
  var ipImage: [String] = []

  @Option(help: "IP-Adapter scale λ (default 1.0); one for all adapters or one per adapter.")
  var ipScale: [Float] = []

  @Option(help: "Precomputed embeddings, '[N=]FILE', used instead of images: a file written by 'ipadapter embed', or diffusers' ip_adapter_image_embeds layout (one tensor [2, N, D] or [2, N, 257, D] of CLIP features, negative first).")
  var ipEmbeds: [String] = []

  @Option(help: "Per-layer scales in diffusers' dictionary form, e.g. '{\"up\": {\"block_1\": [0, 1, 0]}}' (unlisted blocks 0); one for all or one per adapter.")
  var ipBlockScales: [String] = []

  @Option(help: "InstantStyle preset: style, composition (or layout), style-and-composition; one for all or one per adapter.")
  var ipPreset: [String] = []

  @Option(help: "ComfyUI weight type (linear, ease in, ease out, ease in-out, reverse in-out, weak input, weak output, weak middle, strong middle, style transfer, composition, strong style transfer, style and composition, style transfer precise, composition precise, strong style and composition); one for all or one per adapter.")
  var ipWeightType: [String] = []

  @Option(help: "ComfyUI weight_composition for the style-and-composition weight types.")
  var ipWeightComposition: Double = 1

  @Flag(help: "Reproduce ComfyUI_IPAdapter_plus, which does not patch the middle block (default: patch it, as the reference does).")
  var ipComfyMiddle = false

  @Option(help: "Fraction of the steps before which the adapter is off (default 0).")
  var ipStart: [Double] = []

  @Option(help: "Fraction of the steps after which the adapter is off (default 1).")
  var ipEnd: [Double] = []

  @Option(help: "Regional mask per image, '[N=]FILE' in the order of that adapter's images (white = where the image acts); masked images get one softmax each.")
  var ipMask: [String] = []

  @Option(help: "Weight of each --ip-image, in the order the images are given (default 1).")
  var ipImageWeight: [Float] = []

  @Option(help: "How several images of one adapter combine before projection: concat (default), add, subtract, average, norm average, max, min; one for all or one per adapter.")
  var ipCombine: [String] = []

  @Option(help: "ComfyUI embeds scaling: 'V only' (default, the reference), 'K+V', 'K+V w/ C penalty', 'K+mean(V) w/ C penalty'; one for all or one per adapter.")
  var ipEmbedsScaling: [String] = []

  @Option(help: "A negative image prompt, '[N=]FILE': replaces the unconditional image features of that adapter.")
  var ipNegativeImage: [String] = []

  @Option(help: "Unconditional image convention: zeros (diffusers and the original code), black (ComfyUI), noise (ComfyUI's IPAdapter Noise, fade); one for all or one per adapter.")
  var ipUncond: [String] = []

  /// Replaces hub references (adapters, encoders) by local paths, downloading what is missing;
  /// for a hub adapter without `--image-encoder`, its `image_encoder/` sibling is fetched too.
  mutating func resolveHubReferences(quiet: Bool) throws {
    for (i, a) in ipAdapter.enumerated() where ModelResolution.isHub(a) {
      ipAdapter[i] = try ModelResolution.file(a, option: "--ip-adapter", quiet: quiet)
      if imageEncoder.isEmpty { try ModelResolution.siblingImageEncoder(ofAdapter: a, quiet: quiet) }
    }
    for (i, e) in imageEncoder.enumerated() where ModelResolution.isHub(e) {
      imageEncoder[i] = try ModelResolution.folder(
        e, files: ModelResolution.encoderFiles, option: "--image-encoder", quiet: quiet)
    }
  }

  /// `N=FILE` → (N−1, FILE); a bare FILE → (0, FILE).
  static func assignment(_ value: String, option: String, adapters: Int) throws -> (Int, String) {
    if let eq = value.firstIndex(of: "="), let n = Int(value[..<eq]) {
      guard n >= 1, n <= adapters else {
        throw CLIError.invalid(option, "'\(value)' names adapter \(n), but \(adapters) adapter(s) were given")
      }
      return (n - 1, String(value[value.index(after: eq)...]))
    }
    return (0, value)
  }

  /// Per-adapter values from a list of one value (for all) or one per adapter.
  static func perAdapter<T>(_ values: [T], count: Int, option: String) throws -> [T?] {
    if values.isEmpty { return Array(repeating: nil, count: count) }
    if values.count == 1 { return Array(repeating: values[0], count: count) }
    guard values.count == count else {
      throw CLIError.invalid(option, "give one value for all adapters or one per adapter (\(count)), not \(values.count)")
    }
    return values
  }

  /// Checks the flags without loading anything.
  func validate(requireImages: Bool) throws {
    if ipAdapter.isEmpty {
      for (flag, list) in [("--ip-image", ipImage), ("--ip-embeds", ipEmbeds), ("--image-encoder", imageEncoder)]
      where !list.isEmpty {
        throw CLIError.invalid(flag, "needs --ip-adapter")
      }
      if !ipScale.isEmpty { throw CLIError.invalid("--ip-scale", "needs --ip-adapter") }
      return
    }
    for s in ipScale where !s.isFinite { throw CLIError.invalid("--ip-scale", "\(s) is not a finite number") }
    _ = try Self.perAdapter(ipScale, count: ipAdapter.count, option: "--ip-scale")
    _ = try Self.perAdapter(imageEncoder, count: ipAdapter.count, option: "--image-encoder")
    var hasInput = Array(repeating: false, count: ipAdapter.count)
    for v in ipImage {
      let (i, file) = try Self.assignment(v, option: "--ip-image", adapters: ipAdapter.count)
      guard FileManager.default.fileExists(atPath: file) else { throw CLIError.invalid("--ip-image", "file not found: \(file)") }
      hasInput[i] = true
    }
    for v in ipEmbeds {
      let (i, file) = try Self.assignment(v, option: "--ip-embeds", adapters: ipAdapter.count)
      guard FileManager.default.fileExists(atPath: file) else { throw CLIError.invalid("--ip-embeds", "file not found: \(file)") }
      guard !hasInput[i] else {
        throw CLIError.invalid("--ip-embeds", "adapter \(i + 1) already has --ip-image; give images or embeddings, not both")
      }
      hasInput[i] = true
    }
    if requireImages, let missing = hasInput.firstIndex(of: false) {
      throw CLIError.invalid("--ip-image", "adapter \(missing + 1) (\(ipAdapter[missing])) has no --ip-image or --ip-embeds")
    }
  }

  /// The encoder folder for adapter `i`: the flag, else `image_encoder/` next to the adapter file.
  func encoderFolder(for i: Int) throws -> URL {
    if let given = try Self.perAdapter(imageEncoder, count: ipAdapter.count, option: "--image-encoder")[i] {
      return URL(fileURLWithPath: given)
    }
    let beside = URL(fileURLWithPath: ipAdapter[i]).deletingLastPathComponent().appendingPathComponent("image_encoder")
    guard FileManager.default.fileExists(atPath: beside.path) else {
      throw IPAdapterError.missingImageEncoder(path: ipAdapter[i], tried: beside.path)
    }
    return beside
  }

  /// Loads adapters, encoders (shared per folder), images or embeddings → image prompts.
  func imagePrompts(
    for pipeline: StableDiffusionPipeline, parameters: GenerationParameters, limits: LimitOptions = LimitOptions()
  ) throws -> [ImagePrompt] {
    try validate(requireImages: true)
    guard !ipAdapter.isEmpty else { return [] }
    let scales = try Self.perAdapter(ipScale, count: ipAdapter.count, option: "--ip-scale")
    var images = Array(repeating: [Image](), count: ipAdapter.count)
    for v in ipImage {
      let (i, file) = try Self.assignment(v, option: "--ip-image", adapters: ipAdapter.count)
      images[i].append(try Image(contentsOfFile: file, limits: limits.limits))
    }
    var embedFiles = Array(repeating: String?.none, count: ipAdapter.count)
    for v in ipEmbeds {
      let (i, file) = try Self.assignment(v, option: "--ip-embeds", adapters: ipAdapter.count)
      embedFiles[i] = file
    }
    var encoders: [String: ImagePromptEncoder] = [:]
    var prompts: [ImagePrompt] = []
    let controls = try perAdapterControls(limits: limits.limits)
    let prepare = PrepareOptions(allowNonFiniteWeights: limits.allowNan)
    for (i, path) in ipAdapter.enumerated() {
      let adapter = try IPAdapter(path: path, unet: pipeline.unet, prepare: prepare)
      let c = controls[i]
      var features = c.features
      features.maxPixels = limits.maxPixels
      if let w = c.imageWeights {
        guard w.count == images[i].count else {
          throw CLIError.invalid("--ip-image-weight", "adapter \(i + 1) has \(images[i].count) image(s) but \(w.count) weight(s)")
        }
        features.weights = w
      }
      let embeds: ImagePromptEmbeds
      if let file = embedFiles[i] {
        embeds = try EmbedsFile.read(file, adapter: adapter)
      } else {
        let folder = try encoderFolder(for: i)
        let encoder = try encoders[folder.path]
          ?? ImagePromptEncoder(folder: folder, processorConfig: pipeline.featureExtractorConfig, prepare: prepare)
        encoders[folder.path] = encoder
        embeds = try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: images[i], options: features)
      }
      var prompt = ImagePrompt(adapter: adapter, embeds: embeds, scale: scales[i] ?? 1.0)
      prompt.layerScales = c.layerScales(scales[i] ?? 1.0)
      prompt.window = c.window
      prompt.embedsScaling = c.scaling
      if !c.maskFiles.isEmpty {
        guard c.maskFiles.count == embeds.imageCount else {
          throw CLIError.invalid("--ip-mask", "adapter \(i + 1) has \(embeds.imageCount) image(s) after combining but \(c.maskFiles.count) mask(s)")
        }
        let (w, h) = try pipeline.outputSize(for: parameters)
        let masks = try IPAdapterMasks.preprocess(
          try c.maskFiles.map { try Image(contentsOfFile: $0, limits: limits.limits) }, height: h, width: w,
          maxPixels: limits.maxPixels)
        for warning in masks.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        prompt.masks = masks.masks
      }
      prompts.append(prompt)
    }
    if !encoders.isEmpty {
      encoders = [:]  // the image encoders are done: give their memory back before the UNet loads
      Runtime.returnFreedMemory()
    }
    return prompts
  }
}

/// Precomputed image-prompt embeddings on disk: F32 safetensors with `image_prompt_embeds` and
/// `uncond_image_prompt_embeds`, both `[1, N·T, C]` (the projected tokens).
enum EmbedsFile {
  static let conditionalKey = "image_prompt_embeds"
  static let unconditionalKey = "uncond_image_prompt_embeds"

  static func write(_ embeds: ImagePromptEmbeds, adapter: IPAdapter, to path: String) throws {
    try SafeTensorsWriter.write(
      [conditionalKey: embeds.conditional.asFloat32(), unconditionalKey: embeds.unconditional.asFloat32()],
      metadata: ["ip_adapter": URL(fileURLWithPath: adapter.path).lastPathComponent, "variant": "\(adapter.variant)"],
      to: path)
  }

  static func read(_ path: String, adapter: IPAdapter) throws -> ImagePromptEmbeds {
    let file = try SafeTensorsFile(path: path)
    if file.info(conditionalKey) == nil, file.keys.count == 1, let info = file.info(file.keys[0]),
      (info.shape.count == 3 || info.shape.count == 4), info.shape.first == 2
    {
      return try diffusersLayout(try file.tensor(file.keys[0]).toFloat32(), path: path, adapter: adapter)
    }
    for key in [conditionalKey, unconditionalKey] where file.info(key) == nil {
      throw IPAdapterError.badEmbeds(
        path: path,
        reason: "no tensor '\(key)' (write the file with 'ipadapter embed', or store one diffusers ip_adapter_image_embeds tensor [2, N, …])")
    }
    let cond = try file.tensor(conditionalKey).toFloat32()
    let uncond = try file.tensor(unconditionalKey).toFloat32()
    let c = adapter.variant.crossDim
    guard cond.rank == 3, cond.shape[0] == 1, cond.shape[1] > 0, cond.shape[2] == c, uncond.shape == cond.shape else {
      throw IPAdapterError.badEmbeds(
        path: path, reason: "embeddings must be [1, tokens, \(c)] for \(URL(fileURLWithPath: adapter.path).lastPathComponent), got \(cond.shape) and \(uncond.shape)")
    }
    if let t = adapter.projection.tokensPerImage, cond.shape[1] % t != 0 {
      throw IPAdapterError.badEmbeds(path: path, reason: "\(cond.shape[1]) tokens is not a multiple of the adapter's \(t) tokens per image")
    }
    return ImagePromptEmbeds(
      conditional: cond, unconditional: uncond, imageCount: adapter.projection.tokensPerImage.map { cond.shape[1] / $0 } ?? 1)
  }

  /// diffusers' `ip_adapter_image_embeds` entry: CLIP features `[2, N, D]` (global adapters) or
  /// `[2, N, S, D]` (hidden states), negative half first — projected here like diffusers' UNet does.
  static func diffusersLayout(_ t: Tensor, path: String, adapter: IPAdapter) throws -> ImagePromptEmbeds {
    let n = t.shape[1]
    let perHalf = Array(t.shape.dropFirst())
    guard perHalf.allSatisfy({ $0 > 0 }) else {
      throw IPAdapterError.badEmbeds(path: path, reason: "diffusers embeds \(t.shape) have an empty dimension")
    }
    let wantsEmbeds = adapter.variant.usesImageEmbeds
    guard (wantsEmbeds && perHalf.count == 2) || (!wantsEmbeds && perHalf.count == 3), perHalf.last == adapter.variant.inputWidth else {
      throw IPAdapterError.badEmbeds(
        path: path,
        reason: "diffusers embeds \(t.shape) do not fit \(URL(fileURLWithPath: adapter.path).lastPathComponent), which takes \(wantsEmbeds ? "[2, N, \(adapter.variant.inputWidth)]" : "[2, N, tokens, \(adapter.variant.inputWidth)]")")
    }
    let negative = t.slice(rows: 0..<1).reshaped(perHalf)
    let positive = t.slice(rows: 1..<2).reshaped(perHalf)
    return ImagePromptEmbeds(
      conditional: try adapter.tokens(positive), unconditional: try adapter.tokens(negative), imageCount: n)
  }
}

/// The per-adapter controls parsed from the flags.
struct AdapterControls {
  var features = ImageFeatureOptions()
  var imageWeights: [Float]?
  var blockScales: IPAdapterBlockScales?
  var preset: IPAdapterBlockPreset?
  var weightType: ComfyWeighting?
  var window = IPAdapterStepWindow.full
  var scaling = IPAdapterEmbedsScaling.vOnly
  var maskFiles: [String] = []

  func layerScales(_ scale: Float) -> IPAdapterLayerScales {
    if let blockScales { return .blocks(blockScales) }
    if let preset { return .preset(preset, scale: scale) }
    if var w = weightType {
      w.weight = Double(scale)
      return .comfy(w)
    }
    return .uniform(scale)
  }
}

extension ImagePromptOptions {
  /// Parses the control flags into one `AdapterControls` per adapter.
  func perAdapterControls(limits: ImageLimits = .default) throws -> [AdapterControls] {
    let n = ipAdapter.count
    var out = Array(repeating: AdapterControls(), count: n)
    let blocks = try Self.perAdapter(ipBlockScales, count: n, option: "--ip-block-scales")
    let presets = try Self.perAdapter(ipPreset, count: n, option: "--ip-preset")
    let types = try Self.perAdapter(ipWeightType, count: n, option: "--ip-weight-type")
    let starts = try Self.perAdapter(ipStart, count: n, option: "--ip-start")
    let ends = try Self.perAdapter(ipEnd, count: n, option: "--ip-end")
    let combines = try Self.perAdapter(ipCombine, count: n, option: "--ip-combine")
    let scalings = try Self.perAdapter(ipEmbedsScaling, count: n, option: "--ip-embeds-scaling")
    let unconds = try Self.perAdapter(ipUncond, count: n, option: "--ip-uncond")
    for i in 0..<n {
      let chosen = [blocks[i] != nil, presets[i] != nil, types[i] != nil].filter { $0 }.count
      guard chosen <= 1 else {
        throw CLIError.invalid("--ip-block-scales/--ip-preset/--ip-weight-type", "give at most one of them for adapter \(i + 1)")
      }
      if let b = blocks[i] { out[i].blockScales = try IPAdapterBlockScales(json: b) }
      if let p = presets[i] { out[i].preset = try IPAdapterBlockPreset(name: p) }
      if let t = types[i] {
        out[i].weightType = ComfyWeighting(
          type: try ComfyWeightType(name: t), weightComposition: ipWeightComposition, comfyCompatibleMiddle: ipComfyMiddle)
      }
      out[i].window = try IPAdapterStepWindow(start: starts[i] ?? 0, end: ends[i] ?? 1)
      if let c = combines[i] { out[i].features.combine = try IPAdapterCombineMode(name: c) }
      if let s = scalings[i] { out[i].scaling = try IPAdapterEmbedsScaling(name: s) }
      switch unconds[i] {
      case nil, "zeros": break
      case "black": out[i].features.negative = .comfyUI
      case "noise":
        let noise = try IPAdapterNoise(kind: .fade)
        out[i].features.negative = .image(noise.image(generator: { TorchNoiseSource(seed: $0) }))
      case let other?:
        throw CLIError.invalid("--ip-uncond", "'\(other)' is not zeros, black or noise")
      }
    }
    for v in ipNegativeImage {
      let (i, file) = try Self.assignment(v, option: "--ip-negative-image", adapters: n)
      out[i].features.negative = .image(try Image(contentsOfFile: file, limits: limits))
    }
    for v in ipMask {
      let (i, file) = try Self.assignment(v, option: "--ip-mask", adapters: n)
      guard FileManager.default.fileExists(atPath: file) else { throw CLIError.invalid("--ip-mask", "file not found: \(file)") }
      out[i].maskFiles.append(file)
    }
    if !ipImageWeight.isEmpty {
      guard ipImageWeight.count == ipImage.count else {
        throw CLIError.invalid("--ip-image-weight", "give one per --ip-image (\(ipImage.count)), got \(ipImageWeight.count)")
      }
      var perAdapter = Array(repeating: [Float](), count: n)
      for (k, v) in ipImage.enumerated() {
        let (i, _) = try Self.assignment(v, option: "--ip-image", adapters: n)
        perAdapter[i].append(ipImageWeight[k])
      }
      for i in 0..<n where !perAdapter[i].isEmpty { out[i].imageWeights = perAdapter[i] }
    }
    return out
  }
}
