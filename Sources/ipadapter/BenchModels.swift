import ArgumentParser
import Foundation
import IPAdapter
import Imaging
import Models
import NN
import Pipelines
import Schedulers
import TensorCore
import Tokenizers
import Weights

/// `ipadapter bench models`: real-size SD1.5 components with deterministic random weights.
///
/// Every case builds its models from the bundled real configs (no download), warms up, and reports
/// the median of `--repeats` runs, the exact FLOPs its kernels executed, % of the machine's peak and
/// the peak RSS of the case. `--json` prints one JSON object per case for the side-by-side runner
/// (`tools/reference/bench_compare.py`), which runs the same cases in PyTorch + diffusers.
struct BenchModelsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "models",
    abstract: "Time real-size SD1.5, SDXL and InstantID components (random weights) and whole 512² / 1024² generations.")

  static let sd15Cases = [
    "unet-64", "unet-64-ip4", "unet-64-ip16", "unet-32", "unet-32-ip4", "unet-32-ip16",
    "vae-decode", "vit-h", "generate-512", "ip-overhead",
  ]
  static let allCases = sd15Cases + sdxlCases + loraCases + ModelBench.instantIDCases + trainingCases
  /// The SDXL cases (`BenchModelsSDXL.swift`).
  static let sdxlCases = ["sdxl-unet-128", "sdxl-unet-128-ip16", "sdxl-vae-decode-1024", "vit-bigg", "sdxl-generate-1024"]

  @Option(help: "Cases to run (default: the SD1.5 ones): \(Self.allCases.joined(separator: ", ")).")
  var cases: [String] = []

  @Option(help: "Timed repetitions per case (median reported; the generate cases run once after no warm-up).")
  var repeats: Int = 3

  @Option(help: "Arithmetic of convolutions and matrix products.")
  var precision: ComputePrecision = .float32

  @Option(help: "Threads (default: all cores).")
  var threads: Int?

  @Flag(help: "Print one JSON object per case instead of a table.")
  var json = false

  @Option(help: "Steps of the generate-512, sdxl-generate-1024 and instantid-generate-1024 cases.")
  var steps: Int = 20

  @Option(help: "Storage dtype of the random checkpoint files the models load from: fp16 (like most released adapter and fine-tune files) or fp32 (like the default hub files of SD1.5 and the h94 image encoder).")
  var checkpointDtype: CheckpointDtypeChoice = .fp16

  func run() async throws {
    if let threads { Runtime.setThreadCount(threads) }
    let prec = precision
    let storage: DType = checkpointDtype == .fp16 ? .float16 : .float32
    let selected = cases.isEmpty ? Self.sd15Cases : cases
    for c in selected where !Self.allCases.contains(c) {
      throw CLIError.invalid("--cases", "unknown case '\(c)' (known: \(Self.allCases.joined(separator: ", ")))")
    }
    let peak = json ? 0 : Machine.measurePeak(threads: Runtime.threadCount).gflops
    if !json {
      print("machine: \(Runtime.threadCount) threads, \(Machine.cpuName), measured fp32 peak \(String(format: "%.0f", peak)) GFLOPS, precision \(prec.rawValue)")
      print("case            median s     GFLOP   GFLOPS  % peak  peak RSS MB  notes")
    }
    let bench = ModelBench(precision: prec, repeats: repeats, steps: steps, checkpointDtype: storage)
    for name in selected {
      Memory.resetPeak()
      let r = ModelBench.instantIDCases.contains(name) ? try await bench.runInstantID(name) : try bench.run(name)
      let rss = Memory.peakRSSMegabytes()
      if json {
        let extra = r.notes.map { ", \"\($0.0)\": \($0.1)" }.joined()
        print("{\"case\": \"\(name)\", \"engine\": \"swift\", \"precision\": \"\(prec.rawValue)\", \"seconds\": \(r.seconds), \"gflop\": \(r.flops / 1e9), \"peak_rss_mb\": \(rss)\(extra)}")
      } else {
        let gflops = r.flops / r.seconds / 1e9
        let notes = r.notes.map { "\($0.0)=\(String(format: "%.2f", $0.1))" }.joined(separator: " ")
        print(String(format: "%-14@ %9.3f %9.1f %8.1f %6.1f %12d  %@", name as NSString, r.seconds, r.flops / 1e9, gflops, 100 * gflops / peak, rss, notes as NSString))
      }
    }
  }
}

/// Peak resident memory of the process (Linux `/proc/self/status`, resettable per case).
enum Memory {
  /// Resets the kernel's peak-RSS mark (`echo 5 > /proc/self/clear_refs`).
  static func resetPeak() {
    if let f = fopen("/proc/self/clear_refs", "w") {
      fputs("5", f)
      fclose(f)
    }
  }

  /// Whether `IPADAPTER_BENCH_RSS` asks for the per-phase memory and timing prints.
  static let debugPrints = ProcessInfo.processInfo.environment["IPADAPTER_BENCH_RSS"] != nil

  /// Writes `message` to standard error when `debugPrints` is on.
  static func debug(_ message: @autoclosure () -> String) {
    if debugPrints { FileHandle.standardError.write(Data((message() + "\n").utf8)) }
  }

  /// `VmRSS`, `RssAnon` and `RssFile` of /proc/self/status in MB (the debug prints of `generate`).
  static func currentRSS() -> String {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return "" }
    return status.split(separator: "\n").filter { $0.hasPrefix("VmRSS:") || $0.hasPrefix("RssAnon:") || $0.hasPrefix("RssFile:") }
      .map { line in
        return "\(line.split(separator: ":")[0]) \(kilobytes(line) / 1024)"
      }.joined(separator: " ")
  }

  static func peakRSSMegabytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") { return kilobytes(line) / 1024 }
    return 0
  }

  /// The number of a `/proc/self/status` line (`VmHWM:\t11534336 kB`: a tab, and no padding
  /// spaces once the value has 8 digits).
  static func kilobytes(_ line: Substring) -> Int {
    line.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int($0) }.first ?? 0
  }
}

/// The cases of `bench models`.
struct ModelBench {
  let precision: ComputePrecision
  let repeats: Int
  let steps: Int
  var checkpointDtype: DType = .float16

  struct Result {
    var seconds: Double
    var flops: Double
    var notes: [(String, Double)] = []
  }

  var options: PrepareOptions { PrepareOptions(precision: precision) }

  func config<T: Decodable>(_ type: T.Type, _ relative: String, root: URL = BundledConfigs.stableDiffusion15) throws -> T {
    try ConfigFile.load(type, from: root.appendingPathComponent(relative))
  }

  /// A model with random weights (stored as `checkpointDtype`) served the way a checkpoint is:
  /// written to a temporary safetensors file, then loaded memory-mapped (the file is unlinked once
  /// mapped), so that the memory figures match a real run.
  func mapped<M: Module>(_ build: () throws -> M, seed: UInt64) throws -> M {
    let path = try writeRandom(build, seed: seed)
    defer { unlink(path) }
    return try load(build, path: path)
  }

  /// Writes random weights (`checkpointDtype`) of the model `build` makes to a temporary
  /// safetensors file.
  func writeRandom<M: Module>(_ build: () throws -> M, seed: UInt64) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ipadapter-bench-\(seed)-\(getpid()).safetensors").path
    let source = try build()
    try source.fillWithRandomWeights(seed: seed, dtype: checkpointDtype, prepare: nil)
    var tensors: [String: Tensor] = [:]
    for (key, p) in source.namedParameters() { tensors[key] = p.value }
    try SafeTensorsWriter.write(tensors, to: path)
    return path
  }

  /// Loads a model from such a file, memory-mapped.
  func load<M: Module>(_ build: () throws -> M, path: String) throws -> M {
    let model = try build()
    try model.loadWeights(from: try SafeTensorsFile(path: path), source: path, options: LoadOptions(prepare: options))
    return model
  }

  func unet() throws -> UNet2DConditionModel {
    let config = try config(UNet2DConditionConfig.self, "unet/config.json")
    return try mapped({ try UNet2DConditionModel(config: config) }, seed: 1)
  }

  func vae() throws -> AutoencoderKL {
    let config = try config(AutoencoderKLConfig.self, "vae/config.json")
    return try mapped({ try AutoencoderKL(config: config) }, seed: 2)
  }

  func textEncoder() throws -> CLIPTextModel {
    let config = try config(CLIPTextConfig.self, "text_encoder/config.json")
    return try mapped({ try CLIPTextModel(config: config) }, seed: 3)
  }

  func imageEncoder() throws -> CLIPVisionModel {
    let config = try config(CLIPVisionConfig.self, "config.json", root: BundledConfigs.clipViTH14)
    return try mapped({ try CLIPVisionModel(config: config) }, seed: 4)
  }

  /// A Plus-shaped adapter (Resampler 16 queries) or a global one (4 tokens) with random weights.
  func adapter(tokens: Int, unet: UNet2DConditionModel) throws -> IPAdapter {
    let variant: IPAdapterVariant = tokens == 16
      ? .plus(Resampler.Shape(dim: 768, depth: 4, heads: 12, queries: 16, embeddingDim: 1280, outputDim: 768))
      : .global(embeddingDim: 1024, crossDim: 768, tokens: tokens)
    let projection = variant.makeProjection()
    try projection.fillWithRandomWeights(seed: 5, prepare: options)
    let attention = IPAdapterAttentionWeights(slots: IPAdapterLayerTable.slots(for: unet), crossDim: 768)
    try attention.fillWithRandomWeights(seed: 6, prepare: options)
    return IPAdapter(path: "random-\(tokens)-token-adapter", variant: variant, projection: projection, attention: attention)
  }

  /// Median wall time of `body` after one warm-up, and the FLOPs of one run. The warm-up call
  /// (which converts and packs the weights) is timed for the `IPADAPTER_BENCH_RSS` prints.
  func time(_ body: () throws -> Void) rethrows -> (Double, Double) {
    let first = try Bench.seconds(body)
    Memory.debug("first call \(first) s")
    var times: [Double] = []
    var flops = 0
    for _ in 0..<max(1, repeats) {
      FlopCounter.reset()
      times.append(try Bench.seconds(body))
      flops = FlopCounter.count
    }
    return (Bench.median(of: times), Double(flops))
  }

  func run(_ name: String) throws -> Result {
    switch name {
    case "unet-64", "unet-64-ip4", "unet-64-ip16", "unet-32", "unet-32-ip4", "unet-32-ip16":
      let size = name.hasPrefix("unet-64") ? 64 : 32
      let tokens = name.hasSuffix("ip4") ? 4 : name.hasSuffix("ip16") ? 16 : 0
      let model = try unet()
      let text = Tensor.random([2, 77, 768], seed: 7)
      var conditioning = try model.makeConditioning(encoderHiddenStates: text)
      if tokens > 0 {
        let a = try adapter(tokens: tokens, unet: model)
        let embeds = ImagePromptEmbeds(
          conditional: Tensor.random([1, tokens, 768], seed: 8), unconditional: Tensor.random([1, tokens, 768], seed: 9))
        try ImagePrompt(adapter: a, embeds: embeds, scale: 1).apply(to: &conditioning)
      }
      let sample = Tensor.random([2, size, size, 4], seed: 10)
      let (t, f) = try time { _ = try model(sample, timestep: 500, conditioning: conditioning) }
      return Result(seconds: t, flops: f)
    case "vae-decode":
      let model = try vae()
      let latents = Tensor.random([1, 64, 64, 4], seed: 11)
      let (t, f) = try time { _ = try model.decode(latents) }
      return Result(seconds: t, flops: f)
    case "vit-h":
      let model = try imageEncoder()
      let pixels = Tensor.random([1, 224, 224, 3], seed: 12)
      let (t, f) = try time { _ = try model(pixels, output: .imageEmbeds) }
      return Result(seconds: t, flops: f)
    case "generate-512":
      return try generate()
    case "ip-overhead":
      return try ipOverhead()
    case "train-step-512", "train-step-512-checkpointing":
      return try trainStep(checkpointing: name.hasSuffix("checkpointing"))
    case let sdxl where BenchModelsCommand.sdxlCases.contains(sdxl):
      return try runSDXL(sdxl)
    case let lora where BenchModelsCommand.loraCases.contains(lora):
      return try runLoRA(lora)
    default:
      throw CLIError.invalid("--cases", "unknown case \(name)")
    }
  }

  /// One UNet (64×64, CFG batch 2) timed alternately without and with a 16-token adapter, so that
  /// both see the same packed weights and machine state; notes the per-step overhead in percent.
  func ipOverhead() throws -> Result {
    let model = try unet()
    let text = Tensor.random([2, 77, 768], seed: 7)
    let plain = try model.makeConditioning(encoderHiddenStates: text)
    var withIP = plain
    let a = try adapter(tokens: 16, unet: model)
    try ImagePrompt(
      adapter: a,
      embeds: ImagePromptEmbeds(conditional: Tensor.random([1, 16, 768], seed: 8), unconditional: Tensor.random([1, 16, 768], seed: 9)),
      scale: 1
    ).apply(to: &withIP)
    let sample = Tensor.random([2, 64, 64, 4], seed: 10)
    _ = try model(sample, timestep: 500, conditioning: withIP)
    var base: [Double] = []
    var ip: [Double] = []
    func seconds(_ conditioning: CrossAttentionConditioning) throws -> Double {
      try Bench.seconds { _ = try model(sample, timestep: 500, conditioning: conditioning) }
    }
    for _ in 0..<max(3, repeats) {
      base.append(try seconds(plain))
      ip.append(try seconds(withIP))
    }
    let b = base.sorted()[base.count / 2]
    let i = ip.sorted()[ip.count / 2]
    return Result(seconds: i, flops: 0, notes: [("base_s", b), ("overhead_percent", 100 * (i - b) / b)])
  }

  /// Load (random weights) → text + image encoding → `steps` UNet steps with CFG and a Plus
  /// adapter → VAE decode, once.
  func generate() throws -> Result {
    // Untimed: random weights written to checkpoint files, as a user has them on disk.
    let unetConfig = try config(UNet2DConditionConfig.self, "unet/config.json")
    let vaeConfig = try config(AutoencoderKLConfig.self, "vae/config.json")
    let textConfig = try config(CLIPTextConfig.self, "text_encoder/config.json")
    let visionConfig = try config(CLIPVisionConfig.self, "config.json", root: BundledConfigs.clipViTH14)
    let files = [
      try writeRandom({ try UNet2DConditionModel(config: unetConfig) }, seed: 1),
      try writeRandom({ try AutoencoderKL(config: vaeConfig) }, seed: 2),
      try writeRandom({ try CLIPTextModel(config: textConfig) }, seed: 3),
      try writeRandom({ try CLIPVisionModel(config: visionConfig) }, seed: 4),
    ]
    defer { for f in files { unlink(f) } }
    // Writing the random checkpoints is set-up, not part of what a user's generation costs.
    Runtime.returnFreedMemory()
    Memory.resetPeak()
    Memory.debug("after writing: \(Memory.currentRSS())")

    let start = DispatchTime.now().uptimeNanoseconds
    FlopCounter.reset()
    let model = try load({ try UNet2DConditionModel(config: unetConfig) }, path: files[0])
    let pipeline = try StableDiffusionPipeline(
      folder: BundledConfigs.stableDiffusion15, tokenizer: try CLIPTokenizer.bundledSD15(),
      textEncoder: try load({ try CLIPTextModel(config: textConfig) }, path: files[2]), unet: model,
      vae: try load({ try AutoencoderKL(config: vaeConfig) }, path: files[1]),
      schedulerConfig: try SchedulerConfig(
        contentsOf: BundledConfigs.stableDiffusion15.appendingPathComponent("scheduler/scheduler_config.json")),
      precision: precision)
    let a = try adapter(tokens: 16, unet: model)
    let loaded = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    let image = Image(width: 512, height: 512, format: .rgb, fill: 128)
    let encodeStart = DispatchTime.now().uptimeNanoseconds
    // The image encoder lives only while the prompt is encoded (as in the CLI).
    let embeds = try ImagePrompt.embeds(
      adapter: a,
      encoder: ImagePromptEncoder(
        model: try load({ try CLIPVisionModel(config: visionConfig) }, path: files[3]), processor: CLIPImageProcessor()),
      images: [image])
    Runtime.returnFreedMemory()  // as the CLI does once the image encoder is gone
    let imageEncode = Double(DispatchTime.now().uptimeNanoseconds - encodeStart) / 1e9
    var p = GenerationParameters(prompt: "a photo of a cat")
    p.steps = steps
    p.width = 512
    p.height = 512
    p.scheduler = .dpmpp2m
    Memory.debug("load \(loaded) s, image encode \(imageEncode) s")
    Memory.debug("after encoders: peak \(Memory.peakRSSMegabytes()) MB, \(Memory.currentRSS())")
    let result = try pipeline.generate(
      p, imagePrompts: [ImagePrompt(adapter: a, embeds: embeds, scale: 0.6)],
      options: GenerationOptions(memory: .releaseAfterUse),
      progress: { step in
        Memory.debug("step \(step.step): peak \(Memory.peakRSSMegabytes()) MB, \(Memory.currentRSS())")
        return true
      })
    Memory.debug("preparation \(result.preparationSeconds) s")
    Memory.debug("end: peak \(Memory.peakRSSMegabytes()) MB, \(Memory.currentRSS())")
    let total = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    return Result(
      seconds: total, flops: Double(FlopCounter.count),
      notes: [
        ("load_s", loaded), ("first_step_s", loaded + imageEncode + result.preparationSeconds),
        ("denoise_s", result.denoisingSeconds), ("s_per_step", result.denoisingSeconds / Double(steps)),
      ])
  }
}
