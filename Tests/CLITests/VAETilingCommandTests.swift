import Foundation
import Imaging
import Testing
import TestSupport

/// `ipadapter generate --vae-tiling`.
@Suite struct VAETilingCommandTests {
  /// At the tiny model's 64×64 the latents are one VAE tile: the flag is accepted and the image is
  /// diffusers' untiled one (within 1/255 on ≥ 99 % of the values).
  @Test func vaeTilingAtOneTileGivesTheDiffusersImage() throws {
    let out = CLI.temporaryPath("tiled.png")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try CLI.run([
      "generate", "--model", CLI.model, "--prompt", "a red cube", "--negative-prompt", "blurry, low quality",
      "--seed", "0", "--steps", "4", "--scheduler", "euler-a", "--vae-tiling", "--output", out, "--quiet",
    ])
    #expect(r.status == 0, "\(r.stderr)")
    let golden = try Image(contentsOfFile: Fixtures.url("goldens/sd15-e2e/euler-a.png").path)
    #expect(Compare.closeFraction(try Image(contentsOfFile: out), golden) >= 0.99)
  }

  @Test func helpDescribesVAETiling() throws {
    let r = try CLI.run(["generate", "--help"])
    #expect(r.status == 0)
    #expect(r.stdout.contains("--vae-tiling"))
    #expect(r.stdout.contains("enable_vae_tiling"))
  }
}
