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

/// The InstantID cases of `bench models`, at real sizes (random weights): SDXL base 1.0's UNet,
/// an IdentityNet shaped as InstantX/InstantID's `ControlNetModel` (`ControlNetModel.from_unet`
/// of that UNet) and the face adapter's shape (Resampler 1280 wide, depth 4, 20 heads, 16 queries,
/// 512 in, 2048 out).
///
/// - `sdxl-controlnet-128`: one CFG step at 128×128 latents of the UNet and one ControlNet that
///   reads the text (77 tokens);
/// - `instantid-128`: the same step as InstantID runs it: the UNet with the face adapter's 16
///   tokens, IdentityNet reading those tokens;
/// - `instantid-overhead`: the two alternated on the same models (notes the difference in %);
/// - `instantid-generate-1024`: a whole 1024² generation from checkpoint files with a given face
///   embedding and keypoints (no detector), `steps` DPM++ 2M steps, load → PNG.
///
/// The control image's embedding is computed once per generation (it does not depend on the
/// step), so the step cases exclude it; PyTorch's ControlNet recomputes it every step.
extension ModelBench {
  static let instantIDCases = ["sdxl-controlnet-128", "instantid-128", "instantid-overhead", "instantid-generate-1024"]

  /// IdentityNet's config: `ControlNetModel.from_unet` of the SDXL UNet (the fields the two share).
  func identityNetConfig() throws -> ControlNetConfig {
    try config(ControlNetConfig.self, "unet/config.json", root: sdxlRoot)
  }

  /// InstantX/InstantID `ip-adapter.bin`'s shape with random weights.
  func faceAdapter(unet: UNet2DConditionModel) throws -> IPAdapter {
    try sdxlAdapter(unet: unet, embeddingDim: 512, seed: 41)
  }

  /// One denoising step: the ControlNet's residuals, then the UNet with them.
  struct ControlledStep {
    let unet: UNet2DConditionModel
    let controlNet: ControlNetModel
    let unetConditioning: CrossAttentionConditioning
    let controlConditioning: CrossAttentionConditioning
    let controlEmbedding: Tensor
    let sample: Tensor

    func run() throws {
      let residuals = try controlNet(
        sample, timestep: 500, conditioning: controlConditioning, controlEmbedding: controlEmbedding, scale: 0.8,
        guessMode: false)
      _ = try unet(sample, timestep: 500, conditioning: unetConditioning, controlResiduals: residuals)
    }
  }

  /// The plain step (text everywhere) and the InstantID step (face tokens), sharing the models.
  func controlledSteps() throws -> (plain: ControlledStep, instantID: ControlledStep) {
    let unet = try sdxlUNet()
    let netConfig = try identityNetConfig()
    let net = try mapped({ try ControlNetModel(config: netConfig) }, seed: 43)
    let textConditioning = try sdxlConditioning(unet)
    let textTime = textConditioning.textTime
    let text = Tensor.random([2, 77, 2048], seed: 27)
    let tokens = ImagePromptEmbeds(
      conditional: Tensor.random([1, 16, 2048], seed: 44), unconditional: Tensor.random([1, 16, 2048], seed: 45))
    var faceConditioning = textConditioning
    try ImagePrompt(adapter: try faceAdapter(unet: unet), embeds: tokens, scale: 0.8).apply(to: &faceConditioning)
    let hint = Tensor.random([1, 1024, 1024, 3], seed: 46)
    let embedding = try net.embedControlImage(hint)
    let sample = Tensor.random([2, 128, 128, 4], seed: 31)
    let plain = ControlledStep(
      unet: unet, controlNet: net, unetConditioning: textConditioning,
      controlConditioning: try net.makeConditioning(encoderHiddenStates: text, textTime: textTime),
      controlEmbedding: embedding, sample: sample)
    let face = ControlledStep(
      unet: unet, controlNet: net, unetConditioning: faceConditioning,
      controlConditioning: try net.makeConditioning(
        encoderHiddenStates: try Ops.concatRows([tokens.unconditional, tokens.conditional]), textTime: textTime),
      controlEmbedding: embedding, sample: sample)
    return (plain, face)
  }

  func runInstantID(_ name: String) async throws -> Result {
    switch name {
    case "sdxl-controlnet-128", "instantid-128":
      let steps = try controlledSteps()
      let step = name == "instantid-128" ? steps.instantID : steps.plain
      let (t, f) = try time { try step.run() }
      return Result(seconds: t, flops: f)
    case "instantid-overhead":
      let steps = try controlledSteps()
      try steps.plain.run()
      try steps.instantID.run()
      var plain: [Double] = []
      var face: [Double] = []
      for _ in 0..<max(3, repeats) {
        plain.append(try Bench.seconds { try steps.plain.run() })
        face.append(try Bench.seconds { try steps.instantID.run() })
      }
      let (p, f) = (Bench.median(of: plain), Bench.median(of: face))
      return Result(seconds: f, flops: 0, notes: [("controlnet_step_s", p), ("overhead_percent", 100 * (f - p) / p)])
    case "instantid-generate-1024":
      return try await generateInstantID()
    default:
      throw CLIError.invalid("--cases", "unknown case \(name)")
    }
  }

  /// Load (random weights from checkpoint files: UNet, VAE, both text encoders, the face adapter
  /// as a `.safetensors` in the original layout, IdentityNet as a diffusers folder) → text
  /// encoding and face tokens → `steps` DPM++ 2M steps at 1024² with CFG (guidance 5, the
  /// reference's default), IdentityNet and the adapter at 0.8 → VAE decode, once, with the CLI's
  /// memory policy. The face is given (embedding + keypoints), as the reference pipeline takes it.
  func generateInstantID() async throws -> Result {
    let unetConfig = try config(UNet2DConditionConfig.self, "unet/config.json", root: sdxlRoot)
    let vaeConfig = try config(AutoencoderKLConfig.self, "vae/config.json", root: sdxlRoot)
    let textConfig = try config(CLIPTextConfig.self, "text_encoder/config.json", root: sdxlRoot)
    let text2Config = try config(CLIPTextConfig.self, "text_encoder_2/config.json", root: sdxlRoot)
    let netConfig = try identityNetConfig()
    let files = [
      try writeRandom({ try UNet2DConditionModel(config: unetConfig) }, seed: 21),
      try writeRandom({ try AutoencoderKL(config: vaeConfig) }, seed: 22),
      try writeRandom({ try CLIPTextModel(config: textConfig) }, seed: 23),
      try writeRandom({ try CLIPTextModel(config: text2Config, withProjection: true) }, seed: 24),
    ]
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ipadapter-bench-instantid-\(getpid())")
    defer {
      for f in files { unlink(f) }
      try? FileManager.default.removeItem(at: folder)
    }
    let netFolder = folder.appendingPathComponent("ControlNetModel")
    try FileManager.default.createDirectory(at: netFolder, withIntermediateDirectories: true)
    try JSONEncoder().encode(netConfig).write(to: netFolder.appendingPathComponent("config.json"))
    let netFile = try writeRandom({ try ControlNetModel(config: netConfig) }, seed: 43)
    try FileManager.default.moveItem(
      atPath: netFile, toPath: netFolder.appendingPathComponent("diffusion_pytorch_model.safetensors").path)
    let adapterFile = folder.appendingPathComponent("ip-adapter.safetensors").path
    do {
      let shape = try UNet2DConditionModel(config: unetConfig)
      let adapter = try faceAdapter(unet: shape)
      var tensors: [String: Tensor] = [:]
      for (key, p) in adapter.projection.namedParameters() { tensors["image_proj." + key] = p.value.converted(to: checkpointDtype) }
      for (key, p) in adapter.attention?.namedParameters() ?? [] { tensors["ip_adapter." + key] = p.value.converted(to: checkpointDtype) }
      try SafeTensorsWriter.write(tensors, to: adapterFile)
    }
    Runtime.returnFreedMemory()
    Memory.resetPeak()

    let start = DispatchTime.now().uptimeNanoseconds
    FlopCounter.reset()
    let pipeline = try StableDiffusionPipeline(
      folder: sdxlRoot, tokenizer: try CLIPTokenizer.bundledSD15(),
      textEncoder: try load({ try CLIPTextModel(config: textConfig) }, path: files[2]),
      unet: try load({ try UNet2DConditionModel(config: unetConfig) }, path: files[0]),
      vae: try load({ try AutoencoderKL(config: vaeConfig) }, path: files[1]),
      schedulerConfig: try SchedulerConfig(contentsOf: sdxlRoot.appendingPathComponent("scheduler/scheduler_config.json")),
      precision: precision,
      sdxl: SDXLTextEncoders(
        tokenizer2: try CLIPTokenizer.bundledSDXLSecond(),
        textEncoder2: try load({ try CLIPTextModel(config: text2Config, withProjection: true) }, path: files[3])))
    let loaded = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    var p = GenerationParameters(prompt: "a photo of a person")
    p.steps = steps
    (p.width, p.height) = (1024, 1024)
    p.scheduler = .dpmpp2m
    p.guidanceScale = 5
    var request = GenerationRequest(parameters: p)
    let embedding = Tensor.random([512], seed: 47).scalars()
    let keypoints: [SIMD2<Float>] = [[400, 420], [620, 420], [510, 540], [430, 650], [600, 650]]
    var spec = InstantIDSpec(
      adapter: .local(adapterFile), identityNet: .local(netFolder.path),
      face: .given(embedding: embedding, keypoints: keypoints, canvasWidth: 1024, canvasHeight: 1024))
    (spec.ipScale, spec.identityNetScale) = (0.8, 0.8)
    request.instantID = spec
    request.options = GenerationOptions(memory: .releaseAfterUse)
    let firstStepDone = FirstEvent()
    let result = try await pipeline.generate(request) { event in
      if case .step = event { firstStepDone.mark() }
    }
    let total = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    let perStep = result.denoisingSeconds / Double(steps)
    let firstStep = Double((firstStepDone.time ?? start) - start) / 1e9 - perStep
    return Result(
      seconds: total, flops: Double(FlopCounter.count),
      notes: [
        ("load_s", loaded), ("first_step_s", firstStep),
        ("denoise_s", result.denoisingSeconds), ("s_per_step", perStep),
      ])
  }
}

/// The time of the first call to `mark()` (generation events arrive on another thread).
final class FirstEvent: @unchecked Sendable {
  private let lock = NSLock()
  private var value: UInt64?

  func mark() {
    let now = DispatchTime.now().uptimeNanoseconds
    lock.withLock { if value == nil { value = now } }
  }

  var time: UInt64? { lock.withLock { value } }
}
