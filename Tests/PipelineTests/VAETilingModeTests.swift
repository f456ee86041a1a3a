import Foundation
import Imaging
import Models
import Pipelines
import TensorCore
import Testing
import TestSupport

/// `GenerationOptions.vaeTiling` on the tiny SD1.5 pipeline, whose VAE tiles at 64 pixels
/// (sample_size 64, 8 latents): when each mode tiles, and that the decode and the image-to-image
/// encode go through the tiled VAE. Parity of the tiling itself: `ModelTests/VAETilingParityTests`.
@Suite struct VAETilingModeTests {
  let pipe: StableDiffusionPipeline

  init() throws { pipe = try StableDiffusionPipeline(folder: Fixtures.url("tiny-sd15")) }

  func parameters(width: Int, height: Int) -> GenerationParameters {
    var p = GenerationParameters(prompt: "a red cube")
    p.steps = 2
    p.seed = 3
    p.width = width
    p.height = height
    return p
  }

  @Test func modesPickDiffusersDefaultTilingWhenTheyTile() throws {
    let tiling = try VAETiling(config: pipe.vae.config)
    #expect(tiling == (try VAETiling(tileSampleMinSize: 64, tileLatentMinSize: 8, overlapFactor: 0.25)))
    #expect(try VAETilingMode.off.tiling(for: pipe.vae, width: 8192, height: 8192) == nil)
    #expect(try VAETilingMode.on.tiling(for: pipe.vae, width: 64, height: 64) == tiling)
    #expect(try VAETilingMode.auto.tiling(for: pipe.vae, width: 2048, height: 2048) == nil)
    #expect(try VAETilingMode.auto.tiling(for: pipe.vae, width: 4096, height: 1024) == nil)
    #expect(try VAETilingMode.auto.tiling(for: pipe.vae, width: 2056, height: 2048) == tiling)
  }

  /// At 64×64 the latents are one tile (8 ≤ 8): `.on` is the untiled result, bit for bit.
  @Test func tilingOnAtOneTileIsTheUntiledResult() throws {
    let p = parameters(width: 64, height: 64)
    let off = try pipe.generate(p)
    let on = try pipe.generate(p, options: GenerationOptions(vaeTiling: .on))
    #expect(on.latents.scalars() == off.latents.scalars())
    #expect(on.image.pixels == off.image.pixels)
  }

  /// At 96×80 (latents 12×10) `.on` decodes in tiles: the same latents, a different image, which is
  /// `decode(_:vaeTiling: .on)` of those latents.
  @Test func tilingOnAboveOneTileDecodesInTiles() throws {
    let p = parameters(width: 96, height: 80)
    let off = try pipe.generate(p)
    let on = try pipe.generate(p, options: GenerationOptions(vaeTiling: .on))
    #expect(on.latents.scalars() == off.latents.scalars())
    #expect(on.image.width == 96 && on.image.height == 80)
    #expect(on.image.pixels != off.image.pixels)
    #expect(try pipe.decode(on.latents, vaeTiling: .on).pixels == on.image.pixels)
    #expect(try pipe.decode(on.latents).pixels == off.image.pixels)
    let auto = try pipe.generate(p, options: GenerationOptions(vaeTiling: .auto))
    #expect(auto.image.pixels == off.image.pixels)
  }

  /// Image-to-image at 96×80 encodes the init image in tiles: the starting latents, hence the
  /// final ones, differ from the untiled run.
  @Test func imageToImageEncodesInTiles() throws {
    var p = parameters(width: 96, height: 80)
    p.initImage = try Image(contentsOfFile: Fixtures.url("images/init-72x56.png").path)
    p.strength = 0.5
    let off = try pipe.generate(p)
    let on = try pipe.generate(p, options: GenerationOptions(vaeTiling: .on))
    #expect(on.latents.shape == off.latents.shape)
    #expect(Compare.maxAbsDifference(on.latents, off.latents) > 1e-3)
  }
}
