import Imaging

/// OpenCV's `cv2.resize(img, (w, h))` (INTER_LINEAR) for 8-bit images, bit for bit.
///
/// Source positions `(d + 0.5)·scale − 0.5` (scale = `1/(dst/src)` in double) are rounded to float,
/// and their fractions become 11-bit fixed-point weights (`INTER_RESIZE_COEF_BITS`), each rounded
/// on its own. Columns are clamped at the borders (fraction 0 there); rows are clamped but keep
/// their weights. Rows are interpolated horizontally into exact integer sums, then vertically as
/// OpenCV's vector code does for every element: `((s0>>4)·b0 >> 16) + ((s1>>4)·b1 >> 16) + 2 >> 2`.
/// An exact 2× reduction takes OpenCV's area path, `(a + b + c + d + 2) >> 2`.
///
/// matches: OpenCV 4.10–4.14 and 5.0 `cv::resize(src, dst, dsize, 0, 0, INTER_LINEAR)` for `CV_8UC(n)`
/// on x86-64 (identical in those versions; checked bit for bit by the fixtures).
public enum OpenCVResize {
  static let coefScale: Float = 2048

  /// Resizes `image` to `width × height`.
  public static func linear(_ image: Image, width: Int, height: Int) -> Image {
    let cn = image.channels
    let (sw, sh) = (image.width, image.height)
    precondition(width > 0 && height > 0 && sw > 0 && sh > 0)
    if sw == width && sh == height { return image }
    let scaleX = 1.0 / (Double(width) / Double(sw))
    let scaleY = 1.0 / (Double(height) / Double(sh))
    var out = Image(width: width, height: height, format: image.format, fill: 0)
    let src = image.pixels
    if abs(scaleX - 2) < Double.ulpOfOne && abs(scaleY - 2) < Double.ulpOfOne {
      out.withUnsafeMutablePixels { d in
        for y in 0..<height {
          for x in 0..<width {
            for c in 0..<cn {
              let p = { (yy: Int, xx: Int) in Int(src[(yy * sw + xx) * cn + c]) }
              let v = p(2 * y, 2 * x) + p(2 * y, 2 * x + 1) + p(2 * y + 1, 2 * x) + p(2 * y + 1, 2 * x + 1)
              d[(y * width + x) * cn + c] = UInt8((v + 2) >> 2)
            }
          }
        }
      }
      return out
    }
    // Column taps and weights.
    var xs = [Int](repeating: 0, count: width)
    var a0 = [Int](repeating: 0, count: width)
    var a1 = [Int](repeating: 0, count: width)
    for d in 0..<width {
      var f = Float((Double(d) + 0.5) * scaleX - 0.5)
      var s = Int(f.rounded(.down))
      f -= Float(s)
      if s < 0 { (f, s) = (0, 0) }
      if s >= sw - 1 { (f, s) = (0, sw - 1) }
      xs[d] = s
      a0[d] = Int(((1 - f) * coefScale).rounded(.toNearestOrEven))
      a1[d] = Int((f * coefScale).rounded(.toNearestOrEven))
    }
    let rowLength = width * cn
    func horizontal(_ y: Int) -> [Int] {
      var row = [Int](repeating: 0, count: rowLength)
      let base = y * sw * cn
      for d in 0..<width {
        let s0 = base + xs[d] * cn
        let s1 = base + min(xs[d] + 1, sw - 1) * cn
        for c in 0..<cn { row[d * cn + c] = Int(src[s0 + c]) * a0[d] + Int(src[s1 + c]) * a1[d] }
      }
      return row
    }
    var cache: [Int: [Int]] = [:]
    out.withUnsafeMutablePixels { dst in
      for dy in 0..<height {
        var f = Float((Double(dy) + 0.5) * scaleY - 0.5)
        let s = Int(f.rounded(.down))
        f -= Float(s)
        let b0 = Int(((1 - f) * coefScale).rounded(.toNearestOrEven))
        let b1 = Int((f * coefScale).rounded(.toNearestOrEven))
        let y0 = min(max(s, 0), sh - 1)
        let y1 = min(max(s + 1, 0), sh - 1)
        let r0 = cache[y0] ?? horizontal(y0)
        let r1 = cache[y1] ?? horizontal(y1)
        cache = [:]
        cache[y0] = r0
        cache[y1] = r1
        for x in 0..<rowLength {
          let v = (((r0[x] >> 4) * b0) >> 16) + (((r1[x] >> 4) * b1) >> 16) + 2
          dst[dy * rowLength + x] = UInt8(clamping: v >> 2)
        }
      }
    }
    return out
  }
}
