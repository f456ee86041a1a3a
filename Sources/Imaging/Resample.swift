#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Resampling filters, with Pillow's integer values (as stored in `preprocessor_config.json`
/// `resample` fields and `PILImageResampling`).
///
/// matches: Pillow 13 `Image.Resampling` for NEAREST, LANCZOS, BILINEAR, BICUBIC (a = -0.5), BOX
/// and HAMMING. Pillow 13's new MKS2013/MKS2021 (6, 7) are not implemented.
public enum Resampling: Int, Sendable, Equatable, CaseIterable, Codable {
  case nearest = 0
  case lanczos = 1
  case bilinear = 2
  case bicubic = 3
  case box = 4
  case hamming = 5

  /// Half-width of the filter kernel at scale 1 (`_filters_support`).
  var support: Double {
    switch self {
    case .nearest: 0
    case .box: 0.5
    case .bilinear, .hamming: 1
    case .bicubic: 2
    case .lanczos: 3
    }
  }

  /// The kernel, evaluated in double precision exactly like `Resample.c` (no fused multiply-add).
  @inline(__always) func weight(_ x: Double) -> Double {
    switch self {
    case .nearest:
      return 0
    case .box:
      return x > -0.5 && x <= 0.5 ? 1 : 0
    case .bilinear:
      let ax = x < 0 ? -x : x
      return ax < 1 ? 1 - ax : 0
    case .hamming:
      var ax = x < 0 ? -x : x
      if ax == 0 { return 1 }
      if ax >= 1 { return 0 }
      ax = ax * Double.pi
      // Pillow writes the constants as C floats: 0.54f, 0.46f.
      return sin(ax) / ax * (Double(Float(0.54)) + Double(Float(0.46)) * cos(ax))
    case .bicubic:
      let a = -0.5
      let ax = x < 0 ? -x : x
      if ax < 1 { return ((a + 2) * ax - (a + 3)) * ax * ax + 1 }
      if ax < 2 { return (((ax - 5) * ax + 8) * ax - 4) * a }
      return 0
    case .lanczos:
      if -3 <= x && x < 3 { return Self.sinc(x) * Self.sinc(x / 3) }
      return 0
    }
  }

  @inline(__always) private static func sinc(_ x: Double) -> Double {
    if x == 0 { return 1 }
    let px = x * Double.pi
    return sin(px) / px
  }
}

/// A source rectangle for `Image.resized` in pixel coordinates (may be fractional), like the
/// `box` argument of Pillow's `Image.resize`. Pillow passes it to C as 32-bit floats; so does this.
///
/// matches: Pillow 13 `Image.resize(box=(left, top, right, bottom))`.
public struct ResizeBox: Sendable, Equatable {
  public var left: Double, top: Double, right: Double, bottom: Double
  public init(left: Double, top: Double, right: Double, bottom: Double) {
    self.left = left
    self.top = top
    self.right = right
    self.bottom = bottom
  }
}

extension Image {
  /// The image resized to `width` x `height`, bit-exact with Pillow.
  ///
  /// matches: Pillow 13 `Image.resize(size, resample, box, reducing_gap)` → `ImagingResample`:
  /// separable convolution with support scaled by the downscale factor (antialiasing), weights
  /// normalised in double and converted to 22-bit fixed point, two passes each rounding and
  /// clipping to 8 bits — horizontal first, except vertical first when the height shrinks by more
  /// than twice as many pixels as the width (Pillow 13's rule, see `PillowResampler.resample`).
  /// NEAREST uses Pillow's affine scaling (`ImagingScaleAffine`). Images with alpha (LA/RGBA) are
  /// premultiplied before filtering and unpremultiplied after (not for NEAREST), as Pillow does.
  /// `reducingGap` applies Pillow's `Image.reduce` pre-step (see `Reduce.swift`).
  /// Preconditions: `width, height >= 1`, the box lies inside the image.
  /// Known limitations: 8-bit only (no "I;16"/"I"/"F" modes — nothing in the pipeline resizes
  /// those); Pillow 13's MKS2013/MKS2021 filters are not implemented.
  public func resized(
    width outWidth: Int, height outHeight: Int, filter: Resampling = .bicubic,
    box: ResizeBox? = nil, reducingGap: Double? = nil
  ) -> Image {
    precondition(outWidth >= 1 && outHeight >= 1, "height and width must be > 0")
    precondition(width >= 1 && height >= 1, "cannot resize an empty image")
    precondition(reducingGap.map { $0 >= 1 } ?? true, "reducing_gap must be 1.0 or greater")
    let box = box ?? ResizeBox(left: 0, top: 0, right: Double(width), bottom: Double(height))
    let fullBox = box == ResizeBox(left: 0, top: 0, right: Double(width), bottom: Double(height))
    if outWidth == width && outHeight == height && fullBox { return self }

    if format.hasAlpha && filter != .nearest {
      return premultiplied()
        .resizedStraight(outWidth, outHeight, filter, box, reducingGap)
        .unpremultiplied()
    }
    return resizedStraight(outWidth, outHeight, filter, box, reducingGap)
  }

  /// Resize without alpha handling (Pillow's `Image.resize` after the mode checks).
  private func resizedStraight(
    _ outWidth: Int, _ outHeight: Int, _ filter: Resampling, _ box: ResizeBox, _ reducingGap: Double?
  ) -> Image {
    if let reducingGap, filter != .nearest {
      let factorX = max(Int((box.right - box.left) / Double(outWidth) / reducingGap), 1)
      let factorY = max(Int((box.bottom - box.top) / Double(outHeight) / reducingGap), 1)
      if factorX > 1 || factorY > 1 {
        let reduceBox = safeBox(outWidth, outHeight, filter, box)
        let reducedImage = reduced(
          factorX: factorX, factorY: factorY,
          box: (reduceBox.0, reduceBox.1, reduceBox.2, reduceBox.3))
        let newBox = ResizeBox(
          left: (box.left - Double(reduceBox.0)) / Double(factorX),
          top: (box.top - Double(reduceBox.1)) / Double(factorY),
          right: (box.right - Double(reduceBox.0)) / Double(factorX),
          bottom: (box.bottom - Double(reduceBox.1)) / Double(factorY))
        return reducedImage.resampledCore(outWidth, outHeight, filter, newBox)
      }
    }
    return resampledCore(outWidth, outHeight, filter, box)
  }

  /// Pillow's `Image._get_safe_box`: the integer box covering all pixels the filter may touch.
  private func safeBox(_ outWidth: Int, _ outHeight: Int, _ filter: Resampling, _ box: ResizeBox)
    -> (Int, Int, Int, Int)
  {
    let filterSupport = filter.support - 0.5
    let supportX = filterSupport * ((box.right - box.left) / Double(outWidth))
    let supportY = filterSupport * ((box.bottom - box.top) / Double(outHeight))
    return (
      max(0, Int(box.left - supportX)), max(0, Int(box.top - supportY)),
      min(width, Int((box.right + supportX).rounded(.up))),
      min(height, Int((box.bottom + supportY).rounded(.up)))
    )
  }

  /// `_imaging.c` `_resize`: box checks, the exact-crop shortcut, NEAREST, else `ImagingResample`.
  func resampledCore(_ outWidth: Int, _ outHeight: Int, _ filter: Resampling, _ box: ResizeBox)
    -> Image
  {
    let b = (Float(box.left), Float(box.top), Float(box.right), Float(box.bottom))
    precondition(b.0 >= 0 && b.1 >= 0, "box offset can't be negative")
    precondition(b.2 <= Float(width) && b.3 <= Float(height), "box can't exceed original image size")
    precondition(b.2 - b.0 >= 0 && b.3 - b.1 >= 0, "box can't be empty")
    if b.0 == b.0.rounded(.towardZero) && b.2 - b.0 == Float(outWidth)
      && b.1 == b.1.rounded(.towardZero) && b.3 - b.1 == Float(outHeight)
    {
      return cropped(left: Int(b.0), top: Int(b.1), right: Int(b.2), bottom: Int(b.3))
    }
    if filter == .nearest { return nearestScaled(outWidth, outHeight, b) }
    return PillowResampler.resample(self, outWidth, outHeight, filter, b)
  }

  /// Pillow's `ImagingScaleAffine` (nearest neighbour): source positions accumulate in double,
  /// `xo = x0 + a/2, xo += a`, truncated toward zero; destination pixels with no source stay 0.
  private func nearestScaled(_ outWidth: Int, _ outHeight: Int, _ b: (Float, Float, Float, Float))
    -> Image
  {
    let a0 = Double(b.2 - b.0) / Double(outWidth)
    let a4 = Double(b.3 - b.1) / Double(outHeight)
    var xo = Double(b.0) + a0 * 0.5
    var yo = Double(b.1) + a4 * 0.5
    var xTable = [Int](repeating: 0, count: outWidth)
    var xMin = outWidth, xMax = 0
    for x in 0..<outWidth {
      let xin = xo < 0 ? -1 : Int(xo)
      if xin >= 0 && xin < width {
        xMax = x + 1
        if x < xMin { xMin = x }
        xTable[x] = xin
      }
      xo += a0
    }
    let c = channels, inWidth = width, inHeight = height
    return Image.make(width: outWidth, height: outHeight, format: format) { out in
      pixels.withUnsafeBufferPointer { src in
        for y in 0..<outHeight {
          let yi = yo < 0 ? -1 : Int(yo)
          yo += a4
          guard yi >= 0 && yi < inHeight, xMin < xMax else { continue }
          let srcRow = yi * inWidth * c, dstRow = y * outWidth * c
          for x in xMin..<xMax {
            for j in 0..<c { out[dstRow + x * c + j] = src[srcRow + xTable[x] * c + j] }
          }
        }
      }
    }
  }
}
