import Imaging

/// `png` and `jpeg`: `ImageCodec.decode` of the whole input (the format is sniffed from the
/// signature, so both targets reach both decoders; they differ in seed corpus and dictionary).
/// Decoded images up to 64 Ki pixels are then converted to every pixel format and composited on
/// white, as the image processors do.
enum ImageTarget {
  static func run(_ input: [UInt8]) throws {
    let decoded = try ImageCodec.decode(input, source: "<fuzz>")
    let image = decoded.image
    check(image.width > 0 && image.height > 0, "decoded an empty image")
    check(image.pixels.count == image.width * image.height * image.channels, "pixel buffer size")
    _ = decoded.text.map { ($0.key, $0.value) }
    guard image.width * image.height <= 1 << 16 else { return }
    for format in PixelFormat.allCases { _ = image.converted(to: format) }
    _ = image.compositedOnWhiteToRGB()
  }
}
