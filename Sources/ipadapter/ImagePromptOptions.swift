import ArgumentParser
import Foundation
import IPAdapter
import Imaging
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
  @Option(help: "An IP-Adapter checkpoint (.safetensors or .bin); repeat for several adapters.")
  var ipAdapter: [String] = []

  @Option(help: "Image encoder folder (default: 'image_encoder' next to the adapter file); one for all adapters or one per adapter.")
  var imageEncoder: [String] = []

  @Option(help: "An image prompt, '[N=]FILE' (N = adapter number, default 1); repeat for several images — their tokens are concatenated in order.")
  var ipImage: [String] = []

  @Option(help: "IP-Adapter scale λ (default 1.0); one for all adapters or one per adapter.")
  var ipScale: [Float] = []

  @Option(help: "Precomputed embeddings written by 'ipadapter embed', '[N=]FILE', used instead of images.")
  var ipEmbeds: [String] = []

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
  func imagePrompts(for pipeline: StableDiffusionPipeline) throws -> [ImagePrompt] {
    try validate(requireImages: true)
    guard !ipAdapter.isEmpty else { return [] }
    let scales = try Self.perAdapter(ipScale, count: ipAdapter.count, option: "--ip-scale")
    var images = Array(repeating: [Image](), count: ipAdapter.count)
    for v in ipImage {
      let (i, file) = try Self.assignment(v, option: "--ip-image", adapters: ipAdapter.count)
      images[i].append(try Image(contentsOfFile: file))
    }
    var embedFiles = Array(repeating: String?.none, count: ipAdapter.count)
    for v in ipEmbeds {
      let (i, file) = try Self.assignment(v, option: "--ip-embeds", adapters: ipAdapter.count)
      embedFiles[i] = file
    }
    var encoders: [String: ImagePromptEncoder] = [:]
    var prompts: [ImagePrompt] = []
    for (i, path) in ipAdapter.enumerated() {
      let adapter = try IPAdapter(path: path, unet: pipeline.unet)
      let embeds: ImagePromptEmbeds
      if let file = embedFiles[i] {
        embeds = try EmbedsFile.read(file, adapter: adapter)
      } else {
        let folder = try encoderFolder(for: i)
        let encoder = try encoders[folder.path] ?? ImagePromptEncoder(folder: folder, processorConfig: pipeline.featureExtractorConfig)
        encoders[folder.path] = encoder
        embeds = try ImagePrompt.embeds(adapter: adapter, encoder: encoder, images: images[i])
      }
      prompts.append(ImagePrompt(adapter: adapter, embeds: embeds, scale: scales[i] ?? 1.0))
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
    for key in [conditionalKey, unconditionalKey] where file.info(key) == nil {
      throw IPAdapterError.badEmbeds(path: path, reason: "no tensor '\(key)' (write the file with 'ipadapter embed')")
    }
    let cond = try file.tensor(conditionalKey).toFloat32()
    let uncond = try file.tensor(unconditionalKey).toFloat32()
    let c = adapter.variant.crossDim
    guard cond.rank == 3, cond.shape[0] == 1, cond.shape[2] == c, uncond.shape == cond.shape else {
      throw IPAdapterError.badEmbeds(
        path: path, reason: "embeddings must be [1, tokens, \(c)] for \(URL(fileURLWithPath: adapter.path).lastPathComponent), got \(cond.shape) and \(uncond.shape)")
    }
    if let t = adapter.projection.tokensPerImage, cond.shape[1] % t != 0 {
      throw IPAdapterError.badEmbeds(path: path, reason: "\(cond.shape[1]) tokens is not a multiple of the adapter's \(t) tokens per image")
    }
    return ImagePromptEmbeds(conditional: cond, unconditional: uncond)
  }
}
