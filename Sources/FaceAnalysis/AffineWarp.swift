import Imaging

/// OpenCV's `warpAffine` for 8-bit images with bilinear interpolation and a constant zero border,
/// bit for bit.
///
/// The map is inverted in double precision; each destination pixel's source position is computed
/// in fixed point with 10 fractional bits (`AB_BITS`), rounded to 1/32 pixel (`INTER_BITS = 5`),
/// and the four neighbours are blended with integer weights summing to 2¹⁵
/// (`INTER_REMAP_COEF_BITS`), rounded half up. Neighbours outside the image count as 0.
///
/// matches: OpenCV `cv::warpAffine(src, dst, M, size, INTER_LINEAR, BORDER_CONSTANT, 0)` for `CV_8UC(n)`.
public enum AffineWarp {
  static let abBits = 10
  static let interBits = 5
  static let interTabSize = 1 << interBits

  /// Warps `image` with the forward map `m` (source → destination) into `width × height`.
  public static func warp(_ image: Image, _ m: AffineTransform, width: Int, height: Int) -> Image {
    let inv = m.inverted.m
    let channels = image.channels
    var out = Image(width: width, height: height, format: image.format, fill: 0)
    let (sw, sh) = (image.width, image.height)
    let abScale = Double(1 << abBits)
    let roundDelta = (1 << abBits) / interTabSize / 2
    let adelta = (0..<width).map { saturatingInt(inv[0] * Double($0) * abScale) }
    let bdelta = (0..<width).map { saturatingInt(inv[3] * Double($0) * abScale) }
    let src = image.pixels
    out.withUnsafeMutablePixels { dst in
      src.withUnsafeBufferPointer { s in
        for y in 0..<height {
          let x0 = saturatingInt((inv[1] * Double(y) + inv[2]) * abScale) &+ roundDelta
          let y0 = saturatingInt((inv[4] * Double(y) + inv[5]) * abScale) &+ roundDelta
          for x in 0..<width {
            let X = (x0 &+ adelta[x]) >> (abBits - interBits)
            let Y = (y0 &+ bdelta[x]) >> (abBits - interBits)
            let sx = X >> interBits
            let sy = Y >> interBits
            let fx = X & (interTabSize - 1)
            let fy = Y & (interTabSize - 1)
            // Weights ×2¹⁵: (32−fx)(32−fy)·32 … exact integers.
            let w00 = (32 - fx) * (32 - fy) * 32
            let w01 = fx * (32 - fy) * 32
            let w10 = (32 - fx) * fy * 32
            let w11 = fx * fy * 32
            let o = (y * width + x) * channels
            let inside = sx >= 0 && sy >= 0 && sx < sw - 1 && sy < sh - 1
            if !inside && (sx >= sw || sx + 1 < 0 || sy >= sh || sy + 1 < 0) {
              continue  // entirely outside: the border value 0
            }
            for c in 0..<channels {
              func px(_ xx: Int, _ yy: Int) -> Int {
                guard xx >= 0, yy >= 0, xx < sw, yy < sh else { return 0 }
                return Int(s[(yy * sw + xx) * channels + c])
              }
              let v = px(sx, sy) * w00 + px(sx + 1, sy) * w01 + px(sx, sy + 1) * w10 + px(sx + 1, sy + 1) * w11
              dst[o + c] = UInt8(clamping: (v + (1 << 14)) >> 15)
            }
          }
        }
      }
    }
    return out
  }

  /// `saturate_cast<int>(double)`: round half to even, clamped to Int32.
  @inline(__always)
  static func saturatingInt(_ v: Double) -> Int {
    guard v.isFinite else { return v > 0 ? Int(Int32.max) : Int(Int32.min) }
    let r = v.rounded(.toNearestOrEven)
    return Int(Swift.min(Swift.max(r, Double(Int32.min)), Double(Int32.max)))
  }
}
