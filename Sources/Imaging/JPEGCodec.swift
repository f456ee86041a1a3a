import CImageCodecs

/// JPEG decoding through libjpeg-turbo with libjpeg's default settings (ISLOW IDCT, fancy
/// upsampling), which are also Pillow's.
///
/// matches: Pillow 13 `JpegImagePlugin` + `convert("RGB")`: 1 component → gray, 3 → RGB (YCbCr or
/// Adobe RGB, converted by libjpeg), 4 (CMYK or YCCK) → CMYK read with Pillow's "CMYK;I" raw mode
/// (always inverted, Adobe convention) and converted to RGB with Pillow's `cmyk2rgb`.
/// Known limitations: EXIF orientation is not applied (Pillow does not either unless
/// `ImageOps.exif_transpose` is called; diffusers' `load_image` calls it); no ICC colour
/// management; 12-bit JPEGs are rejected. libjpeg-turbo versions can differ in the last bit for
/// some chroma-subsampled images (the system library here is 2.1.5; Pillow 13 wheels bundle 3.x).
enum JPEGCodec {
  /// Most progressive scans accepted (libjpeg-turbo recommends a limit; real files have < 20).
  static let maxScans = 1_000
  /// Most pixels a file may declare per byte of its size (beyond the first 2^20 pixels): twice
  /// what a complete JPEG can reach (one bit per 8×8 block, 512 pixels per byte).
  static let maxPixelsPerByte: UInt64 = 1_024

  static func decode(_ data: UnsafeRawBufferPointer, source: String, maxPixels: Int) throws(ImageIOError)
    -> DecodedImage
  {
    let bytes = data.bindMemory(to: UInt8.self)
    guard let reader = ipa_jpeg_reader_new() else {
      throw .unsupported(path: source, reason: "out of memory")
    }
    defer { ipa_jpeg_reader_free(reader) }

    func failure() -> ImageIOError {
      if reader.pointee.truncated != 0 { return .truncated(path: source, format: "JPEG") }
      let message = withUnsafeBytes(of: &reader.pointee.message) {
        String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
      }
      return .corruptJPEG(path: source, message: message.isEmpty ? "unknown libjpeg error" : message)
    }

    var header = ipa_jpeg_header()
    // libjpeg's own buffers (whole-image coefficients of progressive files: 2 bytes per sample)
    // are capped too, at 8 bytes per allowed pixel plus 64 MiB.
    let maxMemory = maxPixels >= (Int.max / 2 - (64 << 20)) / 8 ? Int.max / 2 : 8 * maxPixels + (64 << 20)
    switch ipa_jpeg_begin(
      reader, bytes.baseAddress, bytes.count, &header, UInt64(maxPixels), maxMemory, Int32(maxScans), Self.maxPixelsPerByte) {
    case 0: break
    case -2: throw .tooLarge(path: source, width: Int(header.width), height: Int(header.height), limit: maxPixels)
    default: throw failure()
    }
    let width = Int(header.width), height = Int(header.height), channels = Int(header.channels)
    let rowBytes = width * channels
    guard rowBytes * height <= PNGCodec.maxDecodedBytes else {
      throw .unsupported(path: source, reason: "\(width)x\(height) is too large to decode")
    }
    var raw = [UInt8](repeating: 0, count: rowBytes * height)
    let status = raw.withUnsafeMutableBufferPointer {
      ipa_jpeg_read_image(reader, $0.baseAddress, rowBytes)
    }
    guard status == 0 else { throw failure() }

    let image: Image
    switch channels {
    case 1: image = Image(uncheckedWidth: width, height: height, format: .gray, pixels: raw)
    case 3: image = Image(uncheckedWidth: width, height: height, format: .rgb, pixels: raw)
    case 4: image = cmykToRGB(raw, width: width, height: height)
    default: throw .unsupported(path: source, reason: "\(channels)-channel JPEG output")
    }
    return DecodedImage(image: image, fileFormat: .jpeg, text: [], alphaFromTransparency: false)
  }

  /// Pillow's "CMYK;I" unpacking (255 - v) followed by `cmyk2rgb`:
  /// `nk = 255 - k; out = clip8(nk - muldiv255(c, nk))`.
  static func cmykToRGB(_ raw: [UInt8], width: Int, height: Int) -> Image {
    Image.make(width: width, height: height, format: .rgb) { out in
      raw.withUnsafeBufferPointer { src in
        for i in 0..<(width * height) {
          let c = 255 - Int(src[4 * i]), m = 255 - Int(src[4 * i + 1])
          let y = 255 - Int(src[4 * i + 2]), k = 255 - Int(src[4 * i + 3])
          let nk = 255 - k
          out[3 * i] = clip8(nk - mulDiv255(c, nk))
          out[3 * i + 1] = clip8(nk - mulDiv255(m, nk))
          out[3 * i + 2] = clip8(nk - mulDiv255(y, nk))
        }
      }
    }
  }
}
