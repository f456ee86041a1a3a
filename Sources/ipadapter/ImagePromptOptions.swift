import ArgumentParser
import FaceAnalysis
import Foundation
import Hub
import IPAdapter
import Imaging
import NN
import Pipelines

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
  var ipPreset: [IPAdapterBlockPreset] = []

  @Option(help: "ComfyUI weight type (linear, ease in, ease out, ease in-out, reverse in-out, weak input, weak output, weak middle, strong middle, style transfer, composition, strong style transfer, style and composition, style transfer precise, composition precise, strong style and composition); one for all or one per adapter.")
  var ipWeightType: [ComfyWeightType] = []

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
  var ipCombine: [IPAdapterCombineMode] = []

  @Option(help: "ComfyUI embeds scaling: 'V only' (default, the reference), 'K+V', 'K+V w/ C penalty', 'K+mean(V) w/ C penalty'; one for all or one per adapter.")
  var ipEmbedsScaling: [IPAdapterEmbedsScaling] = []

  @Option(help: "A negative image prompt, '[N=]FILE': replaces the unconditional image features of that adapter.")
  var ipNegativeImage: [String] = []

  @Option(help: "Unconditional image convention: zeros (diffusers and the original code), black (ComfyUI), noise (ComfyUI's IPAdapter Noise, fade); one for all or one per adapter.")
  var ipUncond: [UnconditionalImageChoice] = []

  @Option(help: "FaceID adapters: a face embedding file, '[N=]FILE' — .npy float32 [512] or [faces, 512] (insightface's normed_embedding saved with numpy.save) or .safetensors; repeat for several faces (the Portrait adapters take several, 16 tokens each).")
  var faceEmbedding: [String] = []

  @Option(help: "FaceID-Plus adapters: an aligned face crop, '[N=]FILE' (224×224, insightface norm_crop), one per face embedding, read by the image encoder.")
  var faceCrop: [String] = []

  @Option(help: "FaceID adapters: a photo, '[N=]FILE'; its face (the highest-scoring) is found, aligned and embedded natively (insightface pack from --face-models) — instead of --face-embedding/--face-crop. Repeat for several faces.")
  var faceImage: [String] = []

  @Option(help: "insightface model pack for --face-image: a folder with the .onnx files (buffalo_l, antelopev2) or a hub repo; default ~/.insightface/models/buffalo_l.")
  var faceModels: String?

  @Option(help: "Face detection size for --face-image (insightface det_size, a multiple of 32).")
  var faceDetSize = 640

  @Option(help: "Weight of the LoRA inside a FaceID adapter file (default 1.0, as the reference; 0 leaves the UNet unchanged); one for all or one per adapter.")
  var faceidLoraScale: [Float] = []

  @Option(help: "FaceID-Plus v2 shortcut scale s (the reference's s_scale, default 1.0; implies --faceid-v2); one for all or one per adapter.")
  var faceidSScale: [Float] = []

  @Flag(help: "FaceID-Plus: use the v2 shortcut, tokens = x + s·perceiver(x) (for ip-adapter-faceid-plusv2_sd15; SDXL FaceID-Plus adapters use it by default, as the reference).")
  var faceidV2 = false

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
      for (flag, list) in [
        ("--ip-image", ipImage), ("--ip-embeds", ipEmbeds), ("--image-encoder", imageEncoder),
        ("--face-embedding", faceEmbedding), ("--face-crop", faceCrop), ("--face-image", faceImage),
      ]
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
    for v in faceEmbedding {
      let (i, file) = try Self.assignment(v, option: "--face-embedding", adapters: ipAdapter.count)
      guard FileManager.default.fileExists(atPath: file) else { throw CLIError.invalid("--face-embedding", "file not found: \(file)") }
      hasInput[i] = true
    }
    for v in faceCrop {
      let (_, file) = try Self.assignment(v, option: "--face-crop", adapters: ipAdapter.count)
      guard FileManager.default.fileExists(atPath: file) else { throw CLIError.invalid("--face-crop", "file not found: \(file)") }
    }
    for v in faceImage {
      let (i, file) = try Self.assignment(v, option: "--face-image", adapters: ipAdapter.count)
      guard FileManager.default.fileExists(atPath: file) else { throw CLIError.invalid("--face-image", "file not found: \(file)") }
      hasInput[i] = true
    }
    guard faceDetSize >= 32, faceDetSize <= 4096, faceDetSize % 32 == 0 else {
      throw CLIError.invalid("--face-det-size", "\(faceDetSize) must be a multiple of 32 between 32 and 4096")
    }
    for (flag, list) in [("--faceid-lora-scale", faceidLoraScale), ("--faceid-s-scale", faceidSScale)] {
      for s in list where !s.isFinite { throw CLIError.invalid(flag, "\(s) is not a finite number") }
      _ = try Self.perAdapter(list, count: ipAdapter.count, option: flag)
    }
    if requireImages, let missing = hasInput.firstIndex(of: false) {
      throw CLIError.invalid("--ip-image", "adapter \(missing + 1) (\(ipAdapter[missing])) has no --ip-image, --ip-embeds, --face-embedding or --face-image")
    }
  }

  /// The library's description of the image prompts (images read, controls parsed).
  func specs(limits: LimitOptions = LimitOptions()) throws -> [ImagePromptSpec] {
    try validate(requireImages: true)
    guard !ipAdapter.isEmpty else { return [] }
    let scales = try Self.perAdapter(ipScale, count: ipAdapter.count, option: "--ip-scale")
    let encoders = try Self.perAdapter(imageEncoder, count: ipAdapter.count, option: "--image-encoder")
    let controls = try perAdapterControls(limits: limits.limits)
    var specs = try ipAdapter.enumerated().map { i, text in
      var spec = ImagePromptSpec(adapter: try HubReference.parse(text), scale: scales[i] ?? 1.0)
      spec.imageEncoder = try encoders[i].map { try HubReference.parse($0) }
      let c = controls[i]
      spec.layerScales = c.layerScales
      spec.window = c.window
      spec.embedsScaling = c.scaling
      spec.combine = c.features.combine
      spec.negative = c.features.negative
      spec.imageWeights = c.imageWeights
      spec.masks = try c.maskFiles.map { try Image(contentsOfFile: $0, limits: limits.limits) }
      return spec
    }
    for v in ipImage {
      let (i, file) = try Self.assignment(v, option: "--ip-image", adapters: ipAdapter.count)
      specs[i].images.append(try Image(contentsOfFile: file, limits: limits.limits))
    }
    for v in ipEmbeds {
      let (i, file) = try Self.assignment(v, option: "--ip-embeds", adapters: ipAdapter.count)
      specs[i].embedsFile = URL(fileURLWithPath: file)
    }
    var faceFiles = Array(repeating: [String](), count: ipAdapter.count)
    for v in faceEmbedding {
      let (i, file) = try Self.assignment(v, option: "--face-embedding", adapters: ipAdapter.count)
      faceFiles[i].append(file)
    }
    let loraScales = try Self.perAdapter(faceidLoraScale, count: ipAdapter.count, option: "--faceid-lora-scale")
    let sScales = try Self.perAdapter(faceidSScale, count: ipAdapter.count, option: "--faceid-s-scale")
    for i in specs.indices {
      if !faceFiles[i].isEmpty { specs[i].faceEmbeddings = try FaceEmbeddingFile.read(faceFiles[i]) }
      if let l = loraScales[i] { specs[i].faceIDLoRAScale = l }
      specs[i].faceIDShortcutScale = sScales[i]
      if faceidV2 { specs[i].faceIDShortcut = true }
    }
    for v in faceCrop {
      let (i, file) = try Self.assignment(v, option: "--face-crop", adapters: ipAdapter.count)
      specs[i].faceImages.append(try Image(contentsOfFile: file, limits: limits.limits))
    }
    if !faceImage.isEmpty {
      // One analyzer (detector + recogniser loaded once) for every adapter's photos.
      let analyzer = try FaceModelsOption.analyzer(faceModels)
      for v in faceImage {
        let (i, file) = try Self.assignment(v, option: "--face-image", adapters: ipAdapter.count)
        specs[i].facePhotos.append(try Image(contentsOfFile: file, limits: limits.limits))
        specs[i].faceAnalyzer = analyzer
        specs[i].faceDetectionSize = faceDetSize
      }
    }
    for (i, spec) in specs.enumerated() {
      if let w = spec.imageWeights, w.count != spec.images.count {
        throw CLIError.invalid("--ip-image-weight", "adapter \(i + 1) has \(spec.images.count) image(s) but \(w.count) weight(s)")
      }
    }
    return specs
  }

  /// The flag a library parameter name (`imagePrompts[i].field`) stands for.
  static func flag(forParameter name: String) -> String? {
    guard let dot = name.lastIndex(of: ".") else { return "--ip-adapter" }
    switch name[name.index(after: dot)...] {
    case "images": return "--ip-image"
    case "embedsFile": return "--ip-embeds"
    case "imageWeights": return "--ip-image-weight"
    case "masks": return "--ip-mask"
    case "faceEmbeddings": return "--face-embedding"
    case "faceImages": return "--face-crop"
    case "facePhotos", "faceAnalyzer": return "--face-image"
    case "faceIDLoRAScale": return "--faceid-lora-scale"
    default: return nil
    }
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

  /// The layer-scale choice (its strength is the adapter's scale, applied by the library).
  var layerScales: IPAdapterLayerScales? {
    if let blockScales { return .blocks(blockScales) }
    if let preset { return .preset(preset, scale: 1) }
    if let weightType { return .comfy(weightType) }
    return nil
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
      out[i].preset = presets[i]
      if let t = types[i] {
        out[i].weightType = ComfyWeighting(
          type: t, weightComposition: ipWeightComposition, comfyCompatibleMiddle: ipComfyMiddle)
      }
      out[i].window = try IPAdapterStepWindow(start: starts[i] ?? 0, end: ends[i] ?? 1)
      if let c = combines[i] { out[i].features.combine = c }
      if let s = scalings[i] { out[i].scaling = s }
      switch unconds[i] {
      case nil, .zeros: break
      case .black: out[i].features.negative = .comfyUI
      case .noise: out[i].features.negative = .image(try IPAdapterNoise(kind: .fade).image())
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
