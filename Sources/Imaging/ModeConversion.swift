extension Image {
  /// The image in another pixel format, converted like Pillow's `Image.convert(mode)`.
  ///
  /// matches: Pillow 13 `Convert.c`: gray → RGB replicates; RGB → gray is ITU-R 601-2 luma
  /// `(r*19595 + g*38470 + b*7471 + 0x8000) >> 16`; RGBA → RGB and LA → L/RGB drop alpha (no
  /// compositing: that is `convert("RGB")` in Pillow); adding alpha sets it to 255.
  public func converted(to target: PixelFormat) -> Image {
    if target == format { return self }
    let n = width * height
    let source = format
    return Image.make(width: width, height: height, format: target) { out in
      pixels.withUnsafeBufferPointer { src in
        let sc = source.channels, tc = target.channels
        for i in 0..<n {
          let p = i * sc
          let gray: UInt8
          let alpha: UInt8 = source.hasAlpha ? src[p + sc - 1] : 255
          var r: UInt8 = 0, g: UInt8 = 0, b: UInt8 = 0
          switch source {
          case .gray, .grayAlpha:
            gray = src[p]
            r = gray; g = gray; b = gray
          case .rgb, .rgba:
            r = src[p]; g = src[p + 1]; b = src[p + 2]
            gray = luma(r, g, b)
          }
          let q = i * tc
          switch target {
          case .gray: out[q] = gray
          case .grayAlpha:
            out[q] = gray
            out[q + 1] = alpha
          case .rgb:
            out[q] = r; out[q + 1] = g; out[q + 2] = b
          case .rgba:
            out[q] = r; out[q + 1] = g; out[q + 2] = b; out[q + 3] = alpha
          }
        }
      }
    }
  }

  /// Pillow's `convert("RGB")`.
  public func convertedToRGB() -> Image { converted(to: .rgb) }

  /// RGB for CLIP preprocessing, as transformers 5.23 `image_transforms.convert_to_rgb` does for
  /// PIL images: an image with alpha (an "A" band or tRNS transparency — here: `format.hasAlpha`)
  /// is converted to RGBA and alpha-composited **onto an opaque white background** with
  /// `PIL.Image.alpha_composite`, then converted to RGB; other images are just `convert("RGB")`.
  ///
  /// matches: transformers 5.23 `convert_to_rgb` + Pillow 13 `ImagingAlphaComposite` (integer
  /// arithmetic with 7 extra bits, so a pixel with alpha 0 becomes exactly white).
  public func compositedOnWhiteToRGB() -> Image {
    guard format.hasAlpha else { return converted(to: .rgb) }
    let rgba = converted(to: .rgba)
    let n = width * height
    return Image.make(width: width, height: height, format: .rgb) { out in
      rgba.pixels.withUnsafeBufferPointer { src in
        for i in 0..<n {
          let (r, g, b) = alphaCompositeOverOpaqueWhite(
            src[4 * i], src[4 * i + 1], src[4 * i + 2], src[4 * i + 3])
          out[3 * i] = r
          out[3 * i + 1] = g
          out[3 * i + 2] = b
        }
      }
    }
  }

  /// Pillow's "RGBA" → "RGBa" / "LA" → "La": colour channels multiplied by alpha
  /// (`MULDIV255(c, a)`), as `Image.resize` does before filtering images with alpha.
  func premultiplied() -> Image {
    precondition(format.hasAlpha)
    var out = self
    let c = channels
    out.pixels.withUnsafeMutableBufferPointer { p in
      for i in 0..<(width * height) {
        let a = Int(p[i * c + c - 1])
        for j in 0..<(c - 1) { p[i * c + j] = UInt8(mulDiv255(Int(p[i * c + j]), a)) }
      }
    }
    return out
  }

  /// Pillow's "RGBa" → "RGBA" / "La" → "LA": colour channels divided by alpha,
  /// `alpha in {0, 255} ? c : clip8(255 * c / alpha)` (integer division).
  func unpremultiplied() -> Image {
    precondition(format.hasAlpha)
    var out = self
    let c = channels
    out.pixels.withUnsafeMutableBufferPointer { p in
      for i in 0..<(width * height) {
        let a = Int(p[i * c + c - 1])
        if a == 0 || a == 255 { continue }
        for j in 0..<(c - 1) { p[i * c + j] = clip8(255 * Int(p[i * c + j]) / a) }
      }
    }
    return out
  }
}

/// ITU-R 601-2 luma with Pillow's 16-bit fixed-point weights (`L24`).
@inline(__always) func luma(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> UInt8 {
  UInt8(truncatingIfNeeded: (Int(r) * 19595 + Int(g) * 38470 + Int(b) * 7471 + 0x8000) >> 16)
}

/// Pillow's `ImagingAlphaComposite(dst, src)` for one pixel with `dst` = opaque white:
/// `coef1 = sa*255*255*128 / outa255`, `coef2 = 255*128 - coef1`,
/// `out = SHIFTFORDIV255(src*coef1 + dst*coef2 + (0x80 << 7)) >> 7`.
@inline(__always) func alphaCompositeOverOpaqueWhite(_ r: UInt8, _ g: UInt8, _ b: UInt8, _ a: UInt8)
  -> (UInt8, UInt8, UInt8)
{
  if a == 0 { return (255, 255, 255) }
  let precisionBits = 7
  let dstA = 255, dstC = 255
  let sa = Int(a)
  let blend = dstA * (255 - sa)
  let outA255 = sa * 255 + blend
  let coef1 = sa * 255 * 255 * (1 << precisionBits) / outA255
  let coef2 = 255 * (1 << precisionBits) - coef1
  @inline(__always) func channel(_ s: UInt8) -> UInt8 {
    let t = Int(s) * coef1 + dstC * coef2 + (0x80 << precisionBits)
    return UInt8(truncatingIfNeeded: (((t >> 8) + t) >> 8) >> precisionBits)
  }
  return (channel(r), channel(g), channel(b))
}
