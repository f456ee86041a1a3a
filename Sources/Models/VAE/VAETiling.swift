import NN
import TensorCore

/// Why tiled VAE settings or a tiled pass were refused.
public enum VAETilingError: Error, CustomStringConvertible, Equatable, Sendable {
  /// A tile size outside `range` (diffusers' defaults come from `sample_size`: a `sample_size`
  /// smaller than the pixels per latent gives a latent tile size of 0).
  case tileSizeOutOfRange(name: String, value: Int, range: ClosedRange<Int>)
  /// An overlap factor that is not a finite number in [0, 1).
  case overlapFactorOutOfRange(Double)
  /// `int(tileSize × (1 − overlapFactor))` is 0: the tiles would not advance.
  case emptyStride(name: String, tileSize: Int, overlapFactor: Double)
  /// An encoder tile too small for the encoder's downsampling (diffusers fails the same way, in
  /// its convolution).
  case tileTooSmallToEncode(axis: String, start: Int, size: Int)
  /// A tile came out of the encoder or decoder with another shape than the tiling expected.
  case unexpectedTileShape(expected: [Int], actual: [Int])

  public var description: String {
    switch self {
    case .tileSizeOutOfRange(let name, let value, let range):
      "VAE tiling: \(name) is \(value), it must be in \(range.lowerBound)...\(range.upperBound)"
    case .overlapFactorOutOfRange(let f):
      "VAE tiling: the overlap factor \(f) must be a finite number in [0, 1) (diffusers' default: 0.25)"
    case .emptyStride(let name, let size, let f):
      "VAE tiling: int(\(name) \(size) × (1 − \(f))) is 0, so the tiles would not advance; raise \(name) or lower the overlap factor"
    case .tileTooSmallToEncode(let axis, let start, let size):
      "VAE tiling: the encoder tile at \(axis) \(start) is only \(size) pixels, too small for the encoder's downsampling; choose an image \(axis == "y" ? "height" : "width") whose last tile is larger, or turn tiling off"
    case .unexpectedTileShape(let expected, let actual):
      "VAE tiling: a tile came out as \(actual), expected \(expected)"
    }
  }
}

/// Tiled VAE decoding and encoding: the latents (or the image) are cut into overlapping tiles that
/// are decoded (encoded) one at a time, and neighbouring tiles are blended linearly over the overlap.
///
/// matches: diffusers `AutoencoderKL.enable_tiling()` (0.42.1): `tile_sample_min_size`,
/// `tile_latent_min_size` and `tile_overlap_factor`, used by `tiled_decode` and `_tiled_encode`.
/// Tiling switches on when the latents (image) are wider or taller than the latent (sample) tile
/// size, as diffusers' `_decode` / `_encode` decide.
public struct VAETiling: Sendable, Equatable {
  /// Side of an image tile in pixels (diffusers `tile_sample_min_size`).
  public let tileSampleMinSize: Int
  /// Side of a latent tile (diffusers `tile_latent_min_size`).
  public let tileLatentMinSize: Int
  /// Fraction of a tile that overlaps its neighbour (diffusers `tile_overlap_factor`).
  public let overlapFactor: Double

  /// The sizes accepted for either tile side.
  public static let tileSizeRange: ClosedRange<Int> = 1...(1 << 24)

  /// Explicit settings, validated: every stride and kept size is at least 1.
  public init(tileSampleMinSize: Int, tileLatentMinSize: Int, overlapFactor: Double = 0.25) throws {
    for (name, value) in [("tileSampleMinSize", tileSampleMinSize), ("tileLatentMinSize", tileLatentMinSize)]
    where !Self.tileSizeRange.contains(value) {
      throw VAETilingError.tileSizeOutOfRange(name: name, value: value, range: Self.tileSizeRange)
    }
    guard overlapFactor.isFinite, overlapFactor >= 0, overlapFactor < 1 else {
      throw VAETilingError.overlapFactorOutOfRange(overlapFactor)
    }
    self.tileSampleMinSize = tileSampleMinSize
    self.tileLatentMinSize = tileLatentMinSize
    self.overlapFactor = overlapFactor
    // The blend extents are below the tile sizes (factor < 1), so the kept sizes are at least 1;
    // only the strides can be 0.
    for (name, size) in [("tileLatentMinSize", tileLatentMinSize), ("tileSampleMinSize", tileSampleMinSize)]
    where Self.stride(size, overlapFactor) < 1 {
      throw VAETilingError.emptyStride(name: name, tileSize: size, overlapFactor: overlapFactor)
    }
  }

  /// diffusers' defaults for this VAE: `tile_sample_min_size = sample_size`,
  /// `tile_latent_min_size = int(sample_size / 2^(len(block_out_channels) − 1))`, overlap 0.25.
  public init(config: AutoencoderKLConfig) throws {
    // Integer division truncates like Python's int() of the (exact) float quotient.
    let latent = config.sampleSize / config.scaleFactor
    guard latent >= 1 else {
      throw VAETilingError.tileSizeOutOfRange(
        name: "tileLatentMinSize (sample_size \(config.sampleSize) / \(config.scaleFactor))", value: latent,
        range: Self.tileSizeRange)
    }
    try self.init(tileSampleMinSize: config.sampleSize, tileLatentMinSize: latent)
  }

  /// `int(size × (1 − factor))`, Python's truncation.
  static func stride(_ size: Int, _ factor: Double) -> Int { Int(Double(size) * (1 - factor)) }
  /// `int(size × factor)`.
  static func blendExtent(_ size: Int, _ factor: Double) -> Int { Int(Double(size) * factor) }

  /// Whether diffusers' `_decode` tiles latents of this size (strictly larger than a latent tile).
  public func tilesDecode(latentHeight: Int, latentWidth: Int) -> Bool {
    latentWidth > tileLatentMinSize || latentHeight > tileLatentMinSize
  }

  /// Whether diffusers' `_encode` tiles an image of this size (strictly larger than an image tile).
  public func tilesEncode(height: Int, width: Int) -> Bool {
    width > tileSampleMinSize || height > tileSampleMinSize
  }

  /// The tile grid of one pass: input tiles of `inputTile` every `stride`, output tiles cropped to
  /// `rowLimit` after blending `blendExtent` rows/columns with the neighbour above/left.
  struct Plan {
    var inputTile: Int
    var stride: Int
    var blendExtent: Int
    var rowLimit: Int
  }

  /// matches: the head of `tiled_decode` (stride in latents, blend and kept size in pixels).
  var decodePlan: Plan {
    let blend = Self.blendExtent(tileSampleMinSize, overlapFactor)
    return Plan(
      inputTile: tileLatentMinSize, stride: Self.stride(tileLatentMinSize, overlapFactor), blendExtent: blend,
      rowLimit: tileSampleMinSize - blend)
  }

  /// matches: the head of `_tiled_encode` (stride in pixels, blend and kept size in latents).
  var encodePlan: Plan {
    let blend = Self.blendExtent(tileLatentMinSize, overlapFactor)
    return Plan(
      inputTile: tileSampleMinSize, stride: Self.stride(tileSampleMinSize, overlapFactor), blendExtent: blend,
      rowLimit: tileLatentMinSize - blend)
  }
}

/// The tiled pass shared by decoding and encoding, over NHWC tensors.
///
/// matches: the loops of diffusers `tiled_decode` / `_tiled_encode` with `blend_v` / `blend_h`,
/// including their in-place updates: a tile is blended with the bottom of the (already blended)
/// tile above, then with the right edge of the (already blended) tile to its left, then cropped to
/// `row_limit`. Memory: one input tile and its output at a time, the left neighbour, and the
/// bottom `blend_extent` rows of the row above; the output is written in place.
enum TiledPass {
  /// Runs `body` on each tile of `input` `[N, H, W, C]`. `outputSize` maps an input tile side to
  /// its output side (nil when the tile is too small for `body`: a typed error, not a crash).
  static func run(
    _ input: Tensor, plan: VAETiling.Plan, outputChannels: Int, outputSize: (Int) -> Int?,
    body: (Tensor) throws -> Tensor
  ) throws -> Tensor {
    let input = input.asFloat32()
    let (n, h, w) = (input.shape[0], input.shape[1], input.shape[2])
    // Python's `range(0, size, stride)` and the clamped slices `[start : start + tile]`.
    func axis(_ size: Int, _ name: String) throws -> [(start: Int, input: Int, output: Int, kept: Int)] {
      try Swift.stride(from: 0, to: size, by: plan.stride).map { start in
        let side = min(plan.inputTile, size - start)
        guard let out = outputSize(side), out >= 1 else {
          throw VAETilingError.tileTooSmallToEncode(axis: name, start: start, size: side)
        }
        return (start, side, out, min(plan.rowLimit, out))
      }
    }
    let rows = try axis(h, "y")
    let cols = try axis(w, "x")
    let outH = rows.reduce(0) { $0 + $1.kept }
    let outW = cols.reduce(0) { $0 + $1.kept }
    let output = Tensor(uninitializedShape: [n, outH, outW, outputChannels], pooled: false)
    let out = output.mutableFloatPointer

    var above: [Tensor] = []  // bottom rows of each blended tile of the previous tile row
    var outY = 0
    for row in rows {
      var current: [Tensor] = []
      var left: Tensor?
      var outX = 0
      for (j, col) in cols.enumerated() {
        var tile = try body(crop(input, y: row.start, x: col.start, height: row.input, width: col.input))
        let expected = [n, row.output, col.output, outputChannels]
        guard tile.shape == expected else {
          throw VAETilingError.unexpectedTileShape(expected: expected, actual: tile.shape)
        }
        if !above.isEmpty { blendVertical(above[j], into: &tile, extent: plan.blendExtent) }
        if let left { blendHorizontal(left, into: &tile, extent: plan.blendExtent) }
        // `tile[:, :, :row_limit, :row_limit]` into its place in the output.
        tile.withUnsafeFloats { t in
          for b in 0..<n {
            for y in 0..<row.kept {
              let src = t.baseAddress! + ((b * row.output + y) * col.output) * outputChannels
              let dst = out + ((b * outH + outY + y) * outW + outX) * outputChannels
              dst.update(from: src, count: col.kept * outputChannels)
            }
          }
        }
        outX += col.kept
        let tail = min(plan.blendExtent, row.output)
        current.append(crop(tile, y: row.output - tail, x: 0, height: tail, width: col.output))
        left = tile
      }
      above = current
      outY += row.kept
    }
    return output
  }

  /// `x[:, y : y + height, x : x + width, :]` as a new contiguous tensor.
  static func crop(_ t: Tensor, y: Int, x: Int, height: Int, width: Int) -> Tensor {
    let (n, h, w, c) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
    let result = Tensor(uninitializedShape: [n, height, width, c])
    let dst = result.mutableFloatPointer
    t.withUnsafeFloats { s in
      for b in 0..<n {
        for r in 0..<height {
          let src = s.baseAddress! + ((b * h + y + r) * w + x) * c
          (dst + ((b * height + r) * width) * c).update(from: src, count: width * c)
        }
      }
    }
    return result
  }

  /// The blend weights of offset `i` of `extent`: `(1 − i / extent, i / extent)`, computed in
  /// double precision as Python does, then used as float32 scalars as torch does.
  @inline(__always)
  static func weights(_ i: Int, _ extent: Int) -> (Float, Float) {
    let t = Double(i) / Double(extent)
    return (Float(1 - t), Float(t))
  }

  /// diffusers `blend_v(a, b, extent)` on NHWC: `b[:, y] = a[:, −e + y] · (1 − y/e) + b[:, y] · (y/e)`
  /// for `y < e = min(a.height, b.height, extent)`. `aBottom` holds the bottom rows of `a` (at least
  /// `min(a.height, extent)` of them).
  static func blendVertical(_ aBottom: Tensor, into b: inout Tensor, extent: Int) {
    let (n, bh, w, c) = (b.shape[0], b.shape[1], b.shape[2], b.shape[3])
    let ah = aBottom.shape[1]
    let e = min(ah, bh, extent)
    guard e > 0 else { return }
    let rowCount = w * c
    aBottom.withUnsafeFloats { a in
      b.withUnsafeMutableFloats { bb in
        for y in 0..<e {
          let (wa, wb) = weights(y, e)
          for s in 0..<n {
            let pa = a.baseAddress! + (s * ah + ah - e + y) * rowCount
            let pb = bb.baseAddress! + (s * bh + y) * rowCount
            for k in 0..<rowCount {
              let fromA = pa[k] * wa
              let fromB = pb[k] * wb
              pb[k] = fromA + fromB
            }
          }
        }
      }
    }
  }

  /// diffusers `blend_h(a, b, extent)` on NHWC: `b[:, :, x] = a[:, :, −e + x] · (1 − x/e) + b[:, :, x] · (x/e)`
  /// for `x < e = min(a.width, b.width, extent)`; `a` and `b` have the same height.
  static func blendHorizontal(_ a: Tensor, into b: inout Tensor, extent: Int) {
    let (n, h, bw, c) = (b.shape[0], b.shape[1], b.shape[2], b.shape[3])
    let aw = a.shape[2]
    let e = min(aw, bw, extent)
    guard e > 0 else { return }
    a.withUnsafeFloats { aa in
      b.withUnsafeMutableFloats { bb in
        for x in 0..<e {
          let (wa, wb) = weights(x, e)
          for r in 0..<(n * h) {
            let pa = aa.baseAddress! + (r * aw + aw - e + x) * c
            let pb = bb.baseAddress! + (r * bw + x) * c
            for k in 0..<c {
              let fromA = pa[k] * wa
              let fromB = pb[k] * wb
              pb[k] = fromA + fromB
            }
          }
        }
      }
    }
  }
}

extension AutoencoderKL {
  /// `decode(_:)` with diffusers' tiling: tiled when `tiling` is given and the latents are wider
  /// or taller than `tiling.tileLatentMinSize`, else exactly `decode(_:)`.
  ///
  /// matches: diffusers `AutoencoderKL._decode` after `enable_tiling()` (`tiled_decode`:
  /// `post_quant_conv` and the decoder run per tile, tiles blended in pixel space).
  public func decode(_ latents: Tensor, tiling: VAETiling?) throws -> Tensor {
    guard let tiling, latents.rank == 4, latents.shape[3] == config.latentChannels, latents.count > 0,
      tiling.tilesDecode(latentHeight: latents.shape[1], latentWidth: latents.shape[2])
    else { return try decode(latents) }
    let scale = config.scaleFactor
    return try TiledPass.run(
      latents, plan: tiling.decodePlan, outputChannels: config.outChannels, outputSize: { $0 * scale },
      body: { try self.decode($0) })
  }

  /// `encode(_:)` with diffusers' tiling: tiled when `tiling` is given and the image is wider or
  /// taller than `tiling.tileSampleMinSize`, else exactly `encode(_:)`.
  ///
  /// matches: diffusers `AutoencoderKL._encode` after `enable_tiling()` (`_tiled_encode`: the
  /// encoder and `quant_conv` run per tile, the moments — mean and log-variance together — are
  /// blended, then split and the log-variance clamped by `DiagonalGaussianDistribution`).
  public func encode(_ images: Tensor, tiling: VAETiling?) throws -> DiagonalGaussian {
    guard let tiling, images.rank == 4, images.shape[3] == config.inChannels, images.count > 0,
      tiling.tilesEncode(height: images.shape[1], width: images.shape[2])
    else { return try encode(images) }
    let downsamples = config.blockOutChannels.count - 1
    let moments = try TiledPass.run(
      images, plan: tiling.encodePlan, outputChannels: 2 * config.latentChannels,
      outputSize: { side in
        // Each `Downsample2D` (pad right/bottom by 1, 3×3 stride 2): (s + 1 − 3) / 2 + 1 = s / 2, for s ≥ 2.
        var s = side
        for _ in 0..<downsamples {
          guard s >= 2 else { return nil }
          s /= 2
        }
        return s
      },
      body: { try self.encodeMoments($0) })
    return gaussian(fromMoments: moments)
  }
}
