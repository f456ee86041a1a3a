import CImageCodecs

/// One PNG text chunk (tEXt, or iTXt when the value is not Latin-1), e.g. the A1111-style
/// `parameters` entry with the generation settings.
///
/// matches: Pillow 13 `PngInfo.add_text(key, value)` (tEXt if the value encodes as Latin-1,
/// else uncompressed iTXt) and `im.text` on reading (tEXt/zTXt/iTXt all returned).
public struct PNGTextChunk: Sendable, Equatable {
  public var key: String
  public var value: String
  public init(key: String, value: String) {
    self.key = key
    self.value = value
  }
}

/// PNG decoding and encoding through libpng 1.6.
///
/// Decoding matches Pillow 13's PNG plugin followed by the conversion to one of the four
/// `PixelFormat`s: palette → RGB (RGBA if tRNS), 1/2/4-bit gray scaled to 8 bits, tRNS → alpha,
/// 16-bit RGB/RGBA/gray+alpha → high byte (Pillow's "RGB;16B"/"RGBA;16B"/"LA;16B"), 16-bit gray →
/// Pillow's "I;16" → "L" conversion, which clips at 255 instead of scaling. No gamma/ICC handling
/// (Pillow applies none either). As in Pillow, missing data after the image data (the last IDAT
/// CRC, IEND, trailing chunks) is tolerated; unlike Pillow, a *wrong* IDAT CRC is an error.
/// Known limitation: for 16-bit RGB and 2/4-bit gray images with tRNS, libpng compares the
/// transparent colour at the stored bit depth, while Pillow compares it against the converted
/// 8-bit pixel (and so rarely matches); the alpha channel can differ from Pillow there.
enum PNGCodec {
  static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

  /// Largest accepted decoded buffer (guards against decompression bombs in a 32-bit-sized header).
  static let maxDecodedBytes = 1 << 31
  /// The most a byte of deflate data can expand to (1032 for zlib's longest matches), rounded up.
  static let maxInflation = 1_040

  static func decode(_ data: UnsafeRawBufferPointer, source: String, maxPixels: Int) throws(ImageIOError)
    -> DecodedImage
  {
    if let repaired = completedTail(data) {
      let result: Result<DecodedImage, ImageIOError> = repaired.withUnsafeBytes { raw in
        Result { () throws(ImageIOError) in try decodeComplete(raw, source: source, maxPixels: maxPixels) }
      }
      return try result.get()
    }
    return try decodeComplete(data, source: source, maxPixels: maxPixels)
  }

  private static func decodeComplete(_ data: UnsafeRawBufferPointer, source: String, maxPixels: Int)
    throws(ImageIOError) -> DecodedImage
  {
    let bytes = data.bindMemory(to: UInt8.self)
    // libpng keeps a pointer to the reader between calls, so it needs a stable heap address.
    let reader = UnsafeMutablePointer<ipa_png_reader>.allocate(capacity: 1)
    reader.initialize(to: ipa_png_reader())
    defer {
      ipa_png_reader_destroy(reader)
      reader.deallocate()
    }
    var header = ipa_png_header()

    func failure() -> ImageIOError {
      if reader.pointee.truncated != 0 { return .truncated(path: source, format: "PNG") }
      let message = withUnsafeBytes(of: &reader.pointee.message) {
        String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
      }
      return .corruptPNG(path: source, message: message.isEmpty ? "unknown libpng error" : message)
    }

    guard ipa_png_begin(reader, bytes.baseAddress, bytes.count, &header) == 0 else {
      throw failure()
    }
    let width = Int(header.width), height = Int(header.height)
    try ImageLimits.check(width: width, height: height, limit: maxPixels, what: source)
    let rowBytes = Int(header.rowbytes)
    guard rowBytes.multipliedReportingOverflow(by: height).partialValue <= maxDecodedBytes,
      !rowBytes.multipliedReportingOverflow(by: height).overflow
    else {
      throw .unsupported(path: source, reason: "\(width)x\(height) is too large to decode")
    }
    // Deflate expands at most ~1032:1, so the file must be large enough for what the header
    // declares: a tiny file claiming a huge image is refused before its buffer is allocated.
    guard rowBytes * height <= Self.maxInflation * data.count + 65_536 else {
      throw .corruptPNG(
        path: source,
        message: "\(width)x\(height) needs \(rowBytes * height) bytes, more than \(data.count) compressed bytes can hold")
    }
    var raw = [UInt8](repeating: 0, count: rowBytes * height)
    let status = raw.withUnsafeMutableBufferPointer {
      ipa_png_read_image(reader, $0.baseAddress, rowBytes, header.height)
    }
    guard status == 0 else { throw failure() }
    // Like Pillow, which stops at the end of the image data: a missing or damaged tail (last IDAT
    // CRC, IEND, chunks after IDAT) does not fail the decode; only text chunks there are lost.
    _ = ipa_png_read_end(reader)

    let channels = Int(header.channels)
    guard let format = PixelFormat(channels: channels) else {
      throw .unsupported(path: source, reason: "\(channels) channels after decoding")
    }
    let pixels: [UInt8]
    if header.bit_depth == 16 {
      pixels = reduce16(
        raw, count: width * height, channels: channels,
        clipFirstChannel: header.color_type == PNG_COLOR_TYPE_GRAY)
    } else {
      pixels = raw
    }
    let image = Image(uncheckedWidth: width, height: height, format: format, pixels: pixels)
    return DecodedImage(
      image: image, fileFormat: .png, text: readText(reader),
      alphaFromTransparency: header.has_trns != 0)
  }

  /// Pillow reads IDAT data without looking at its CRC and stops after the image data, so a file
  /// that ends inside the CRC of a complete IDAT chunk still decodes there. libpng needs that CRC
  /// before it returns the last row; this returns a copy with the CRC recomputed and an IEND chunk
  /// appended, or nil when the data does not end that way.
  static func completedTail(_ data: UnsafeRawBufferPointer) -> [UInt8]? {
    var offset = 8
    while offset + 8 <= data.count {
      let length = data[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
      let type = Array(data[offset + 4..<offset + 8])
      let dataEnd = offset + 8 + length
      if dataEnd + 4 <= data.count {
        if type == Array("IEND".utf8) { return nil }
        offset = dataEnd + 4
        continue
      }
      guard type == Array("IDAT".utf8), dataEnd <= data.count else { return nil }
      var repaired = Array(data[0..<dataEnd])
      let crc = crc32(repaired[(offset + 4)..<dataEnd])
      repaired += [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)]
      repaired += [0, 0, 0, 0, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82]  // IEND
      return repaired
    }
    return nil
  }

  /// CRC-32 (ISO 3309, as used by PNG chunks).
  static func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes {
      crc ^= UInt32(b)
      for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return crc ^ 0xFFFF_FFFF
  }

  /// 16-bit big-endian samples → 8 bits: the high byte, except gray from 16-bit grayscale files,
  /// which Pillow keeps as "I;16" and converts with `v > 255 ? 255 : v`.
  private static func reduce16(_ raw: [UInt8], count: Int, channels: Int, clipFirstChannel: Bool)
    -> [UInt8]
  {
    var out = [UInt8](repeating: 0, count: count * channels)
    raw.withUnsafeBufferPointer { src in
      out.withUnsafeMutableBufferPointer { dst in
        for i in 0..<(count * channels) {
          let hi = src[2 * i], lo = src[2 * i + 1]
          if clipFirstChannel && i % channels == 0 {
            dst[i] = hi == 0 ? lo : 255
          } else {
            dst[i] = hi
          }
        }
      }
    }
    return out
  }

  private static func readText(_ reader: UnsafeMutablePointer<ipa_png_reader>) -> [PNGTextChunk] {
    var textPointer: png_textp? = nil
    var count: Int32 = 0
    _ = png_get_text(reader.pointee.png, reader.pointee.info, &textPointer, &count)
    guard let textPointer, count > 0 else { return [] }
    var chunks: [PNGTextChunk] = []
    for i in 0..<Int(count) {
      let t = textPointer[i]
      guard let keyPointer = t.key else { continue }
      let key = latin1String(UnsafeRawPointer(keyPointer), count: strlen(keyPointer))
      var value = ""
      if let textBytes = t.text {
        if t.compression >= PNG_ITXT_COMPRESSION_NONE {
          value = String(decoding: UnsafeRawBufferPointer(start: textBytes, count: t.itxt_length), as: UTF8.self)
        } else {
          value = latin1String(UnsafeRawPointer(textBytes), count: t.text_length)
        }
      }
      chunks.append(PNGTextChunk(key: key, value: value))
    }
    return chunks
  }

  private static func latin1String(_ p: UnsafeRawPointer, count: Int) -> String {
    let bytes = UnsafeRawBufferPointer(start: p, count: count)
    return String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
  }

  /// Encodes an 8-bit image; text values that are not Latin-1 go into iTXt chunks (UTF-8).
  static func encode(
    _ image: Image, text: [PNGTextChunk], compressionLevel: Int, path: String
  ) throws(ImageIOError) -> [UInt8] {
    // Validate and lay out the text chunks as C strings.
    var keys: [[CChar]] = []
    var values: [[CChar]] = []
    var itxt: [Bool] = []
    for chunk in text {
      let keyScalars = Array(chunk.key.unicodeScalars)
      guard (1...79).contains(keyScalars.count),
        keyScalars.allSatisfy({ (0x20...0x7E).contains($0.value) || (0xA1...0xFF).contains($0.value) }),
        keyScalars.first != " ", keyScalars.last != " "
      else {
        throw .encodingFailed(
          path: path, reason: "invalid PNG text key \"\(chunk.key)\" (1-79 printable Latin-1 characters)")
      }
      guard !chunk.value.unicodeScalars.contains("\0") else {
        throw .encodingFailed(path: path, reason: "PNG text value for \"\(chunk.key)\" contains NUL")
      }
      keys.append(keyScalars.map { CChar(bitPattern: UInt8($0.value)) } + [0])
      if chunk.value.unicodeScalars.allSatisfy({ $0.value <= 0xFF }) {
        values.append(chunk.value.unicodeScalars.map { CChar(bitPattern: UInt8($0.value)) } + [0])
        itxt.append(false)
      } else {
        values.append(chunk.value.utf8.map { CChar(bitPattern: $0) } + [0])
        itxt.append(true)
      }
    }
    guard image.width > 0, image.height > 0, image.width <= 0x7FFF_FFFF, image.height <= 0x7FFF_FFFF else {
      throw .encodingFailed(path: path, reason: "cannot encode a \(image.width)x\(image.height) image")
    }

    var writer = ipa_png_writer()
    defer { ipa_png_writer_destroy(&writer) }
    let status: Int32 = withCStringArrays(keys, values) { keyPointers, valuePointers in
      var chunks = (0..<keys.count).map { i in
        ipa_png_text(
          key: keyPointers[i], value: valuePointers[i], value_length: values[i].count - 1,
          itxt: itxt[i] ? 1 : 0)
      }
      return image.pixels.withUnsafeBufferPointer { pixels in
        chunks.withUnsafeMutableBufferPointer { c in
          ipa_png_encode(
            &writer, pixels.baseAddress, UInt32(image.width), UInt32(image.height),
            Int32(image.channels), c.baseAddress, Int32(c.count), Int32(compressionLevel))
        }
      }
    }
    guard status == 0, let buffer = writer.buffer else {
      let message = withUnsafeBytes(of: &writer.message) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
      throw .encodingFailed(path: path, reason: message.isEmpty ? "unknown libpng error" : message)
    }
    return Array(UnsafeBufferPointer(start: buffer, count: writer.size))
  }

  /// Calls `body` with stable pointers to each NUL-terminated array.
  private static func withCStringArrays<R>(
    _ a: [[CChar]], _ b: [[CChar]],
    _ body: ([UnsafePointer<CChar>], [UnsafePointer<CChar>]) -> R
  ) -> R {
    // Copy into one contiguous allocation so the pointers stay valid for the whole call.
    let total = (a + b).reduce(0) { $0 + $1.count }
    let storage = UnsafeMutablePointer<CChar>.allocate(capacity: max(total, 1))
    defer { storage.deallocate() }
    var offset = 0
    func place(_ arrays: [[CChar]]) -> [UnsafePointer<CChar>] {
      arrays.map { bytes in
        let start = storage + offset
        start.initialize(from: bytes, count: bytes.count)
        offset += bytes.count
        return UnsafePointer(start)
      }
    }
    let pa = place(a)
    let pb = place(b)
    return body(pa, pb)
  }
}
