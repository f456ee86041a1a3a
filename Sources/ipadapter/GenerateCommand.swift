import ArgumentParser
import Foundation
import Hub
import Imaging
import Pipelines
import Schedulers
import TensorCore
import Weights

/// `ipadapter generate`: text (and image) prompted generation from a diffusers pipeline folder.
struct GenerateCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "generate",
    abstract: "Generate an image with Stable Diffusion from a text prompt.")

  @Option(help: "A diffusers pipeline folder (with model_index.json), a single-file SD1.x or SDXL checkpoint (.safetensors or .ckpt, LDM/SGM layout, e.g. from civitai), or a Hugging Face hub reference org/name[@revision] or org/name/file.safetensors (downloaded into the shared cache).")
  var model: String

  @Option(help: "For a single-file --model: a diffusers pipeline folder whose configs and tokenizer to use (default: the bundled Stable Diffusion 1.5 or SDXL base 1.0 ones, by the file's keys).")
  var modelConfig: String?

  @Option(help: "Weights variant (diffusers' variant=): e.g. fp16 loads — and downloads — each component's *.fp16.safetensors instead of the full-precision files.")
  var variant: String?

  @Option(help: "Replace the model's VAE with this file (.safetensors/.ckpt, diffusers or LDM layout) or hub file reference.")
  var vae: String?

  @Option(help: "The text prompt.")
  var prompt: String

  @Option(help: "What the image should not show (SDXL without it: zero unconditional embeddings, as diffusers' force_zeros_for_empty_prompt; an explicit \"\" is encoded).")
  var negativePrompt: String?

  @Option(help: "Image width in pixels (a multiple of 8; default: the UNet's sample_size × 8).")
  var width: Int?

  @Option(help: "Image height in pixels (a multiple of 8; default: the UNet's sample_size × 8).")
  var height: Int?

  @Option(help: "Denoising steps.")
  var steps: Int = 30

  @Option(help: "Classifier-free guidance scale (1.0 disables the unconditional pass; default: 7.5, SDXL 5.0).")
  var guidanceScale: Float?

  @Option(help: "diffusers' guidance_rescale in [0, 1] (0: off): blend the guided noise with itself rescaled to the text prediction's standard deviation.")
  var guidanceRescale: Float = 0

  @Option(help: "Seed of the torch-compatible generator (default: a random seed, printed).")
  var seed: UInt64?

  @Option(help: "Sampler (default: the model's own): ddim, pndm, euler, euler-a, dpmpp-2m, dpmpp-2m-karras, lcm (LCM-LoRA / LCM models), tcd (TCD-LoRA).")
  var scheduler: SchedulerKind?

  @Option(help: "diffusers' eta: TCD's gamma in [0, 1] (default 0 as diffusers' pipelines; TCD's examples use 0.3). Only with --scheduler tcd.")
  var eta: Float?

  @Option(help: "A safetensors file with tensor 'latents' [1,4,H/8,W/8] used as the initial noise.")
  var latents: String?

  @Option(help: "Use the text encoder's hidden state this many layers before the last (diffusers' clip_skip).")
  var clipSkip: Int = 0

  @Option(help: "Where to write the PNG (it carries the generation parameters in a text chunk).")
  var output: String

  @Option(help: "Also write the final latents (before VAE decoding) as F32 safetensors, key 'latents'.")
  var saveLatents: String?

  @Option(help: "Arithmetic of convolutions and matrix products.")
  var precision: ComputePrecision = .float32

  @Option(help: "Threads (default: all cores).")
  var threads: Int?

  @OptionGroup(title: "SDXL")
  var sdxl: SDXLOptions

  @OptionGroup(title: "LoRA")
  var loras: LoRAOptions

  @OptionGroup(title: "Image prompts (IP-Adapter)")
  var imagePrompts: ImagePromptOptions

  @OptionGroup(title: "InstantID (SDXL)")
  var instantID: InstantIDOptions

  @OptionGroup(title: "Image-to-image and inpainting")
  var initImage: InitImageOptions

  @OptionGroup(title: "ControlNet")
  var controlNets: ControlNetOptions

  @OptionGroup(title: "Limits")
  var limits: LimitOptions

  @Flag(help: "Decode (and encode --init-image) with a tiled VAE, as diffusers' enable_vae_tiling(): tiles of the VAE's sample_size (512 pixels for SD1.5, 1024 for SDXL) overlapping by a quarter, seams blended as diffusers does; used only when the image is larger than one tile. Bounds the VAE's memory for large images; results differ slightly from untiled decoding.")
  var vaeTiling = false

  @Flag(help: "Do not show the progress bar.")
  var quiet = false

  func run() async throws {
    do {
      try await execute()
    } catch let error as ExitCode {
      throw error
    } catch {
      FileHandle.standardError.write(Data("error: \(CLIError.oneLine(error))\n".utf8))
      throw ExitCode(1)
    }
  }

  func execute() async throws {
    if let threads {
      guard threads >= 1 else { throw CLIError.invalid("--threads", "\(threads) must be at least 1") }
      Runtime.setThreadCount(threads)
    }
    var imagePrompts = self.imagePrompts
    let instantIDFace = try instantID.take(from: &imagePrompts)
    try imagePrompts.validate(requireImages: true)
    try initImage.validate()
    try controlNets.validate()
    if latents != nil, initImage.initImage != nil {
      throw CLIError.invalid("--latents", "cannot be combined with --init-image (the noise comes from --seed)")
    }
    try OutputPath.checkWritable(output, option: "--output")
    if let saveLatents { try OutputPath.checkWritable(saveLatents, option: "--save-latents") }

    var parameters = GenerationParameters(prompt: prompt)
    parameters.negativePrompt = negativePrompt
    parameters.width = width
    parameters.height = height
    parameters.steps = steps
    parameters.guidanceScale = guidanceScale
    parameters.guidanceRescale = guidanceRescale
    try sdxl.apply(to: &parameters)
    parameters.seed = seed ?? UInt64.random(in: 0..<(1 << 32))
    parameters.scheduler = scheduler
    parameters.eta = eta
    parameters.clipSkip = clipSkip
    parameters.maxPixels = limits.maxPixels
    parameters.allowNaN = limits.allowNan
    if let latents { parameters.latents = try LatentsFile.read(latents) }
    for warning in try initImage.apply(to: &parameters, limits: limits.limits) {
      FileHandle.standardError.write(Data("\(warning)\n".utf8))
    }

    let downloads = quiet ? nil : DownloadProgressBar()
    var load = PipelineLoadOptions(precision: precision)
    load.variant = variant
    load.vae = try vae.map { try HubReference.parse($0) }
    if let modelConfig { load.singleFileConfigs = URL(fileURLWithPath: modelConfig) }
    load.allowNonFiniteWeights = limits.allowNan
    try loras.apply(to: &load)
    if let downloads { load.downloadProgress = { @Sendable p in downloads.update(p) } }
    var request = GenerationRequest(parameters: parameters)
    request.imagePrompts = try imagePrompts.specs(limits: limits)
    request.controlNets = try controlNets.specs(limits: limits)
    if let instantIDFace {
      request.instantID = try instantID.spec(instantIDFace, width: width, height: height, limits: limits.limits)
    }
    request.options.memory = .releaseAfterUse
    request.options.vaeTiling = vaeTiling ? .on : .off
    request.builder.maxPixels = limits.maxPixels
    request.builder.allowNonFiniteWeights = limits.allowNan
    request.builder.downloadProgress = load.downloadProgress

    let pipeline = try await StableDiffusionPipeline.load(try ModelSource.parse(model), options: load)
    downloads?.finish()
    if let report = pipeline.loraReport {
      for (i, skipped) in report.unmatched.enumerated() where !skipped.isEmpty {
        FileHandle.standardError.write(
          Data("warning: \(load.loras[i].file): \(skipped.count) LoRA layer(s) match no layer of the model and were skipped\n".utf8))
      }
    }
    let bar = quiet ? nil : ProgressBar()
    let result = try await pipeline.generate(request) { event in
      if case .step(let step) = event { bar?.update(step) }
    }
    bar?.finish()
    for warning in result.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
    try result.image.writePNG(to: output, text: [PNGTextChunk(key: "parameters", value: result.parametersText)])
    if let saveLatents { try LatentsFile.write(result.latents, to: saveLatents) }
    if seed == nil { FileHandle.standardError.write(Data("seed: \(parameters.seed)\n".utf8)) }
  }
}

/// Errors of the command line itself (arguments and output paths).
enum CLIError: Error, CustomStringConvertible {
  case invalid(String, String)

  var description: String {
    switch self {
    case .invalid(let option, let reason): "\(option): \(reason)"
    }
  }

  /// The error as one line of text (multi-line descriptions are joined with "; "), with the flag
  /// that changes the outcome when there is one.
  static func oneLine(_ error: Error) -> String {
    let text = String(describing: error).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
      .joined(separator: "; ")
    return LimitOptions.hint(for: error).map { text + " (\($0))" } ?? text
  }
}

/// Pre-flight checks on output files, so that a long generation does not end in a write error.
enum OutputPath {
  static func checkWritable(_ path: String, option: String) throws {
    let url = URL(fileURLWithPath: path)
    let directory = url.deletingLastPathComponent().path
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
      throw CLIError.invalid(option, "directory \(directory) does not exist")
    }
    guard FileManager.default.isWritableFile(atPath: directory) else {
      throw CLIError.invalid(option, "directory \(directory) is not writable")
    }
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
      throw CLIError.invalid(option, "\(path) is a directory")
    }
  }
}

/// Latent tensors exchanged as safetensors files (key `latents`, written as F32).
enum LatentsFile {
  static func read(_ path: String, option: String = "--latents") throws -> Tensor {
    let file = try SafeTensorsFile(path: path)
    guard file.info("latents") != nil else {
      throw CLIError.invalid(option, "\(path) has no tensor named 'latents' (it has: \(file.keys.joined(separator: ", ")))")
    }
    let t = try file.tensor("latents").toFloat32()
    guard t.rank == 4 else { throw CLIError.invalid(option, "'latents' in \(path) must be 4-D [1,4,H/8,W/8], got \(t.shape)") }
    return t
  }

  static func write(_ latents: Tensor, to path: String) throws {
    try SafeTensorsWriter.write(["latents": latents.asFloat32()], metadata: nil, to: path)
  }
}
