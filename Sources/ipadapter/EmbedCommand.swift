import ArgumentParser
import FaceAnalysis
import Foundation
import Hub
import IPAdapter
import Imaging
import Pipelines

/// `ipadapter embed`: image prompts → projected IP-Adapter tokens, saved for later generations.
struct EmbedCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "embed",
    abstract: "Encode image prompts with an IP-Adapter and save the projected tokens.",
    discussion: """
      Writes F32 safetensors with 'image_prompt_embeds' and 'uncond_image_prompt_embeds', both \
      [1, N·T, C]. Use them with 'generate --ip-adapter FILE --ip-embeds FILE' (the adapter file is \
      still needed for its key/value weights; the image encoder is not).
      """)

  @Option(help: "The IP-Adapter checkpoint (.safetensors or .bin).")
  var ipAdapter: String

  @Option(help: "Image encoder folder (default: 'image_encoder' next to the adapter file).")
  var imageEncoder: String?

  @Option(help: "An image prompt; repeat for several images (tokens are concatenated in order).")
  var ipImage: [String] = []

  @Option(help: "FaceID adapters: a face embedding file (.npy [512] or [faces, 512], or .safetensors); repeat for several faces.")
  var faceEmbedding: [String] = []

  @Option(help: "FaceID-Plus adapters: an aligned face crop (224×224), one per face embedding.")
  var faceCrop: [String] = []

  @Option(help: "FaceID adapters: a photo whose face is found and embedded natively (instead of --face-embedding/--face-crop); repeat for several faces.")
  var faceImage: [String] = []

  @Option(help: "insightface model pack for --face-image (folder or hub repo; default ~/.insightface/models/buffalo_l).")
  var faceModels: String?

  @Option(help: "FaceID-Plus v2 shortcut scale s (implies the v2 shortcut).")
  var faceidSScale: Float?

  @Flag(help: "FaceID-Plus: use the v2 shortcut (SDXL FaceID-Plus adapters use it by default).")
  var faceidV2 = false

  @Option(help: "A preprocessor_config.json to prepare the images with (default: the encoder folder's, else CLIP's).")
  var preprocessorConfig: String?

  @Option(help: "Where to write the embeddings (.safetensors).")
  var output: String

  @OptionGroup(title: "Limits")
  var limits: LimitOptions

  func run() throws {
    do {
      guard !ipImage.isEmpty || !faceEmbedding.isEmpty || !faceImage.isEmpty else {
        throw CLIError.invalid("--ip-image", "give at least one image (or --face-embedding / --face-image for a FaceID adapter)")
      }
      for (flag, files) in [("--ip-image", ipImage), ("--face-embedding", faceEmbedding), ("--face-crop", faceCrop), ("--face-image", faceImage)] {
        for f in files where !FileManager.default.fileExists(atPath: f) { throw CLIError.invalid(flag, "file not found: \(f)") }
      }
      if let s = faceidSScale, !s.isFinite { throw CLIError.invalid("--faceid-s-scale", "\(s) is not a finite number") }
      try OutputPath.checkWritable(output, option: "--output")
      var spec = ImagePromptSpec(
        adapter: try HubReference.parse(ipAdapter),
        images: try ipImage.map { try Image(contentsOfFile: $0, limits: limits.limits) })
      spec.imageEncoder = try imageEncoder.map { try HubReference.parse($0) }
      if !faceEmbedding.isEmpty { spec.faceEmbeddings = try FaceEmbeddingFile.read(faceEmbedding) }
      spec.faceImages = try faceCrop.map { try Image(contentsOfFile: $0, limits: limits.limits) }
      if !faceImage.isEmpty {
        spec.facePhotos = try faceImage.map { try Image(contentsOfFile: $0, limits: limits.limits) }
        spec.faceAnalyzer = try FaceModelsOption.analyzer(faceModels)
      }
      spec.faceIDShortcutScale = faceidSScale
      if faceidV2 { spec.faceIDShortcut = true }
      var builder = ImagePromptBuilder()
      builder.maxPixels = limits.maxPixels
      builder.allowNonFiniteWeights = limits.allowNan
      let bar = DownloadProgressBar()
      builder.downloadProgress = { @Sendable p in bar.update(p) }
      let config = preprocessorConfig.map { URL(fileURLWithPath: $0) }
      let (fixedBuilder, fixedSpec) = (builder, spec)
      let (adapter, embeds) = try HubClient.runBlocking { try await fixedBuilder.encode(fixedSpec, processorConfig: config) }
      bar.finish()
      try ImagePromptEmbedsFile.write(embeds, adapter: adapter, to: output)
    } catch let error as ExitCode {
      throw error
    } catch {
      FileHandle.standardError.write(Data("error: \(CLIError.oneLine(error))\n".utf8))
      throw ExitCode(1)
    }
  }
}
