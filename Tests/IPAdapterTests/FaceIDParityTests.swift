import Foundation
import IPAdapter
import Imaging
import Models
import Pipelines
import TensorCore
import Testing
import TestSupport
import Weights

/// The FaceID family against the official tencent-ailab/IP-Adapter classes and diffusers 0.42.1
/// (`tools/reference/gen_faceid.py`, adapters in the h94/IP-Adapter-FaceID layout with a 24-d face
/// embedding). Tolerances: projected tokens relative error ≤ 1e-5 (official code); UNet with the
/// FaceID LoRA ≤ 1e-5; end to end as the other pipelines (final latents ≤ 1e-4, PNG within 1/255
/// on ≥ 99 %).
@Suite struct FaceIDParityTests {
  static let folder = Fixtures.url("faceid")
  static func adapter(_ name: String) -> String { folder.appendingPathComponent(name).path }
  static func reference() throws -> SafeTensorsFile { try Fixtures.archive("faceid/reference.safetensors") }
  static func faces(_ name: String) throws -> Tensor { try FaceEmbeddingFile.read(adapter(name)) }
  static func crop() throws -> Image { try Image(contentsOfFile: adapter("face-crop.png")) }
  static func encoder() throws -> ImagePromptEncoder { try ImagePromptEncoder(folder: IPFixtures.encoderURL) }

  @Test func variantsAreDetectedFromShapes() throws {
    let expected: [(String, IPAdapterVariant)] = [
      ("ip-adapter-faceid_sd15.bin", .faceID(FaceIDShape(idDim: 24, hiddenDim: 48, crossDim: 20, tokens: 4))),
      ("ip-adapter-faceid-portrait_sd15.bin", .faceID(FaceIDShape(idDim: 24, hiddenDim: 48, crossDim: 20, tokens: 16))),
      ("ip-adapter-faceid_sdxl.bin", .faceID(FaceIDShape(idDim: 24, hiddenDim: 48, crossDim: 50, tokens: 4))),
    ]
    for (file, variant) in expected {
      #expect(try IPAdapter(path: Self.adapter(file), unet: nil).variant == variant)
    }
    guard case .faceIDPlus(let f, let p) = try IPAdapter(path: Self.adapter("ip-adapter-faceid-plus_sd15.bin"), unet: nil).variant else {
      Issue.record("FaceID-Plus not detected")
      return
    }
    #expect(f == FaceIDShape(idDim: 24, hiddenDim: 48, crossDim: 20, tokens: 4))
    #expect((p.dim, p.depth, p.heads, p.embeddingDim, p.outputDim, p.ffMult) == (20, 4, 2, 40, 20, 4))
  }

  @Test(arguments: [
    ("ip-adapter-faceid_sd15.bin", "face-a.npy"), ("ip-adapter-faceid_sdxl.bin", "face-a.npy"),
    ("ip-adapter-faceid-portrait_sd15.bin", "faces-3.npy"), ("ip-adapter-faceid-portrait_sdxl.bin", "faces-3.npy"),
  ])
  func faceIDTokensMatchOfficialCode(file: String, faces: String) throws {
    let adapter = try IPAdapter(path: Self.adapter(file), unet: nil)
    let embeds = try ImagePrompt.faceEmbeds(adapter: adapter, faces: try Self.faces(faces))
    let name = (file as NSString).deletingPathExtension
    let r = try Self.reference()
    #expect(Compare.relativeError(embeds.conditional, try r.tensor("\(name)/cond")) <= 1e-5)
    #expect(Compare.relativeError(embeds.unconditional, try r.tensor("\(name)/uncond")) <= 1e-5)
  }

  /// Plus: no shortcut; Plus v2: `x + s·out` with s 1.0 and 0.6 (the unconditional half too).
  @Test(arguments: [
    ("ip-adapter-faceid-plus_sd15", nil, ""), ("ip-adapter-faceid-plusv2_sd15", 1.0, ""),
    ("ip-adapter-faceid-plusv2_sd15", 0.6, "_s0.6"), ("ip-adapter-faceid-plusv2_sdxl", 1.0, ""),
    ("ip-adapter-faceid-plusv2_sdxl", 0.6, "_s0.6"),
  ] as [(String, Float?, String)])
  func faceIDPlusTokensMatchOfficialCode(name: String, shortcut: Float?, suffix: String) throws {
    let adapter = try IPAdapter(path: Self.adapter(name + ".bin"), unet: nil)
    let embeds = try ImagePrompt.faceEmbeds(
      adapter: adapter, faces: try Self.faces("face-a.npy"), encoder: try Self.encoder(), faceImages: [try Self.crop()],
      shortcutScale: shortcut)
    let r = try Self.reference()
    #expect(Compare.relativeError(embeds.conditional, try r.tensor("\(name)/cond\(suffix)")) <= 1e-5)
    #expect(Compare.relativeError(embeds.unconditional, try r.tensor("\(name)/uncond\(suffix)")) <= 1e-5)
  }

  @Test func clipFeaturesOfTheFaceCropMatchTransformers() throws {
    let encoder = try Self.encoder()
    let r = try Self.reference()
    let face = try encoder.features([try Self.crop()], kind: .penultimateHiddenState)
    #expect(Compare.relativeError(face, try r.tensor("clip/face")) <= 1e-5)
    #expect(Compare.relativeError(try encoder.unconditionalFeatures(count: 1, kind: .penultimateHiddenState), try r.tensor("clip/zero")) <= 1e-5)
  }

  /// One UNet step with the adapter (scale 0.8) and its LoRA fused at 1, 0.5 and 0, against
  /// diffusers' PEFT `faceid_0` adapter at those weights.
  @Test(arguments: [(Float(1), "out"), (0.5, "out_lora0.5"), (0, "out_lora0")])
  func unetWithTheFaceIDLoRAMatchesDiffusers(weight: Float, golden: String) throws {
    let pipe = try IPFixtures.pipeline()
    let adapter = try IPAdapter(path: Self.adapter("ip-adapter-faceid_sd15.bin"), unet: pipe.unet)
    let lora = try #require(adapter.faceIDLoRA)
    #expect(lora.layers.count == 4 * 2 * pipe.unet.crossAttentionLayers.count)
    try LoRAFusion.apply([WeightedLoRA(lora, weight: weight)], to: pipe.loraTargets)
    let embeds = try ImagePrompt.faceEmbeds(adapter: adapter, faces: try Self.faces("face-a.npy"))
    let r = try Self.reference()
    var conditioning = try pipe.unet.makeConditioning(encoderHiddenStates: try r.tensor("unet/context"))
    try ImagePrompt(adapter: adapter, embeds: embeds, scale: 0.8).apply(to: &conditioning)
    let out = try pipe.unet(try r.tensor("unet/sample").nhwc(), timestep: 500, conditioning: conditioning)
    #expect(Compare.relativeError(out, try r.tensor("unet/ip-adapter-faceid_sd15/\(golden)").nhwc()) <= 1e-5)
  }

  /// h94's separate `*_lora.safetensors` is the same LoRA in kohya's layout: fusing either gives
  /// the same weights.
  @Test func separateKohyaLoRAFileEqualsTheLoRAInsideTheAdapter() throws {
    let a = try IPFixtures.pipeline()
    let b = try IPFixtures.pipeline()
    let adapter = try IPAdapter(path: Self.adapter("ip-adapter-faceid_sd15.bin"), unet: a.unet)
    let fromBin = try LoRAFusion.apply([WeightedLoRA(try #require(adapter.faceIDLoRA))], to: a.loraTargets)
    let fromFile = try b.applyLoRAs(files: [(Self.adapter("ip-adapter-faceid_sd15_lora.safetensors"), 1)])
    #expect(fromBin.fusedLayers[.unet] == fromFile.fusedLayers[.unet])
    let ta = try #require(a.loraTargets[.unet])
    let tb = try #require(b.loraTargets[.unet])
    let fused = ta.layers.filter { $0.value.weight.unfusedValue != nil }.map { ($0.key, $0.value.weight.value) }
    var compared = 0
    for (path, value) in fused {
      guard let other = tb.layers[path] else {
        Issue.record("\(path) is not a layer of the second pipeline")
        continue
      }
      let difference = Compare.maxAbsDifference(value, other.weight.value)
      #expect(difference == 0, "\(path)")
      compared += 1
    }
    #expect(compared == fromBin.totalFused)
  }

  static func cases() throws -> [String: [String: Any]] {
    let json = try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.url("faceid/reference.json"))) as? [String: Any]
    return json?["cases"] as? [String: [String: Any]] ?? [:]
  }

  /// diffusers' pipelines with `load_ip_adapter(..., image_encoder_folder=None)`, the FaceID LoRA
  /// through PEFT, `ip_adapter_image_embeds` (and `clip_embeds`/`shortcut` for Plus v2).
  @Test(arguments: ["e2e-faceid-sd15", "e2e-faceid-sd15-lora0.5", "e2e-plusv2-sd15", "e2e-portrait-sd15", "e2e-faceid-sdxl"])
  func generationMatchesDiffusers(name: String) throws {
    let c = try #require(try Self.cases()[name])
    let sdxl = (c["model"] as? String) == "sdxl"
    let pipe = try StableDiffusionPipeline(folder: Fixtures.url(sdxl ? "tiny-sdxl" : "tiny-sd15"))
    var p = GenerationParameters(prompt: c["prompt"] as! String)
    p.negativePrompt = c["negative_prompt"] as? String
    p.steps = c["num_inference_steps"] as! Int
    p.guidanceScale = Float(c["guidance_scale"] as! Double)
    p.width = 64
    p.height = 64
    p.seed = 0
    let adapterName = c["adapter"] as! String
    var spec = ImagePromptSpec(adapter: .local(Self.adapter(adapterName + ".bin")), scale: Float(c["ip_adapter_scale"] as! Double))
    spec.faceEmbeddings = try Self.faces(c["face"] as! String)
    spec.faceIDLoRAScale = Float(c["lora_weight"] as? Double ?? 1)
    if c["face_image"] != nil {
      spec.faceImages = [try Self.crop()]
      spec.imageEncoder = .local(IPFixtures.encoderURL.path)
      // Setting the scale turns the v2 shortcut on (SD1.5's default is off).
      spec.faceIDShortcutScale = Float(c["shortcut_scale"] as? Double ?? 1)
    }
    let prompts = try ImagePromptBuilder().build([spec], for: pipe, parameters: p).prompts
    let result = try pipe.generate(p, imagePrompts: prompts)
    let r = try Self.reference()
    #expect(Compare.relativeError(result.latents, try r.tensor("\(name)/latents")) <= 1e-4)
    let png = try Image(contentsOfFile: Self.adapter(c["image"] as! String))
    #expect(Compare.closeFraction(result.image, png) >= 0.99)
  }
}
