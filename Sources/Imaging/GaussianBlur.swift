extension Image {
  /// The image blurred with a Gaussian of standard deviation `radius` pixels (`xRadius`/`yRadius`
  /// for different horizontal and vertical spreads), approximated by three extended box blurs.
  ///
  /// matches: Pillow 13 `image.filter(ImageFilter.GaussianBlur(radius))` (BoxBlur.c) bit for bit:
  /// the fractional box radius of Gwosdek et al. computed in C `float`, 24-bit fixed-point box
  /// weights with a partial weight for the two outermost pixels, edge pixels repeated, three
  /// horizontal passes then three vertical ones, rounding half up. Every channel (alpha included)
  /// is blurred independently, like Pillow's L/LA/RGB/RGBA modes. A radius of 0 returns the image
  /// unchanged; negative radii are treated as their magnitude (Pillow squares them).
  public func gaussianBlurred(radius: Double) -> Image {
    gaussianBlurred(xRadius: radius, yRadius: radius)
  }

  /// `gaussianBlurred(radius:)` with separate horizontal and vertical radii
  /// (`ImageFilter.GaussianBlur((x, y))`).
  public func gaussianBlurred(xRadius: Double, yRadius: Double) -> Image {
    let passes = 3
    let bx = BoxBlur.radius(forGaussian: Float(xRadius), passes: passes)
    let by = BoxBlur.radius(forGaussian: Float(yRadius), passes: passes)
    guard width > 0, height > 0 else { return self }
    var out = self
    let c = channels, w = width, h = height
    out.pixels.withUnsafeMutableBufferPointer { px in
      if bx != 0 {
        let line = BoxBlur(length: w, radius: bx)
        for y in 0..<h {
          for ch in 0..<c { line.blur(px, start: y * w * c + ch, stride: c, passes: passes) }
        }
      }
      if by != 0 {
        let column = BoxBlur(length: h, radius: by)
        for x in 0..<w {
          for ch in 0..<c { column.blur(px, start: x * c + ch, stride: w * c, passes: passes) }
        }
      }
    }
    return out
  }
}

/// One extended box blur along a line of `length` 8-bit samples (Pillow's `ImagingLineBoxBlur8`
/// arithmetic: a running UInt32 sum of the 2r+1 whole pixels times `wholeWeight`, plus the two
/// next pixels times `edgeWeight`, in units of 2⁻²⁴; samples past either end repeat the end pixel).
struct BoxBlur {
  let length: Int
  let radius: Int
  let wholeWeight: UInt32
  let edgeWeight: UInt32

  init(length: Int, radius floatRadius: Float) {
    self.length = length
    radius = Int(floatRadius)
    // C: (UINT32)(1 << 24) / (floatRadius * 2 + 1) divides in float, then truncates.
    wholeWeight = UInt32(Float(1 << 24) / (floatRadius * 2 + 1))
    edgeWeight = (UInt32(1 << 24) &- UInt32(radius * 2 + 1) &* wholeWeight) / 2
  }

  /// The fractional box radius whose `passes` box blurs approximate a Gaussian of standard
  /// deviation `sigma` (`_gaussian_blur_radius`, float arithmetic with the two double steps of C).
  static func radius(forGaussian sigma: Float, passes: Int) -> Float {
    let sigma2 = sigma * sigma / Float(passes)
    let boxLength = Float((12.0 * Double(sigma2) + 1.0).squareRoot())
    let whole = Float(((Double(boxLength) - 1.0) / 2.0).rounded(.down))
    var fraction = (2 * whole + 1) * (whole * (whole + 1) - 3 * sigma2)
    fraction /= 6 * (sigma2 - (whole + 1) * (whole + 1))
    return whole + fraction
  }

  /// Blurs the samples `start`, `start + stride`, … (`length` of them) in place, `passes` times.
  func blur(_ buffer: UnsafeMutableBufferPointer<UInt8>, start: Int, stride: Int, passes: Int) {
    var input = [UInt8](repeating: 0, count: length)
    var output = [UInt8](repeating: 0, count: length)
    for i in 0..<length { input[i] = buffer[start + i * stride] }
    for _ in 0..<passes {
      input.withUnsafeBufferPointer { src in
        output.withUnsafeMutableBufferPointer { dst in line(src, dst) }
      }
      swap(&input, &output)
    }
    for i in 0..<length { buffer[start + i * stride] = input[i] }
  }

  private func line(_ src: UnsafeBufferPointer<UInt8>, _ dst: UnsafeMutableBufferPointer<UInt8>) {
    let last = length - 1, r = radius
    let edgeA = min(r + 1, length), edgeB = max(length - r - 1, 0)
    let ww = wholeWeight, fw = edgeWeight
    @inline(__always) func v(_ i: Int) -> UInt32 { UInt32(src[i]) }
    // Running sum for the (virtual) pixel −1: r + 1 copies of the first pixel, pixels 0 … edgeA−2,
    // then the last pixel for the part of the window past the end.
    var acc = v(0) &* UInt32(r + 1)
    for x in 0..<max(edgeA - 1, 0) { acc = acc &+ v(x) }
    acc = acc &+ v(last) &* UInt32(truncatingIfNeeded: r - edgeA + 1)
    @inline(__always) func step(_ x: Int, remove: Int, add: Int, left: Int, right: Int) {
      acc = acc &+ v(add) &- v(remove)
      let bulk = acc &* ww &+ (v(left) &+ v(right)) &* fw
      dst[x] = UInt8(truncatingIfNeeded: (bulk &+ (1 << 23)) >> 24)
    }
    if edgeA <= edgeB {
      for x in 0..<edgeA { step(x, remove: 0, add: x + r, left: 0, right: x + r + 1) }
      for x in edgeA..<edgeB { step(x, remove: x - r - 1, add: x + r, left: x - r - 1, right: x + r + 1) }
      for x in Swift.stride(from: edgeB, through: last, by: 1) {
        step(x, remove: x - r - 1, add: last, left: x - r - 1, right: last)
      }
    } else {
      for x in 0..<edgeB { step(x, remove: 0, add: x + r, left: 0, right: x + r + 1) }
      for x in edgeB..<edgeA { step(x, remove: 0, add: last, left: 0, right: last) }
      for x in Swift.stride(from: edgeA, through: last, by: 1) {
        step(x, remove: x - r - 1, add: last, left: x - r - 1, right: last)
      }
    }
  }
}
