import Foundation
import Models
import TensorCore
import Testing
import TestSupport
import Weights

/// Tiled VAE decoding and encoding against diffusers' `AutoencoderKL.enable_tiling()`
/// (`tools/reference/gen_vae_tiling.py` → `Fixtures/tiny-vae-tiling`,
/// `Fixtures/goldens/vae-tiling.safetensors`). The tiny VAE tiles at 48 pixels / 12 latents; the
/// inputs (latents 22×29, image 88×116) leave a short last tile row and a last tile column narrower
/// than the blend extent.
@Suite struct VAETilingParityTests {
  let goldens: SafeTensorsFile
  let vae: AutoencoderKL

  init() throws {
    goldens = try Fixtures.archive("goldens/vae-tiling.safetensors")
    vae = try ModelLoader.vae(Fixtures.url("tiny-vae-tiling"))
  }

  func g(_ key: String) throws -> Tensor { try goldens.tensor(key).nhwc() }

  func defaultTiling() throws -> VAETiling { try VAETiling(config: vae.config) }

  @Test func defaultTilingIsDiffusersEnableTiling() throws {
    let tiling = try defaultTiling()
    // sample_size 48, three blocks: 48 / 2^2 = 12 latents, overlap 0.25.
    #expect(tiling.tileSampleMinSize == 48)
    #expect(tiling.tileLatentMinSize == 12)
    #expect(tiling.overlapFactor == 0.25)
  }

  @Test func tiledDecodeMatchesDiffusers() throws {
    let decoded = try vae.decode(try g("decode.latents"), tiling: try defaultTiling())
    let expected = try g("decode.tiled")
    #expect(decoded.shape == [1, 88, 116, 3])
    #expect(decoded.shape == expected.shape)
    // 12 tiles of a 3-block VAE in fp32, blended: relative error ≤ 1e-4 (observed ~1e-6).
    #expect(Compare.relativeError(decoded, expected) <= 1e-4)
  }

  @Test func tiledEncodeMatchesDiffusersMeanAndLogVariance() throws {
    let dist = try vae.encode(try g("encode.image"), tiling: try defaultTiling())
    let mean = try g("encode.tiled.mean")
    let logvar = try g("encode.tiled.logvar")
    #expect(dist.mean.shape == [1, 22, 29, 4])
    #expect(dist.mean.shape == mean.shape)
    #expect(dist.logVariance.shape == logvar.shape)
    // Observed ~8e-7 for both.
    #expect(Compare.relativeError(dist.mean, mean) <= 1e-4)
    #expect(Compare.relativeError(dist.logVariance, logvar) <= 1e-4)
  }

  /// The untiled results at the same sizes match diffusers too, and differ from the tiled ones by
  /// far more than the parity tolerance: the tiled goldens do test the tiling.
  @Test func untiledPassesMatchDiffusersAndDifferFromTiled() throws {
    let decoded = try vae.decode(try g("decode.latents"), tiling: nil)
    #expect(Compare.relativeError(decoded, try g("decode.untiled")) <= 1e-4)
    #expect(Compare.relativeError(try g("decode.tiled"), try g("decode.untiled")) > 1e-2)
    let dist = try vae.encode(try g("encode.image"), tiling: nil)
    #expect(Compare.relativeError(dist.mean, try g("encode.untiled.mean")) <= 1e-4)
    #expect(Compare.relativeError(dist.logVariance, try g("encode.untiled.logvar")) <= 1e-4)
    #expect(Compare.relativeError(try g("encode.tiled.mean"), try g("encode.untiled.mean")) > 1e-2)
  }

  /// diffusers tiles only latents larger than one tile (`>`): up to 12×12 latents the tiled call
  /// is the untiled one, bit for bit; one latent more on either side tiles.
  @Test(arguments: [(12, 12, false), (12, 7, false), (5, 12, false), (13, 12, true), (12, 13, true)])
  func decodeTilesOnlyAboveTheLatentTileSize(height: Int, width: Int, tiles: Bool) throws {
    let latents = try corner(try g("decode.latents"), height: height, width: width)
    let tiled = try vae.decode(latents, tiling: try defaultTiling())
    let untiled = try vae.decode(latents)
    #expect(tiled.shape == [1, 4 * height, 4 * width, 3])
    #expect(tiled.shape == untiled.shape)
    if tiles {
      #expect(Compare.maxAbsDifference(tiled, untiled) > 1e-3)
    } else {
      #expect(tiled.scalars() == untiled.scalars())
    }
  }

  /// The same rule for encoding, at 48 pixels.
  @Test(arguments: [(48, 48, false), (48, 40, false), (49, 48, true), (48, 52, true)])
  func encodeTilesOnlyAboveTheSampleTileSize(height: Int, width: Int, tiles: Bool) throws {
    let image = try corner(try g("encode.image"), height: height, width: width)
    let tiled = try vae.encode(image, tiling: try defaultTiling())
    let untiled = try vae.encode(image)
    #expect(tiled.mean.shape == untiled.mean.shape)
    if tiles {
      #expect(Compare.maxAbsDifference(tiled.mean, untiled.mean) > 1e-3)
    } else {
      #expect(tiled.mean.scalars() == untiled.mean.scalars())
      #expect(tiled.logVariance.scalars() == untiled.logVariance.scalars())
    }
  }

  @Test func invalidTileSizesAreTypedErrors() {
    #expect(throws: VAETilingError.tileSizeOutOfRange(name: "tileSampleMinSize", value: 0, range: VAETiling.tileSizeRange)) {
      _ = try VAETiling(tileSampleMinSize: 0, tileLatentMinSize: 8)
    }
    #expect(throws: VAETilingError.tileSizeOutOfRange(name: "tileLatentMinSize", value: -4, range: VAETiling.tileSizeRange)) {
      _ = try VAETiling(tileSampleMinSize: 64, tileLatentMinSize: -4)
    }
    #expect(throws: VAETilingError.tileSizeOutOfRange(name: "tileSampleMinSize", value: 1 << 40, range: VAETiling.tileSizeRange)) {
      _ = try VAETiling(tileSampleMinSize: 1 << 40, tileLatentMinSize: 8)
    }
  }

  @Test(arguments: [1.0, -0.25, 1.5, Double.infinity])
  func overlapFactorsOutsideZeroToOneAreTypedErrors(factor: Double) {
    #expect(throws: VAETilingError.overlapFactorOutOfRange(factor)) {
      _ = try VAETiling(tileSampleMinSize: 64, tileLatentMinSize: 8, overlapFactor: factor)
    }
  }

  @Test func nanOverlapFactorIsATypedError() {
    let error = #expect(throws: VAETilingError.self) {
      _ = try VAETiling(tileSampleMinSize: 64, tileLatentMinSize: 8, overlapFactor: .nan)
    }
    guard case .overlapFactorOutOfRange(let f) = error else {
      Issue.record("unexpected \(String(describing: error))")
      return
    }
    #expect(f.isNaN)
  }

  /// int(1 × (1 − 0.5)) = 0: the tiles would not advance.
  @Test func zeroStrideIsATypedError() {
    #expect(throws: VAETilingError.emptyStride(name: "tileLatentMinSize", tileSize: 1, overlapFactor: 0.5)) {
      _ = try VAETiling(tileSampleMinSize: 8, tileLatentMinSize: 1, overlapFactor: 0.5)
    }
  }

  /// With 4 pixels per latent, `sample_size` 3 gives diffusers a latent tile of int(3 / 4) = 0 and
  /// 4 a latent tile of 1 that never advances (int(1 × 0.75) = 0); 8 is the smallest that works.
  @Test func sampleSizeTooSmallForATileIsATypedError() throws {
    var config = vae.config
    config.sampleSize = 3
    let error = #expect(throws: VAETilingError.self) { _ = try VAETiling(config: config) }
    guard case .tileSizeOutOfRange(_, 0, _) = error else {
      Issue.record("unexpected \(String(describing: error))")
      return
    }
    config.sampleSize = 4
    #expect(throws: VAETilingError.emptyStride(name: "tileLatentMinSize", tileSize: 1, overlapFactor: 0.25)) {
      _ = try VAETiling(config: config)
    }
    config.sampleSize = 8
    #expect(try VAETiling(config: config) == VAETiling(tileSampleMinSize: 8, tileLatentMinSize: 2))
  }

  /// Image width 49 with 36-pixel strides leaves a 13-pixel last tile (fine); 73 leaves a 1-pixel
  /// tile, which the encoder's downsampling cannot take (diffusers fails in its convolution).
  @Test func encoderTileTooSmallIsATypedError() throws {
    let image = Tensor.full([1, 48, 73, 3], 0.25)
    #expect(throws: VAETilingError.tileTooSmallToEncode(axis: "x", start: 72, size: 1)) {
      _ = try vae.encode(image, tiling: try defaultTiling())
    }
  }

  /// A list `sample_size` counts by its first entry, as diffusers' `tile_latent_min_size` does.
  @Test func listSampleSizeUsesItsFirstEntry() throws {
    let json = #"{"sample_size": [64, 96], "block_out_channels": [8, 8, 8, 8], "norm_num_groups": 4, "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]}"#
    let config = try JSONDecoder().decode(AutoencoderKLConfig.self, from: Data(json.utf8))
    #expect(config.sampleSize == 64)
    #expect(try VAETiling(config: config).tileLatentMinSize == 8)
  }
}

/// The top-left `height × width` corner of an NHWC tensor.
private func corner(_ tensor: Tensor, height: Int, width: Int) throws -> Tensor {
  let (n, h, w, c) = (tensor.shape[0], tensor.shape[1], tensor.shape[2], tensor.shape[3])
  let values = tensor.scalars()
  var out: [Float] = []
  for b in 0..<n {
    for y in 0..<height {
      let start = ((b * h + y) * w) * c
      out += values[start..<(start + width * c)]
    }
  }
  return try Tensor(shape: [n, height, width, c], floats: out)
}
