import Foundation
import Imaging
import Models
import Pipelines
import TensorCore
import Testing
import TestSupport
import Weights

/// LoRA fusion against diffusers 0.42.1 `load_lora_weights` + `set_adapters` + `fuse_lora`
/// (`tools/reference/gen_lora.py`) for every layout users have: kohya/A1111 with per-module
/// `.alpha` (and without), LoCon convolutions, PEFT with diffusers' `lora_adapter_metadata`,
/// the legacy diffusers `lora.down`/`lora_linear_layer` and attention-processor layouts, SDXL's
/// kohya SGM block names with `lora_te1_`/`lora_te2_`, and two LoRAs at once. kohya scales are
/// alpha / rank per module (kohya, AUTOMATIC1111, ComfyUI; the references feed diffusers the scale
/// baked into `lora_up` because its kohya converter applies the most common alpha to attention
/// modules). Tolerances: fused weights relative error ≤ 1e-6; UNet and text-encoder outputs ≤ 1e-5;
/// end to end as the other pipelines (latents ≤ 1e-4, PNG within 1/255 on ≥ 99 %).
@Suite struct LoRAParityTests {
  static let folder = Fixtures.url("lora")
  static func reference() throws -> SafeTensorsFile { try Fixtures.archive("lora/reference.safetensors") }
  static func json() throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.url("lora/reference.json"))) as! [String: Any]
  }
  static func pipeline(_ family: String) throws -> StableDiffusionPipeline {
    try StableDiffusionPipeline(folder: Fixtures.url(family == "sdxl" ? "tiny-sdxl" : "tiny-sd15"))
  }
  static func files(_ c: [String: Any]) -> [(path: String, weight: Float)] {
    (c["loras"] as! [[String: Any]]).map { (folder.appendingPathComponent($0["file"] as! String).path, Float($0["weight"] as! Double)) }
  }
  static func component(_ name: String) -> LoRAComponent { LoRAComponent(rawValue: name)! }
  static func ids(_ r: SafeTensorsFile, _ key: String) throws -> [Int] { try r.tensor(key).scalars().map { Int($0) } }

  static let cases = [
    "sd15-kohya", "sd15-locon", "sd15-peft", "sd15-old", "sd15-old-attnproc", "sd15-two", "sdxl-kohya", "sdxl-peft", "sdxl-two",
  ]

  @Test(arguments: cases)
  func fusedWeightsAndOutputsMatchDiffusers(name: String) throws {
    let c = try #require((try Self.json()["cases"] as? [String: [String: Any]])?[name])
    let family = c["family"] as! String
    let pipe = try Self.pipeline(family)
    let report = try pipe.applyLoRAs(files: Self.files(c))
    let targets = pipe.loraTargets
    // Exactly the layers diffusers changed.
    let changed = c["changed"] as! [String: [String]]
    for (componentName, keys) in changed {
      let table = try #require(targets[Self.component(componentName)])
      let ours = Set(table.layers.values.filter { $0.weight.unfusedValue != nil }.map { LoRATargetTable.normalized($0.path) + ".weight" })
      let theirs = Set(keys.map { LoRATargetTable.normalized($0) })
      #expect(ours == theirs, "\(name) \(componentName): only ours \(ours.subtracting(theirs).sorted().prefix(5)), only diffusers' \(theirs.subtracting(ours).sorted().prefix(5))")
    }
    #expect(report.totalFused == changed.values.reduce(0) { $0 + $1.count })
    #expect(report.totalUnmatched == 0)
    let r = try Self.reference()
    for key in c["params"] as! [String] {
      let parts = key.split(separator: "/", maxSplits: 3).map(String.init)  // case, "param", component, key
      let table = try #require(targets[Self.component(parts[2])])
      let path = LoRATargetTable.normalized(String(parts[3].dropLast(".weight".count)))
      let layer = try #require(table.layers[path], "\(path)")
      #expect(Compare.relativeError(layer.weight.value.asFloat32(), try r.tensor(key)) <= 1e-6, "\(key)")
    }
    // The fused models' outputs.
    let prefix = family
    var conditioning = try pipe.unet.makeConditioning(encoderHiddenStates: try r.tensor("\(prefix)/encoder_hidden_states"))
    if family == "sdxl" {
      conditioning = try pipe.unet.makeConditioning(
        encoderHiddenStates: try r.tensor("\(prefix)/encoder_hidden_states"),
        textTime: TextTimeConditions(textEmbeds: try r.tensor("sdxl/text_embeds"), timeIds: [try r.tensor("sdxl/time_ids").scalars()]))
    }
    let t = try r.tensor("\(prefix)/timestep").scalars()[0]
    let out = try pipe.unet(try r.tensor("\(prefix)/sample").nhwc(), timestep: t, conditioning: conditioning)
    #expect(Compare.relativeError(out, try r.tensor("\(name)/unet_out").nhwc()) <= 1e-5, "\(name) unet")
    let ids = try Self.ids(r, "\(prefix)/input_ids")
    let encoder = try #require(pipe.textEncoder)
    let hidden = try encoder([ids]).lastHiddenState
    #expect(Compare.relativeError(hidden, try r.tensor("\(name)/text_hidden")) <= 1e-5, "\(name) text encoder")
    if let xl = pipe.sdxl {
      let ids2 = try Self.ids(r, "sdxl/input_ids_2")
      let out2 = try xl.textEncoder2([ids2], keepHiddenStates: true)
      #expect(Compare.relativeError(out2.hiddenStates[out2.hiddenStates.count - 2], try r.tensor("\(name)/text2_hidden")) <= 1e-5)
      let embeds = try xl.textEncoder2.textEmbeds(lastHiddenState: out2.lastHiddenState, ids: [ids2])
      #expect(Compare.relativeError(embeds, try r.tensor("\(name)/text2_embeds")) <= 1e-5)
    }
  }

  /// The base model's outputs are not the fused ones (the references are discriminating).
  @Test func referencesDifferFromTheBaseModel() throws {
    let r = try Self.reference()
    for name in Self.cases {
      let base = name.hasPrefix("sdxl") ? "base-sdxl" : "base-sd15"
      #expect(Compare.relativeError(try r.tensor("\(name)/unet_out"), try r.tensor("\(base)/unet_out")) > 1e-3, "\(name)")
    }
  }

  @Test(arguments: [("e2e-sd15-two", "sd15", "sd15-two"), ("e2e-sdxl-kohya", "sdxl", "sdxl-kohya")])
  func generationWithFusedLoRAsMatchesDiffusers(golden: String, family: String, name: String) throws {
    let c = try #require((try Self.json()["cases"] as? [String: [String: Any]])?[name])
    let pipe = try Self.pipeline(family)
    try pipe.applyLoRAs(files: Self.files(c))
    var p = GenerationParameters(prompt: "a red cube")
    p.negativePrompt = "blurry"
    p.steps = 3
    p.seed = 0
    p.width = 64
    p.height = 64
    p.guidanceScale = 7.5
    let result = try pipe.generate(p)
    #expect(Compare.relativeError(result.latents, try Self.reference().tensor("\(golden)/latents")) <= 1e-4)
    #expect(Compare.closeFraction(result.image, try Image(contentsOfFile: Self.folder.appendingPathComponent("\(golden).png").path)) >= 0.99)
    let files = Self.files(c).map { (($0.path as NSString).lastPathComponent as NSString).deletingPathExtension }
    for f in files { #expect(result.parametersText.contains("<lora:\(f):"), "\(result.parametersText)") }
    #expect(result.parametersText.contains("Lora hashes: \"\(files[0]): "))
  }
}
