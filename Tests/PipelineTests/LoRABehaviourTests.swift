import Foundation
import IPAdapter
import Imaging
import Models
import NN
import Pipelines
import TensorCore
import Testing
import TestSupport
import Weights

/// How fused LoRAs behave over a pipeline's life: replacing or removing them starts from the
/// loaded weights, FaceID LoRAs follow the image prompts of each generation, and every bad file is
/// refused with a `LoRAError` that leaves the weights as they were.
@Suite struct LoRABehaviourTests {
  static let kohya = Fixtures.url("lora/sd15-kohya.safetensors").path
  static let locon = Fixtures.url("lora/sd15-locon.safetensors").path
  static func pipeline() throws -> StableDiffusionPipeline { try StableDiffusionPipeline(folder: Fixtures.url("tiny-sd15")) }
  static let probe = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"

  static func weight(_ pipe: StableDiffusionPipeline, _ path: String = probe) throws -> Tensor {
    try #require(pipe.loraTargets[.unet]?.layers[path]).weight.value.asFloat32()
  }

  static func allLoaded(_ pipe: StableDiffusionPipeline) -> Bool {
    pipe.loraTargets.values.allSatisfy { $0.layers.values.allSatisfy { $0.weight.unfusedValue == nil } }
  }

  /// A temporary safetensors file of `tensors`.
  static func file(_ tensors: [String: Tensor], name: String = "lora.safetensors") throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("lora-\(UUID().uuidString)-\(name)").path
    try SafeTensorsWriter(tensors).write(to: path)
    return path
  }

  static func random(_ shape: [Int], seed: UInt64) throws -> Tensor {
    var g = SeededGenerator(seed: seed)
    return try Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -0.1...0.1, using: &g) })
  }

  @Test func removingEveryLoRARestoresTheLoadedWeightsExactly() throws {
    let pipe = try Self.pipeline()
    let before = try Self.weight(pipe).scalars()
    try pipe.applyLoRAs(files: [(Self.kohya, 0.8), (Self.locon, -0.5)])
    #expect(try Self.weight(pipe).scalars() != before)
    try pipe.applyLoRAs(files: [])
    #expect(try Self.weight(pipe).scalars() == before)
    #expect(Self.allLoaded(pipe))
    #expect(pipe.appliedLoRAs.isEmpty)
  }

  /// Applying a new weight starts from the loaded weights (no accumulation).
  @Test func reapplyingWithAnotherWeightDoesNotAccumulate() throws {
    let a = try Self.pipeline()
    let b = try Self.pipeline()
    try a.applyLoRAs(files: [(Self.kohya, 0.3)])
    try a.applyLoRAs(files: [(Self.kohya, 0.8)])
    try b.applyLoRAs(files: [(Self.kohya, 0.8)])
    #expect(try Self.weight(a).scalars() == Self.weight(b).scalars())
  }

  /// The FaceID LoRA is fused for the generations whose image prompts carry it, on top of the
  /// user's LoRAs, and removed by the next generation without it.
  @Test func faceIDLoRAFollowsTheImagePromptsOfEachGeneration() throws {
    let pipe = try Self.pipeline()
    let loaded = try Self.weight(pipe)
    // The h94 kohya copy of the FaceID LoRA as a user LoRA at 0.3: Δ = (W(0.3) − W₀) / 0.3.
    try pipe.applyLoRAs(files: [(Fixtures.url("faceid/ip-adapter-faceid_sd15_lora.safetensors").path, 0.3)])
    let user = try Self.weight(pipe)
    let adapter = try IPAdapter(path: Fixtures.url("faceid/ip-adapter-faceid_sd15.bin").path, unet: pipe.unet)
    var prompt = ImagePrompt(
      adapter: adapter, embeds: try ImagePrompt.faceEmbeds(adapter: adapter, faces: try FaceEmbeddingFile.read(Fixtures.url("faceid/face-a.npy").path)),
      scale: 0.8)
    prompt.faceIDLoRAScale = 0.5
    var p = GenerationParameters(prompt: "a portrait")
    p.steps = 1
    _ = try pipe.generate(p, imagePrompts: [prompt])
    // W₀ + 0.3Δ + 0.5Δ = W₀ + (0.8/0.3)(W(0.3) − W₀).
    let expected = try Ops.add(loaded, Ops.scale(try Ops.sub(user, loaded), 0.8 / 0.3))
    #expect(Compare.relativeError(try Self.weight(pipe), expected) <= 1e-5)
    _ = try pipe.generate(p)
    #expect(try Self.weight(pipe).scalars() == user.scalars())
  }

  /// bf16 compute keeps fused weights in bf16 (what its kernels round them to) and stays close to
  /// the fp32 result (the bf16 tolerance of BFloat16ModeTests).
  @Test func bf16PipelineKeepsFusedWeightsInBF16() throws {
    let fp32 = try Self.pipeline()
    let bf16 = try StableDiffusionPipeline(folder: Fixtures.url("tiny-sd15"), precision: .bfloat16)
    for pipe in [fp32, bf16] { try pipe.applyLoRAs(files: [(Self.kohya, 0.8)]) }
    let layer = try #require(bf16.loraTargets[.unet]?.layers[Self.probe])
    #expect(layer.weight.value.dtype == .bfloat16)
    #expect(try #require(fp32.loraTargets[.unet]?.layers[Self.probe]).weight.value.dtype == .float32)
    var p = GenerationParameters(prompt: "a red cube")
    p.steps = 3
    p.seed = 0
    let error = Compare.relativeError(try bf16.generate(p).latents, try fp32.generate(p).latents)
    #expect(error < 0.05, "bf16 vs fp32 latents relative error \(error)")
  }

  @Test func parametersTextRecordsTheLoRAsAsAUTOMATIC1111Does() throws {
    let pipe = try Self.pipeline()
    try pipe.applyLoRAs(files: [(Self.kohya, 0.8), (Self.locon, -0.5)])
    var p = GenerationParameters(prompt: "a red cube")
    p.steps = 1
    let text = try pipe.generate(p).parametersText
    #expect(text.hasPrefix("a red cube <lora:sd15-kohya:0.8> <lora:sd15-locon:-0.5>\n"), "\(text)")
    let hashes = try #require(text.range(of: "Lora hashes: \"")).upperBound
    let field = text[hashes...].prefix { $0 != "\"" }
    let parts = field.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    #expect(parts.count == 2)
    for (part, name) in zip(parts, ["sd15-kohya", "sd15-locon"]) {
      #expect(part.hasPrefix(name + ": "))
      let hash = part.dropFirst(name.count + 2)
      #expect(hash.count == 12 && hash.allSatisfy(\.isHexDigit), "\(part)")
    }
  }

  // MARK: Refusals

  func expectRefusal(
    _ files: [(String, Float)], ignoreUnmatched: Bool = false, sourceLocation: SourceLocation = #_sourceLocation,
    _ check: (LoRAError) -> Bool
  ) throws {
    let pipe = try Self.pipeline()
    let before = try Self.weight(pipe).scalars()
    do {
      try pipe.applyLoRAs(files: files, ignoreUnmatched: ignoreUnmatched)
      Issue.record("no error", sourceLocation: sourceLocation)
    } catch let error as LoRAError {
      #expect(check(error), "\(error)", sourceLocation: sourceLocation)
    }
    #expect(try Self.weight(pipe).scalars() == before, sourceLocation: sourceLocation)
    #expect(Self.allLoaded(pipe), sourceLocation: sourceLocation)
  }

  @Test func sdxlLoRAOnSD15IsRefusedAndNothingChanges() throws {
    try expectRefusal([(Self.kohya, 1), (Fixtures.url("lora/sdxl-kohya.safetensors").path, 1)]) { error in
      switch error {
      case .unmatchedKeys(_, _, let hint): hint.contains("SDXL")
      case .shapeMismatch: true
      default: false
      }
    }
  }

  @Test func unknownLayersAreRefusedUnlessIgnored() throws {
    let extra = try Self.file([
      "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight": try Self.random([2, 16], seed: 1),
      "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight": try Self.random([16, 2], seed: 2),
      "lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight": try Self.random([2, 16], seed: 3),
      "lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight": try Self.random([16, 2], seed: 4),
    ])
    defer { try? FileManager.default.removeItem(atPath: extra) }
    try expectRefusal([(extra, 1)]) { error in
      if case .unmatchedKeys(_, let keys, _) = error { return keys == ["lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight"] }
      return false
    }
    let pipe = try Self.pipeline()
    let report = try pipe.applyLoRAs(files: [(extra, 1)], ignoreUnmatched: true)
    #expect(report.totalFused == 1 && report.totalUnmatched == 1)
    // A generation that adds a FaceID LoRA re-fuses the set, skipping the same layers.
    let adapter = try IPAdapter(path: Fixtures.url("faceid/ip-adapter-faceid_sd15.bin").path, unet: pipe.unet)
    let prompt = ImagePrompt(
      adapter: adapter, embeds: try ImagePrompt.faceEmbeds(adapter: adapter, faces: try FaceEmbeddingFile.read(Fixtures.url("faceid/face-a.npy").path)),
      scale: 0.8)
    var p = GenerationParameters(prompt: "a portrait")
    p.steps = 1
    _ = try pipe.generate(p, imagePrompts: [prompt])
  }

  @Test func mismatchedRankAndWidthAreRefused() throws {
    let base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    let rank = try Self.file([
      base + ".lora_down.weight": try Self.random([4, 16], seed: 1), base + ".lora_up.weight": try Self.random([16, 3], seed: 2),
    ])
    let width = try Self.file([
      base + ".lora_down.weight": try Self.random([4, 24], seed: 1), base + ".lora_up.weight": try Self.random([16, 4], seed: 2),
    ])
    defer { for f in [rank, width] { try? FileManager.default.removeItem(atPath: f) } }
    try expectRefusal([(rank, 1)]) { if case .malformed(_, _, let r) = $0 { return r.contains("rank") } else { return false } }
    try expectRefusal([(width, 1)]) { if case .shapeMismatch(_, _, let layer, _) = $0 { return layer == Self.probe } else { return false } }
  }

  @Test func nanInALoRAIsRefused() throws {
    let base = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    var up = try Self.random([20, 2], seed: 2).scalars()
    up[7] = .nan
    let nan = try Self.file([
      base + ".lora_down.weight": try Self.random([2, 20], seed: 1), base + ".lora_up.weight": try Tensor(shape: [20, 2], floats: up),
    ])
    defer { try? FileManager.default.removeItem(atPath: nan) }
    try expectRefusal([(nan, 1)]) { if case .nonFinite(_, _, let i) = $0 { return i == 7 } else { return false } }
    try expectRefusal([(Self.kohya, .infinity)]) { if case .badWeight = $0 { return true } else { return false } }
  }

  @Test func otherNetworkKindsAndOtherFilesAreRefusedByName() throws {
    let loha = try Self.file(["lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": try Self.random([2, 16], seed: 1)])
    defer { try? FileManager.default.removeItem(atPath: loha) }
    try expectRefusal([(loha, 1)]) { if case .unsupportedKind(_, _, let kind) = $0 { return kind == "LyCORIS LoHa" } else { return false } }
    let unet = Fixtures.url("tiny-sd15/unet/diffusion_pytorch_model.safetensors").path
    try expectRefusal([(unet, 1)]) { if case .notALoRA = $0 { return true } else { return false } }
    try expectRefusal([("/nonexistent/lora.safetensors", 1)]) { if case .notALoRA(_, let r) = $0 { return r == "no such file" } else { return false } }
  }

  /// A half pair (`lora_down` without `lora_up`) is named.
  @Test func aMissingUpMatrixIsNamed() throws {
    let half = try Self.file(["lora_unet_conv_in.lora_down.weight": try Self.random([2, 4, 3, 3], seed: 1)])
    defer { try? FileManager.default.removeItem(atPath: half) }
    try expectRefusal([(half, 1)]) { error in
      if case .malformed(_, let key, let reason) = error { return key == "lora_unet_conv_in.lora_down.weight" && reason.contains("up") }
      return false
    }
  }
}

/// FaceID composes with everything else in one generation: a second (plain) IP-Adapter with a block
/// preset and a step window, a user LoRA, image-to-image and a ControlNet. Each part changes the
/// result (no parity golden exists for the combination; each part has its own).
@Suite struct FaceIDCompositionTests {
  @Test func faceIDWithAnotherAdapterLoRAImageToImageAndControlNet() throws {
    let pipe = try StableDiffusionPipeline(folder: Fixtures.url("tiny-sd15"))
    try pipe.applyLoRAs(files: [(Fixtures.url("lora/sd15-kohya.safetensors").path, 0.5)])
    var face = ImagePromptSpec(adapter: .local(Fixtures.url("faceid/ip-adapter-faceid_sd15.bin").path), scale: 0.7)
    face.faceEmbeddings = try FaceEmbeddingFile.read(Fixtures.url("faceid/face-a.npy").path)
    face.faceIDLoRAScale = 0.6
    var plain = ImagePromptSpec(
      adapter: .local(Fixtures.url("tiny-ip-adapter/models/ip-adapter_sd15.safetensors").path),
      images: [try Image(contentsOfFile: Fixtures.url("images/reference.png").path)], scale: 0.5)
    plain.layerScales = .preset(.style, scale: 0.5)
    plain.window = try IPAdapterStepWindow(start: 0.2, end: 0.8)
    var p = GenerationParameters(prompt: "a portrait")
    p.steps = 4
    p.seed = 1
    p.initImage = try Image(contentsOfFile: Fixtures.url("images/init-64.png").path)
    p.strength = 0.75
    let control = ControlNetUnit(
      model: try ModelLoader.controlNet(Fixtures.url("tiny-controlnet")), name: "tiny-controlnet",
      image: try Image(contentsOfFile: Fixtures.url("images/control-64.png").path), scale: 0.8)
    let builder = ImagePromptBuilder()
    let both = try builder.build([face, plain], for: pipe, parameters: p).prompts
    let all = try pipe.generate(p, imagePrompts: both, controlNets: [control])
    #expect(try all.latents.scalars().allSatisfy(\.isFinite))
    #expect(all.parametersText.contains("FaceID LoRA: 0.6") && all.parametersText.contains("<lora:sd15-kohya:0.5>"))
    let withoutFace = try pipe.generate(p, imagePrompts: [both[1]], controlNets: [control])
    #expect(Compare.relativeError(all.latents, withoutFace.latents) > 1e-3)
    let withoutControl = try pipe.generate(p, imagePrompts: both)
    #expect(Compare.relativeError(all.latents, withoutControl.latents) > 1e-3)
    // Each generation fused what it needed: the last had the FaceID prompt again.
    let again = try pipe.generate(p, imagePrompts: both, controlNets: [control])
    #expect(try again.latents.scalars() == all.latents.scalars())
  }
}
