extension Image {
  /// Box-averages `factorX` x `factorY` blocks of the integer `box` (left, top, right, bottom);
  /// the last column/row average the partial blocks.
  ///
  /// matches: Pillow 13 `Image.reduce` / `ImagingReduce` for 8-bit images: full 1x2, 2x1, 2x2 and
  /// 4x4 blocks round with `(sum + n/2) >> log2(n)`, all other blocks (and every partial edge block)
  /// with `((sum + n/2) * m) >> 24`, `m = UInt32(Float(2^32) / Float(256 n))` in 32-bit arithmetic.
  /// Used by `resized(…, reducingGap:)`; unlike `Image.reduce` it does not premultiply alpha itself
  /// (the resize caller already did).
  func reduced(factorX: Int, factorY: Int, box: (Int, Int, Int, Int)) -> Image {
    precondition(factorX >= 1 && factorY >= 1, "scale must be > 0")
    precondition(box.0 >= 0 && box.1 >= 0 && box.2 <= width && box.3 <= height, "bad reduce box")
    precondition(box.2 > box.0 && box.3 > box.1, "box can't be empty")
    if factorX == 1 && factorY == 1 {
      return cropped(left: box.0, top: box.1, right: box.2, bottom: box.3)
    }
    let boxWidth = box.2 - box.0, boxHeight = box.3 - box.1
    let outWidth = (boxWidth + factorX - 1) / factorX
    let outHeight = (boxHeight + factorY - 1) / factorY
    let c = channels, stride = width * c
    let fullShift: UInt32? =
      switch (factorX, factorY) {
      case (1, 2), (2, 1): 1
      case (2, 2): 2
      case (4, 4): 4
      default: nil
      }
    return Image.make(width: outWidth, height: outHeight, format: format) { out in
      pixels.withUnsafeBufferPointer { src in
        for y in 0..<outHeight {
          let y0 = box.1 + y * factorY, y1 = min(y0 + factorY, box.3)
          for x in 0..<outWidth {
            let x0 = box.0 + x * factorX, x1 = min(x0 + factorX, box.2)
            let n = (y1 - y0) * (x1 - x0)
            let full = n == factorX * factorY
            let amend = UInt32(n / 2)
            let multiplier = Self.reduceMultiplier(n)
            for j in 0..<c {
              var sum: UInt32 = 0
              for yy in y0..<y1 {
                let row = yy * stride
                for xx in x0..<x1 { sum &+= UInt32(src[row + xx * c + j]) }
              }
              let value: UInt32
              if full, let fullShift {
                value = (sum &+ amend) >> fullShift
              } else {
                value = ((sum &+ amend) &* multiplier) >> 24
              }
              out[(y * outWidth + x) * c + j] = UInt8(truncatingIfNeeded: value)
            }
          }
        }
      }
    }
  }

  /// Pillow's `division_UINT32(n, 8)`: `(UINT32)(4294967296.0f / (float)(256 * n))`.
  private static func reduceMultiplier(_ n: Int) -> UInt32 {
    UInt32(Float(4_294_967_296.0) / Float(UInt32(256 * n)))
  }
}
