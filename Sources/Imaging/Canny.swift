/// Why `Canny` rejected its arguments.
///
/// matches: no reference type (OpenCV silently swaps `low > high` and accepts negative
/// thresholds; this API treats both as caller mistakes).
public enum CannyError: Error, CustomStringConvertible, Equatable, Sendable {
  /// A threshold is NaN or infinite.
  case nonFiniteThreshold(low: Double, high: Double)
  /// A threshold is below zero.
  case negativeThreshold(low: Double, high: Double)
  /// The low (weak-edge) threshold is above the high (strong-edge) one.
  case lowAboveHigh(low: Double, high: Double)
  /// Images with alpha are not edge-detected directly.
  case unsupportedFormat(PixelFormat)

  public var description: String {
    switch self {
    case .nonFiniteThreshold(let low, let high):
      "Canny thresholds must be finite numbers, got low \(low), high \(high)"
    case .negativeThreshold(let low, let high):
      "Canny thresholds must be ≥ 0, got low \(low), high \(high)"
    case .lowAboveHigh(let low, let high):
      "Canny low threshold \(low) is above the high threshold \(high): pass them in order (e.g. 100, 200)"
    case .unsupportedFormat(let format):
      "Canny needs a gray (L) or RGB image, got \(format): convert it first (e.g. convertedToRGB())"
    }
  }
}

/// Which pixels the Canny control-image recipe edge-detects.
///
/// matches: the two recipes diffusers users run before a Canny ControlNet.
public enum CannyChannels: Sendable, Equatable {
  /// `cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), low, high)`.
  case grayscale
  /// `cv2.Canny(rgb, low, high)` on the colour array (diffusers' documentation example): per
  /// pixel, the channel with the largest gradient magnitude decides.
  case perChannel
}

/// The Canny edge detector.
///
/// matches: OpenCV 5 `cv::Canny(image, low, high, apertureSize = 3, L2gradient)` on 8-bit images
/// with 1 or 3 channels: 3×3 Sobel derivatives with replicated borders (16-bit), magnitude
/// `|dx| + |dy|` (or `dx² + dy²` against squared thresholds with `l2Gradient`), thresholds floored
/// to integers; non-maximum suppression along the gradient direction quantised by OpenCV's
/// fixed-point tangent tests (tan 22.5° = 13573 / 2¹⁵), with zero magnitude outside the image and
/// its asymmetric `>` / `>=` comparisons; pixels above `high` seed edges, which grow through
/// 8-connected suppressed-maximum pixels above `low` (hysteresis). Output: 255 on edges, else 0.
/// For multi-channel input each pixel uses the derivatives of its channel of largest magnitude
/// (the first on ties).
///
/// Limitations: aperture 3 only (no 5/7 or Scharr), no precomputed-derivative variant, and
/// `low > high` is an error instead of being swapped.
public enum Canny {
  /// The edge map (single channel, 0/255) of a gray or RGB image.
  public static func edges(
    _ image: Image, low: Double, high: Double, l2Gradient: Bool = false
  ) throws(CannyError) -> Image {
    guard low.isFinite, high.isFinite else { throw .nonFiniteThreshold(low: low, high: high) }
    guard low >= 0, high >= 0 else { throw .negativeThreshold(low: low, high: high) }
    guard low <= high else { throw .lowAboveHigh(low: low, high: high) }
    guard image.format == .gray || image.format == .rgb else { throw .unsupportedFormat(image.format) }
    func integer(_ t: Double) -> Int {
      let v = l2Gradient ? min(t, 32767) * min(t, 32767) : t
      return Int(min(v.rounded(.down), Double(Int32.max)))
    }
    let gradient = Gradient(image, l2: l2Gradient)
    return gradient.edges(low: integer(low), high: integer(high))
  }

  /// The Canny control image diffusers users feed a Canny ControlNet: edges of `image` (any
  /// format; alpha is ignored), replicated to 3 channels (`np.concatenate([edges] * 3, axis=2)`).
  public static func controlImage(
    from image: Image, low: Double = 100, high: Double = 200, channels: CannyChannels = .grayscale
  ) throws(CannyError) -> Image {
    let source: Image
    switch channels {
    case .grayscale: source = image.openCVGray()
    case .perChannel: source = image.format == .rgb ? image : image.converted(to: .rgb)
    }
    return try edges(source, low: low, high: high).converted(to: .rgb)
  }
}

extension Image {
  /// The gray image OpenCV computes: `cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)` (and `RGBA2GRAY`),
  /// `(9798·R + 19235·G + 3735·B + 2¹⁴) >> 15`; gray images are returned as they are (alpha dropped).
  ///
  /// matches: OpenCV 5 `cvtColor` 8-bit RGB→gray (BT.601 weights in 15-bit fixed point; verified
  /// for all 2²⁴ colours by `tools/reference/gen_canny_fixtures.py`). Pillow's `convert("L")`
  /// (16-bit weights, `converted(to: .gray)`) differs by one level on some colours.
  public func openCVGray() -> Image {
    if format == .gray { return self }
    let c = channels
    return Image.make(width: width, height: height, format: .gray) { out in
      pixels.withUnsafeBufferPointer { p in
        for i in 0..<(width * height) {
          if c <= 2 {
            out[i] = p[i * c]
          } else {
            let v = 9798 * Int(p[i * c]) + 19235 * Int(p[i * c + 1]) + 3735 * Int(p[i * c + 2])
            out[i] = UInt8((v + (1 << 14)) >> 15)
          }
        }
      }
    }
  }
}

/// Per-pixel Sobel derivatives and gradient magnitude (of the strongest channel).
private struct Gradient {
  let width: Int, height: Int
  var dx: [Int32], dy: [Int32], magnitude: [Int32]

  init(_ image: Image, l2: Bool) {
    (width, height) = (image.width, image.height)
    let n = width * height
    (dx, dy, magnitude) = ([Int32](repeating: 0, count: n), [Int32](repeating: 0, count: n), [Int32](repeating: -1, count: n))
    let (w, h, c) = (width, height, image.channels)
    image.pixels.withUnsafeBufferPointer { p in
      for y in 0..<h {
        let (up, down) = (max(y - 1, 0), min(y + 1, h - 1))  // replicated border
        for x in 0..<w {
          let (left, right) = (max(x - 1, 0), min(x + 1, w - 1))
          for k in 0..<c {
            func v(_ yy: Int, _ xx: Int) -> Int32 { Int32(p[(yy * w + xx) * c + k]) }
            let gx = (v(up, right) + 2 * v(y, right) + v(down, right)) - (v(up, left) + 2 * v(y, left) + v(down, left))
            let gy = (v(down, left) + 2 * v(down, x) + v(down, right)) - (v(up, left) + 2 * v(up, x) + v(up, right))
            let m = l2 ? gx * gx + gy * gy : abs(gx) + abs(gy)
            let i = y * w + x
            if m > magnitude[i] {  // strict: the first channel wins ties, as OpenCV
              (magnitude[i], dx[i], dy[i]) = (m, gx, gy)
            }
          }
        }
      }
    }
  }

  /// Non-maximum suppression, double threshold and hysteresis.
  func edges(low: Int, high: Int) -> Image {
    let (w, h) = (width, height)
    let stride = w + 2
    // 0: may be an edge (weak maximum), 1: not an edge (also the frame), 2: edge.
    var map = [UInt8](repeating: 1, count: stride * (h + 2))
    var stack: [Int] = []
    func mag(_ y: Int, _ x: Int) -> Int { y < 0 || y >= h || x < 0 || x >= w ? 0 : Int(magnitude[y * w + x]) }
    let tan22: Int = 13573  // tan(22.5°) · 2¹⁵, rounded
    for y in 0..<h {
      for x in 0..<w {
        let m = Int(magnitude[y * w + x])
        guard m > low else { continue }
        let (gx, gy) = (Int(dx[y * w + x]), Int(dy[y * w + x]))
        let ax = abs(gx)
        let ay = abs(gy) << 15
        let tg22x = ax * tan22
        let isMaximum: Bool
        if ay < tg22x {  // mostly horizontal gradient: compare with left/right
          isMaximum = m > mag(y, x - 1) && m >= mag(y, x + 1)
        } else if ay > tg22x + (ax << 16) {  // beyond 67.5°: compare with up/down
          isMaximum = m > mag(y - 1, x) && m >= mag(y + 1, x)
        } else {  // diagonal: the neighbours along the gradient's diagonal
          let s = (gx ^ gy) < 0 ? -1 : 1
          isMaximum = m > mag(y - 1, x - s) && m > mag(y + 1, x + s)
        }
        guard isMaximum else { continue }
        let at = (y + 1) * stride + x + 1
        if m > high {
          map[at] = 2
          stack.append(at)
        } else {
          map[at] = 0
        }
      }
    }
    let neighbours = [-stride - 1, -stride, -stride + 1, -1, 1, stride - 1, stride, stride + 1]
    while let at = stack.popLast() {
      for d in neighbours where map[at + d] == 0 {
        map[at + d] = 2
        stack.append(at + d)
      }
    }
    return Image.make(width: w, height: h, format: .gray) { out in
      for y in 0..<h {
        for x in 0..<w where map[(y + 1) * stride + x + 1] == 2 { out[y * w + x] = 255 }
      }
    }
  }
}
