import TensorCore

/// Pillow's 8-bit two-pass convolution resampler (`Resample.c`), reimplemented.
enum PillowResampler {
  /// 32 - 8 - 2: 8 bits of result, 2 bits of headroom for negative lobes and overshoot.
  static let precisionBits: Int32 = 22

  /// Per output pixel: first source index, tap count, and `ksize` normalised weights.
  struct Coefficients {
    var ksize: Int
    var bounds: [Int]  // [first, count] per output pixel
    var weights: [Double]  // outSize * ksize

    /// The weights as rounded 22-bit fixed point (`normalize_coeffs_8bpc`).
    var fixedPoint: [Int32] {
      let scale = Double(1 << precisionBits)
      return weights.map { w in Int32(w < 0 ? -0.5 + w * scale : 0.5 + w * scale) }
    }
  }

  /// `precompute_coeffs`: source range [in0, in1) (C floats) mapped onto `outSize` pixels.
  static func coefficients(
    inSize: Int, in0: Float, in1: Float, outSize: Int, filter: Resampling
  ) -> Coefficients {
    let scale = Double(in1 - in0) / Double(outSize)
    let filterScale = max(scale, 1)
    let support = filter.support * filterScale
    let ksize = Int(support.rounded(.up)) * 2 + 1
    let invFilterScale = 1 / filterScale
    var bounds = [Int](repeating: 0, count: outSize * 2)
    var weights = [Double](repeating: 0, count: outSize * ksize)
    for xx in 0..<outSize {
      let center = Double(in0) + (Double(xx) + 0.5) * scale
      var xmin = Int(center - support + 0.5)
      if xmin < 0 { xmin = 0 }
      var xmax = Int(center + support + 0.5)
      if xmax > inSize { xmax = inSize }
      xmax -= xmin
      let base = xx * ksize
      var sum = 0.0
      for x in 0..<max(xmax, 0) {
        let w = filter.weight((Double(x + xmin) - center + 0.5) * invFilterScale)
        weights[base + x] = w
        sum += w
      }
      if sum != 0 {
        for x in 0..<max(xmax, 0) { weights[base + x] /= sum }
      }
      bounds[2 * xx] = xmin
      bounds[2 * xx + 1] = xmax
    }
    return Coefficients(ksize: ksize, bounds: bounds, weights: weights)
  }

  /// `ImagingResample` for 8-bit images; each pass runs only if the size or box requires it.
  ///
  /// Pass order (Pillow 13, read from its compiled `ImagingResample`; older Pillow always went
  /// horizontal first): vertical first when the height shrinks by more than twice as many pixels
  /// as the width, `inH - outH > max(0, 2 * (inW - outW))`; otherwise horizontal first, over only
  /// the source rows the vertical pass reads. The 8-bit rounding between passes makes the order
  /// visible in the output.
  static func resample(
    _ image: Image, _ outWidth: Int, _ outHeight: Int, _ filter: Resampling,
    _ box: (Float, Float, Float, Float)
  ) -> Image {
    let needHorizontal = outWidth != image.width || box.0 != 0 || box.2 != Float(outWidth)
    let needVertical = outHeight != image.height || box.1 != 0 || box.3 != Float(outHeight)
    var vertical = coefficients(
      inSize: image.height, in0: box.1, in1: box.3, outSize: outHeight, filter: filter)
    let shrinkY = image.height - outHeight, shrinkX = image.width - outWidth
    if needVertical && shrinkY > 0 && shrinkY > 2 * shrinkX {
      let columns = verticalPass(image, outHeight, vertical)
      guard needHorizontal else { return columns }
      let horizontal = coefficients(
        inSize: image.width, in0: box.0, in1: box.2, outSize: outWidth, filter: filter)
      return horizontalPass(columns, rows: 0..<outHeight, outWidth, horizontal)
    }
    let firstRow = vertical.bounds[0]
    let lastRow = vertical.bounds[outHeight * 2 - 2] + vertical.bounds[outHeight * 2 - 1]
    var current = image
    if needHorizontal {
      let horizontal = coefficients(
        inSize: image.width, in0: box.0, in1: box.2, outSize: outWidth, filter: filter)
      for i in 0..<outHeight { vertical.bounds[2 * i] -= firstRow }
      current = horizontalPass(image, rows: firstRow..<max(lastRow, firstRow), outWidth, horizontal)
    }
    if needVertical {
      current = verticalPass(current, outHeight, vertical)
    }
    return current
  }

  private static func horizontalPass(
    _ image: Image, rows: Range<Int>, _ outWidth: Int, _ coeffs: Coefficients
  ) -> Image {
    let c = image.channels
    let kk = coeffs.fixedPoint
    let ksize = coeffs.ksize
    let inStride = image.width * c, outStride = outWidth * c
    return Image.make(width: outWidth, height: rows.count, format: image.format) { out in
      image.pixels.withUnsafeBufferPointer { src in
        kk.withUnsafeBufferPointer { k in
          coeffs.bounds.withUnsafeBufferPointer { bounds in
            let srcBase = src.baseAddress!, dstBase = out.baseAddress!
            let kBase = k.baseAddress!, bBase = bounds.baseAddress!
            Parallel.forRanges(rows.count, costPerItem: outStride * ksize * 2) { range in
              for r in range {
                let s = srcBase + (rows.lowerBound + r) * inStride
                let d = dstBase + r * outStride
                switch c {
                case 1: convolveRow(s, d, outWidth, kBase, ksize, bBase, channels: 1)
                case 2: convolveRow(s, d, outWidth, kBase, ksize, bBase, channels: 2)
                case 3: convolveRow(s, d, outWidth, kBase, ksize, bBase, channels: 3)
                default: convolveRow(s, d, outWidth, kBase, ksize, bBase, channels: 4)
                }
              }
            }
          }
        }
      }
    }
  }

  /// One row of the horizontal pass; `channels` is a literal at every call site so the inner loop
  /// is specialised after inlining.
  @inline(__always)
  private static func convolveRow(
    _ s: UnsafePointer<UInt8>, _ d: UnsafeMutablePointer<UInt8>, _ outWidth: Int,
    _ k: UnsafePointer<Int32>, _ ksize: Int, _ bounds: UnsafePointer<Int>, channels: Int
  ) {
    let half: Int32 = 1 << (precisionBits - 1)
    for xx in 0..<outWidth {
      let xmin = bounds[2 * xx], count = bounds[2 * xx + 1]
      let w = k + xx * ksize
      var s0 = half, s1 = half, s2 = half, s3 = half
      var p = s + xmin * channels
      for x in 0..<max(count, 0) {
        let kx = w[x]
        s0 &+= Int32(p[0]) &* kx
        if channels > 1 { s1 &+= Int32(p[1]) &* kx }
        if channels > 2 { s2 &+= Int32(p[2]) &* kx }
        if channels > 3 { s3 &+= Int32(p[3]) &* kx }
        p += channels
      }
      let o = d + xx * channels
      o[0] = clipFixed(s0)
      if channels > 1 { o[1] = clipFixed(s1) }
      if channels > 2 { o[2] = clipFixed(s2) }
      if channels > 3 { o[3] = clipFixed(s3) }
    }
  }

  /// Channels are independent in the vertical pass, so each output row is a weighted sum of whole
  /// source rows.
  private static func verticalPass(_ image: Image, _ outHeight: Int, _ coeffs: Coefficients)
    -> Image
  {
    let stride = image.width * image.channels
    let kk = coeffs.fixedPoint
    let ksize = coeffs.ksize
    return Image.make(width: image.width, height: outHeight, format: image.format) { out in
      image.pixels.withUnsafeBufferPointer { src in
        kk.withUnsafeBufferPointer { k in
          coeffs.bounds.withUnsafeBufferPointer { bounds in
            let srcBase = src.baseAddress!, dstBase = out.baseAddress!
            let kBase = k.baseAddress!, bBase = bounds.baseAddress!
            Parallel.forRanges(outHeight, costPerItem: stride * ksize * 2) { range in
              let acc = UnsafeMutablePointer<Int32>.allocate(capacity: max(stride, 1))
              defer { acc.deallocate() }
              for yy in range {
                let ymin = bBase[2 * yy], count = bBase[2 * yy + 1]
                let w = kBase + yy * ksize
                acc.update(repeating: 1 << (precisionBits - 1), count: stride)
                for y in 0..<max(count, 0) {
                  let row = srcBase + (ymin + y) * stride
                  let ky = w[y]
                  for i in 0..<stride { acc[i] &+= Int32(row[i]) &* ky }
                }
                let d = dstBase + yy * stride
                for i in 0..<stride { d[i] = clipFixed(acc[i]) }
              }
            }
          }
        }
      }
    }
  }

  /// `clip8(ss)`: drop the 22 fraction bits (arithmetic shift) and clamp to 0...255.
  @inline(__always) static func clipFixed(_ v: Int32) -> UInt8 {
    let x = v >> precisionBits
    return x < 0 ? 0 : (x > 255 ? 255 : UInt8(truncatingIfNeeded: x))
  }
}
