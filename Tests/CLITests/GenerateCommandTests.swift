import Foundation
import Imaging
import Testing
import TestSupport
import Weights

/// The `ipadapter generate` / `embed` contract: exact flag names, outputs, exit codes, one-line errors.
@Suite struct GenerateCommandTests {

  @Test func generateWritesTheDiffusersImageWithParameters() throws {
    let out = CLI.temporaryPath("out.png")
    let latents = CLI.temporaryPath("latents.safetensors")
    defer {
      try? FileManager.default.removeItem(atPath: out)
      try? FileManager.default.removeItem(atPath: latents)
    }
    let r = try CLI.run([
      "generate", "--model", CLI.model, "--prompt", "a red cube", "--negative-prompt", "blurry, low quality",
      "--seed", "0", "--steps", "4", "--scheduler", "euler-a", "--output", out, "--save-latents", latents, "--quiet",
    ])
    #expect(r.status == 0, "\(r.stderr)")
    let decoded = try ImageCodec.decode(contentsOfFile: out)
    let golden = try Image(contentsOfFile: Fixtures.url("goldens/sd15-e2e/euler-a.png").path)
    #expect(Compare.closeFraction(decoded.image, golden) >= 0.99)
    #expect(decoded.text(forKey: "parameters")?.contains("Sampler: Euler a, CFG scale: 7.5, Seed: 0") == true)
    let saved = try SafeTensorsFile(path: latents)
    #expect(saved.info("latents")?.storedType == "F32")
    #expect(saved.info("latents")?.shape == [1, 4, 8, 8])
  }

  @Test func generateWithAnIPAdapterMatchesDiffusers() throws {
    let out = CLI.temporaryPath("ip.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run([
      "generate", "--model", CLI.model, "--ip-adapter", "\(CLI.adapters)/ip-adapter-plus_sd15.safetensors",
      "--ip-image", CLI.reference, "--ip-scale", "0.6", "--prompt", "a red cube",
      "--negative-prompt", "blurry, low quality", "--seed", "0", "--steps", "4", "--output", out, "--quiet",
    ])
    #expect(r.status == 0, "\(r.stderr)")
    let golden = try Image(contentsOfFile: Fixtures.url("goldens/ip-adapter-e2e/ip-adapter-plus_sd15.png").path)
    #expect(Compare.closeFraction(try Image(contentsOfFile: out), golden) >= 0.99)
  }

  @Test func embedThenGenerateFromEmbedsGivesTheSameImage() throws {
    let embeds = CLI.temporaryPath("embeds.safetensors")
    let a = CLI.temporaryPath("a.png")
    let b = CLI.temporaryPath("b.png")
    defer { for f in [embeds, a, b] { try? FileManager.default.removeItem(atPath: f) } }
    let adapter = "\(CLI.adapters)/ip-adapter_sd15.safetensors"
    let e = try CLI.run(["embed", "--ip-adapter", adapter, "--ip-image", CLI.reference, "--ip-image", CLI.reference, "--output", embeds])
    #expect(e.status == 0, "\(e.stderr)")
    let file = try SafeTensorsFile(path: embeds)
    #expect(file.info("image_prompt_embeds")?.shape == [1, 8, 20])
    #expect(file.info("uncond_image_prompt_embeds")?.storedType == "F32")
    let common = ["generate", "--model", CLI.model, "--prompt", "x", "--steps", "2", "--seed", "3", "--quiet", "--ip-adapter", adapter]
    let r1 = try CLI.run(common + ["--ip-image", CLI.reference, "--ip-image", CLI.reference, "--output", a])
    let r2 = try CLI.run(common + ["--ip-embeds", embeds, "--output", b])
    #expect(r1.status == 0 && r2.status == 0, "\(r1.stderr) \(r2.stderr)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: a)) == Data(contentsOf: URL(fileURLWithPath: b)))
  }

  @Test func twoAdaptersAreGivenByNumber() throws {
    let out = CLI.temporaryPath("two.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run([
      "generate", "--model", CLI.model, "--prompt", "a red cube", "--negative-prompt", "blurry, low quality",
      "--seed", "0", "--steps", "4", "--output", out, "--quiet",
      "--ip-adapter", "\(CLI.adapters)/ip-adapter_sd15.safetensors", "--ip-adapter", "\(CLI.adapters)/ip-adapter-plus_sd15.safetensors",
      "--ip-image", CLI.reference, "--ip-image", "2=\(Fixtures.url("images/stripes.png").path)",
      "--ip-scale", "0.7", "--ip-scale", "0.3",
    ])
    #expect(r.status == 0, "\(r.stderr)")
    let golden = try Image(contentsOfFile: Fixtures.url("goldens/ip-adapter-e2e/global-and-plus.png").path)
    #expect(Compare.closeFraction(try Image(contentsOfFile: out), golden) >= 0.99)
  }

  /// Each bad input: non-zero exit, exactly one line on stderr starting with `error:`, no output file.
  @Test(arguments: [
    (["--model", "/nonexistent"], "model not found: /nonexistent"),
    (["--model", CLI.model, "--width", "60"], "invalid width: 60 is not a positive multiple of 8"),
    (["--model", CLI.model, "--scheduler", "heun"], "heun"),
    (["--model", CLI.model, "--precision", "fp8"], "--precision"),
    (["--model", CLI.model, "--ip-image", CLI.reference], "--ip-image: needs --ip-adapter"),
    (["--model", CLI.model, "--ip-adapter", "\(CLI.adapters)/ip-adapter_sd15_vit-G.safetensors", "--ip-image", CLI.reference,
      "--image-encoder", "\(CLI.adapters)/image_encoder"], "needs a different image encoder"),
    (["--model", CLI.model, "--ip-adapter", "\(CLI.adapters)/ip-adapter_sd15.safetensors"], "has no --ip-image"),
  ])
  func badInputFailsWithOneLine(arguments: [String], message: String) throws {
    let out = CLI.temporaryPath("bad.png")
    let r = try CLI.run(["generate", "--prompt", "x", "--steps", "1", "--quiet", "--output", out] + arguments)
    #expect(r.status != 0)
    let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: true)
    #expect(lines.count == 1, "\(r.stderr)")
    #expect(r.stderr.hasPrefix("error: "))
    #expect(r.stderr.contains(message), "\(r.stderr)")
    #expect(!FileManager.default.fileExists(atPath: out))
  }

  @Test func unwritableOutputIsRefusedBeforeGenerating() throws {
    let r = try CLI.run(["generate", "--model", CLI.model, "--prompt", "x", "--output", "/nonexistent-dir/out.png", "--quiet"])
    #expect(r.status != 0)
    #expect(r.stderr == "error: --output: directory /nonexistent-dir does not exist\n")
  }
}
