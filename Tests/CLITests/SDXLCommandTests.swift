import Foundation
import Imaging
import Testing
import TestSupport

/// `ipadapter generate` on an SDXL folder: the same command and flags, the SDXL defaults
/// (guidance 5.0), the SDXL flags, the h94 encoder rule for `sdxl_models/*_vit-h` adapters, and
/// one-line errors for SDXL misuse. Images must match diffusers' (`goldens/sdxl`) on ≥ 99 % of
/// values within 1/255.
@Suite struct SDXLCommandTests {
  static let model = Fixtures.url("tiny-sdxl").path
  static let sdxlAdapters = Fixtures.url("tiny-ip-adapter/sdxl_models").path

  static func fixture(_ path: String) -> String { Fixtures.url(path).path }

  func generate(_ extra: [String], golden: String, model: String = model, steps: Int = 4) throws -> String {
    let out = CLI.temporaryPath("sdxl.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run(
      ["generate", "--model", model, "--prompt", "a red cube", "--seed", "0", "--steps", "\(steps)", "--width", "64",
       "--height", "48", "--output", out, "--quiet"] + extra)
    #expect(r.status == 0, "\(r.stderr)")
    let decoded = try ImageCodec.decode(contentsOfFile: out)
    let png = try Image(contentsOfFile: Fixtures.url("goldens/sdxl/\(golden).png").path)
    #expect(Compare.closeFraction(decoded.image, png) >= 0.99)
    return decoded.text(forKey: "parameters") ?? ""
  }

  @Test func sdxlFolderGeneratesWithTheSDXLDefaults() throws {
    let parameters = try generate(["--negative-prompt", "blurry, low quality"], golden: "t2i-default")
    #expect(parameters.contains("Sampler: Euler, CFG scale: 5.0, Seed: 0, Size: 64x48, Model: tiny-sdxl"), "\(parameters)")
  }

  @Test func sdxlFlagsReachThePipeline() throws {
    let parameters = try generate(
      ["--negative-prompt", "blurry, low quality", "--original-size", "80x96", "--crop-top-left", "8,4",
       "--target-size", "56x40", "--negative-original-size", "40x32", "--negative-target-size", "64x48",
       "--negative-crop-top-left", "2,6"], golden: "t2i-micro")
    #expect(parameters.contains("Original size: 80x96, Target size: 56x40, Crop top-left: 8,4"), "\(parameters)")
    _ = try generate(
      ["--negative-prompt", "blurry, low quality", "--prompt-2", "a blue sphere", "--negative-prompt-2", "ugly"],
      golden: "t2i-prompt2")
    _ = try generate([], golden: "t2i-force-zeros")
    _ = try generate(["--negative-prompt", "blurry, low quality", "--guidance-rescale", "0.7"], golden: "t2i-rescale")
  }

  @Test func vitHAdapterInSDXLModelsUsesTheModelsEncoder() throws {
    _ = try generate(
      ["--negative-prompt", "blurry, low quality", "--ip-adapter", "\(Self.sdxlAdapters)/ip-adapter-plus_sdxl_vit-h.safetensors",
       "--ip-image", CLI.reference, "--ip-scale", "0.5"], golden: "ip-ip-adapter-plus_sdxl_vit-h")
  }

  @Test func sdxlInpaintingAndControlNetRunThroughTheSameCommand() throws {
    let inpaint = try generate(
      ["--negative-prompt", "blurry, low quality", "--init-image", Self.fixture("images/init-64.png"), "--mask",
       Self.fixture("images/mask-64.png")], golden: "inpaint-default", steps: 5)
    #expect(inpaint.contains("CFG scale: 7.5") && inpaint.contains("Denoising strength: 0.9999"), "\(inpaint)")
    let control = try generate(
      ["--negative-prompt", "blurry, low quality", "--controlnet", Self.fixture("tiny-sdxl-controlnet"), "--control-image",
       Self.fixture("images/control-64.png"), "--control-scale", "0.8", "--scheduler", "ddim"], golden: "controlnet")
    #expect(control.contains("ControlNet: tiny-sdxl-controlnet (0.8)"), "\(control)")
  }

  @Test func sdxlSingleFileCheckpointGeneratesWithItsConfigs() throws {
    let out = CLI.temporaryPath("single.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run(
      ["generate", "--model", Self.fixture("single-file/tiny-sdxl.safetensors"), "--model-config",
       Self.fixture("single-file/tiny-sdxl-configs"), "--prompt", "a red cube", "--negative-prompt", "blurry, low quality",
       "--seed", "0", "--steps", "4", "--width", "64", "--height", "48", "--output", out, "--quiet"])
    #expect(r.status == 0, "\(r.stderr)")
    let decoded = try ImageCodec.decode(contentsOfFile: out)
    let png = try Image(contentsOfFile: Fixtures.url("single-file/sdxl-t2i.png").path)
    #expect(Compare.closeFraction(decoded.image, png) >= 0.99)
    #expect(decoded.text(forKey: "parameters")?.contains("Model: tiny-sdxl") == true)
  }

  /// diffusers' "ensemble of expert denoisers": the base stops at 0.7 and saves its latents, the
  /// refiner continues from them.
  @Test func baseToRefinerHandOffThroughLatentFiles() throws {
    let latents = CLI.temporaryPath("handoff.safetensors")
    defer { try? FileManager.default.removeItem(atPath: latents) }
    let out = CLI.temporaryPath("base.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let base = try CLI.run(
      ["generate", "--model", Self.model, "--prompt", "a red cube", "--seed", "0", "--steps", "8", "--width", "64",
       "--height", "48", "--output", out, "--quiet", "--negative-prompt", "blurry, low quality", "--denoising-end", "0.7",
       "--save-latents", latents])
    #expect(base.status == 0, "\(base.stderr)")
    let parameters = try generate(
      ["--negative-prompt", "blurry, low quality", "--init-latents", latents, "--denoising-start", "0.7"],
      golden: "handoff-refiner", model: Self.fixture("tiny-sdxl-refiner"), steps: 8)
    #expect(parameters.contains("Denoising start: 0.7, Init latents: given"), "\(parameters)")
  }

  @Test(arguments: [
    (["--model", fixture("tiny-sdxl-refiner")], "is an SDXL refiner (image-to-image only)"),
    (["--model", model, "--aesthetic-score", "7"], "only conditions an SDXL refiner"),
    (["--model", model, "--controlnet", fixture("tiny-controlnet"), "--control-image", fixture("images/control-64.png")],
     "cross_attention_dim is 20 but the UNet's is 50"),
    (["--model", model, "--init-latents", fixture("images/init-64.png")], "init-64.png: header length"),
    (["--model", model, "--ip-adapter", "\(CLI.adapters)/ip-adapter_sd15.safetensors", "--ip-image", CLI.reference], "ip-adapter_sd15.safetensors"),
    (["--model", CLI.model, "--prompt-2", "y"], "invalid prompt 2: is an SDXL option"),
    (["--model", model, "--original-size", "80"], "--original-size"),
    (["--model", model, "--crop-top-left", "1;2"], "--crop-top-left"),
    (["--model", model, "--width", "60"], "invalid width: 60 is not a positive multiple of 8"),
    (["--model", model, "--guidance-rescale", "1.5"], "guidance rescale"),
    (["--model", model, "--denoising-end", "1"], "denoising end"),
    (["--model", model, "--variant", "../fp16"], "invalid weights variant '../fp16'"),
  ])
  func sdxlMisuseFailsWithOneLine(arguments: [String], message: String) throws {
    let out = CLI.temporaryPath("bad.png")
    let r = try CLI.run(["generate", "--prompt", "x", "--steps", "1", "--quiet", "--output", out] + arguments)
    #expect(r.status != 0)
    #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
    #expect(r.stderr.hasPrefix("error: ") && r.stderr.contains(message), "\(r.stderr)")
    #expect(!FileManager.default.fileExists(atPath: out))
  }

  @Test func sdxlFolderWithoutTheSecondTextEncoderIsRefused() throws {
    let copy = try Fixtures.linkedCopy(of: "tiny-sdxl", excluding: ["text_encoder_2"])
    defer { try? FileManager.default.removeItem(at: copy) }
    let out = CLI.temporaryPath("bad.png")
    let r = try CLI.run(["generate", "--model", copy.path, "--prompt", "x", "--steps", "1", "--quiet", "--output", out])
    #expect(r.status != 0)
    #expect(r.stderr.contains("has no 'text_encoder_2' folder"), "\(r.stderr)")
  }
}
