import Foundation
import Imaging
import Testing
import TestSupport
import TensorCore
import Weights

/// `ipadapter generate --lora FILE[:WEIGHT]` (repeatable) and `--lora-ignore-unmatched`.
@Suite struct LoRACommandTests {
  static let folder = Fixtures.url("lora").path
  static let common = [
    "generate", "--prompt", "a red cube", "--negative-prompt", "blurry", "--steps", "3", "--seed", "0",
    "--width", "64", "--height", "64", "--guidance-scale", "7.5", "--quiet",
  ]

  @Test func twoLoRAsWithWeightsMatchDiffusersAndAreRecorded() throws {
    let out = CLI.temporaryPath("lora.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run(
      Self.common + ["--model", CLI.model, "--lora", "\(Self.folder)/sd15-kohya.safetensors:0.8",
                     "--lora", "\(Self.folder)/sd15-locon.safetensors:-0.5", "--output", out])
    #expect(r.status == 0, "\(r.stderr)")
    let decoded = try ImageCodec.decode(contentsOfFile: out)
    let golden = try Image(contentsOfFile: "\(Self.folder)/e2e-sd15-two.png")
    #expect(Compare.closeFraction(decoded.image, golden) >= 0.99)
    let text = decoded.text(forKey: "parameters") ?? ""
    #expect(text.hasPrefix("a red cube <lora:sd15-kohya:0.8> <lora:sd15-locon:-0.5>\n"), "\(text)")
    #expect(text.contains("Lora hashes: \"sd15-kohya: "), "\(text)")
  }

  @Test func sdxlKohyaLoRAWithSGMNamesMatchesDiffusers() throws {
    let out = CLI.temporaryPath("lora-xl.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run(
      Self.common + ["--model", Fixtures.url("tiny-sdxl").path, "--lora", "\(Self.folder)/sdxl-kohya.safetensors:0.7", "--output", out])
    #expect(r.status == 0, "\(r.stderr)")
    let golden = try Image(contentsOfFile: "\(Self.folder)/e2e-sdxl-kohya.png")
    #expect(Compare.closeFraction(try Image(contentsOfFile: out), golden) >= 0.99)
  }

  @Test func unmatchedLayersCanBeSkippedWithAWarning() throws {
    let out = CLI.temporaryPath("lora-skip.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    // The SDXL text_encoder_2 layers do not exist in SD1.5; the file's SD1.5-shaped layers would
    // not fit either, so use a file whose only extra is an unknown key.
    let extra = CLI.temporaryPath("extra.safetensors")
    defer { try? FileManager.default.removeItem(atPath: extra) }
    var tensors: [String: Tensor] = [:]
    let source = try SafeTensorsFile(path: "\(Self.folder)/sd15-kohya.safetensors")
    for key in source.keys { tensors[key] = try source.tensor(key).toFloat32() }
    let sample = String(source.keys.first { $0.hasSuffix(".lora_down.weight") }!.dropLast(".lora_down.weight".count))
    tensors["lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight"] = try source.tensor(sample + ".lora_down.weight").toFloat32()
    tensors["lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight"] = try source.tensor(sample + ".lora_up.weight").toFloat32()
    try SafeTensorsWriter(tensors).write(to: extra)
    let refused = try CLI.run(Self.common + ["--model", CLI.model, "--lora", extra, "--output", out])
    #expect(refused.status != 0)
    #expect(refused.stderr.contains("match no layer of this model"), "\(refused.stderr)")
    let r = try CLI.run(Self.common + ["--model", CLI.model, "--lora", extra, "--lora-ignore-unmatched", "--output", out])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stderr.contains("1 LoRA layer(s) match no layer of the model and were skipped"), "\(r.stderr)")
  }

  @Test(arguments: [
    (["--lora", "/nonexistent.safetensors"], "--lora: file not found: /nonexistent.safetensors"),
    (["--lora", "SDXL"], "it is an SDXL LoRA and this is not an SDXL model"),
    (["--lora", "KOHYA:inf"], "not a finite number"),
    (["--lora", "UNET"], "is not a LoRA file"),
  ])
  func badLoRAsFailWithOneLine(arguments: [String], message: String) throws {
    let args = arguments.map { a -> String in
      switch a {
      case "SDXL": return "\(Self.folder)/sdxl-kohya.safetensors"
      case "KOHYA:inf": return "\(Self.folder)/sd15-kohya.safetensors:inf"
      case "UNET": return Fixtures.url("tiny-sd15/unet/diffusion_pytorch_model.safetensors").path
      default: return a
      }
    }
    let out = CLI.temporaryPath("bad.png")
    let r = try CLI.run(Self.common + ["--model", CLI.model, "--output", out] + args)
    #expect(r.status != 0)
    #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
    #expect(r.stderr.hasPrefix("error: "))
    #expect(r.stderr.contains(message), "\(r.stderr)")
    #expect(!FileManager.default.fileExists(atPath: out))
  }
}
