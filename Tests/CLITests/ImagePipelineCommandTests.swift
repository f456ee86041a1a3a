import Foundation
import Imaging
import Testing
import TestSupport

/// `generate` with --init-image / --mask / --controlnet (issue #6 CLI contract).
@Suite struct ImagePipelineCommandTests {
  static let images = Fixtures.url("images").path
  static let goldens = Fixtures.url("goldens/pipelines")


  func generate(_ extra: [String], golden: String, model: String = CLI.model) throws {
    let out = CLI.temporaryPath("\(golden).png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run(
      ["generate", "--model", model, "--prompt", "a red cube", "--negative-prompt", "blurry, low quality", "--seed", "0",
       "--quiet", "--output", out] + extra)
    #expect(r.status == 0, "\(r.stderr)")
    let reference = try Image(contentsOfFile: Self.goldens.appendingPathComponent("\(golden).png").path)
    #expect(Compare.closeFraction(try Image(contentsOfFile: out), reference) >= 0.99)
  }

  @Test func imageToImageMatchesDiffusers() throws {
    try generate(
      ["--init-image", "\(Self.images)/init-72x56.png", "--strength", "0.5", "--steps", "4", "--scheduler", "ddim"],
      golden: "img2img-ddim-0.5")
  }

  @Test func inpaintingWithANineChannelModelMatchesDiffusers() throws {
    try generate(
      ["--init-image", "\(Self.images)/init-64.png", "--mask", "\(Self.images)/mask-64.png", "--steps", "4", "--scheduler", "ddim"],
      golden: "inpaint9-ddim-1.0", model: Fixtures.url("tiny-sd15-inpainting").path)
  }

  @Test func controlNetMatchesDiffusers() throws {
    try generate(
      ["--controlnet", Fixtures.url("tiny-controlnet").path, "--control-image", "\(Self.images)/control-64.png",
       "--control-scale", "0.8", "--steps", "4", "--scheduler", "ddim"],
      golden: "controlnet-single")
  }

  @Test func blurredMaskInpaintingMatchesDiffusersAndIsRecorded() throws {
    let args = [
      "--init-image", "\(Self.images)/init-64.png", "--mask", "\(Self.images)/mask-64.png", "--mask-blur", "6",
      "--steps", "3", "--scheduler", "ddim", "--width", "64", "--height", "64",
    ]
    try generate(args, golden: "inpaint4-ddim-mask-blur")
    let out = CLI.temporaryPath("blur.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run(["generate", "--model", CLI.model, "--prompt", "x", "--quiet", "--output", out] + args)
    #expect(r.status == 0, "\(r.stderr)")
    let text = try ImageCodec.decode(contentsOfFile: out).text(forKey: "parameters")
    #expect(text?.contains("Mask blur: 6.0") == true, "\(text ?? "")")
  }

  @Test func mismatchedMaskIsResizedWithAWarning() throws {
    let out = CLI.temporaryPath("inpaint.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run([
      "generate", "--model", CLI.model, "--prompt", "x", "--steps", "2", "--quiet", "--output", out,
      "--init-image", "\(Self.images)/init-64.png", "--mask", "\(Self.images)/mask-48x40.png",
    ])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stderr.contains("warning: --mask is 48×40 but --init-image is 64×64"))
  }

  @Test func cannyPreprocessingRuns() throws {
    let out = CLI.temporaryPath("canny.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run([
      "generate", "--model", CLI.model, "--prompt", "x", "--steps", "2", "--quiet", "--output", out,
      "--controlnet", Fixtures.url("tiny-controlnet").path, "--control-image", CLI.reference,
      "--control-preprocess", "canny", "--canny-low", "50", "--canny-high", "150",
    ])
    #expect(r.status == 0, "\(r.stderr)")
    let text = try ImageCodec.decode(contentsOfFile: out).text(forKey: "parameters")
    #expect(text?.contains("ControlNet: tiny-controlnet (1.0)") == true)
  }

  @Test(arguments: [
    (["--mask", "\(images)/mask-64.png"], "--mask: needs --init-image"),
    (["--strength", "0.5"], "--strength: needs --init-image"),
    (["--init-image", "\(images)/init-64.png", "--mask-blur", "4"], "--mask-blur: needs --mask"),
    (["--init-image", "\(images)/init-64.png", "--mask", "\(images)/mask-64.png", "--mask-blur=-1"], "--mask-blur: -1.0 must be ≥ 0"),
    (["--init-image", "\(images)/init-64.png", "--strength", "1.5"], "must be in (0, 1]"),
    (["--init-image", "\(images)/init-64.png", "--latents", "\(images)/../goldens/sd15-e2e/input-latents.safetensors"], "cannot be combined with --init-image"),
    (["--controlnet", Fixtures.url("tiny-controlnet").path], "--control-image: give one per --controlnet"),
    (["--controlnet", Fixtures.url("tiny-controlnet").path, "--control-image", "/nope.png"], "file not found: /nope.png"),
    (["--controlnet", Fixtures.url("tiny-controlnet-wrong-dim").path, "--control-image", "\(images)/control-64.png"], "cross"),
  ])
  func badInputFailsWithOneLine(arguments: [String], message: String) throws {
    let out = CLI.temporaryPath("bad.png")
    let r = try CLI.run(["generate", "--model", CLI.model, "--prompt", "x", "--steps", "1", "--quiet", "--output", out] + arguments)
    #expect(r.status != 0)
    #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
    #expect(r.stderr.contains(message), "\(r.stderr)")
    #expect(!FileManager.default.fileExists(atPath: out))
  }
}

/// `--model FILE` (single-file LDM checkpoints) and `--vae FILE` (issue #8).
@Suite struct SingleFileCommandTests {
  @Test func singleFileCheckpointWithAnIPAdapterGivesTheFolderImage() throws {
    let a = CLI.temporaryPath("folder.png")
    let b = CLI.temporaryPath("file.png")
    defer { for f in [a, b] { try? FileManager.default.removeItem(atPath: f) } }
    let common = [
      "generate", "--prompt", "a red cube", "--seed", "0", "--steps", "2", "--quiet",
      "--ip-adapter", "\(CLI.adapters)/ip-adapter-plus_sd15.safetensors", "--ip-image", CLI.reference,
    ]
    let r1 = try CLI.run(common + ["--model", CLI.model, "--output", a])
    let r2 = try CLI.run(
      common + ["--model", Fixtures.url("single-file/tiny-sd15.safetensors").path, "--model-config", CLI.model, "--output", b])
    #expect(r1.status == 0 && r2.status == 0, "\(r1.stderr) \(r2.stderr)")
    #expect(try Image(contentsOfFile: a).pixels == Image(contentsOfFile: b).pixels)
    let text = try ImageCodec.decode(contentsOfFile: b).text(forKey: "parameters")
    #expect(text?.contains("Model: tiny-sd15,") == true)
  }

  @Test func vaeFileReplacesTheVAE() throws {
    let out = CLI.temporaryPath("vae.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run([
      "generate", "--model", CLI.model, "--prompt", "x", "--steps", "1", "--quiet", "--output", out,
      "--vae", Fixtures.url("single-file/tiny-vae-ldm.safetensors").path,
    ])
    #expect(r.status == 0, "\(r.stderr)")
  }
}
