import TensorCore

/// Channel layout of an 8-bit `Image`; the raw value is the number of interleaved channels.
///
/// matches: Pillow 13 modes "L" (gray), "LA" (gray + alpha), "RGB", "RGBA" (straight, not
/// premultiplied alpha). Pillow's "1", "P", "I;16" and "CMYK" modes are converted when decoding
/// (see `ImageCodec`), so they never appear here.
public enum PixelFormat: Int, Sendable, Equatable, CaseIterable, CustomStringConvertible {
  case gray = 1
  case grayAlpha = 2
  case rgb = 3
  case rgba = 4

  /// Samples per pixel.
  public var channels: Int { rawValue }
  /// Whether the last channel is alpha.
  public var hasAlpha: Bool { self == .grayAlpha || self == .rgba }
  /// The Pillow mode name ("L", "LA", "RGB", "RGBA").
  public var pillowMode: String {
    switch self {
    case .gray: "L"
    case .grayAlpha: "LA"
    case .rgb: "RGB"
    case .rgba: "RGBA"
    }
  }
  public var description: String { pillowMode }

  /// The format with `channels` samples per pixel, or nil for counts other than 1...4.
  public init?(channels: Int) { self.init(rawValue: channels) }
}

/// An 8-bit image: `height` rows of `width` pixels, each pixel `format.channels` interleaved bytes,
/// rows stored top to bottom without padding (`pixels.count == width * height * channels`).
///
/// matches: the pixel buffer of a Pillow 13 `Image` in mode L/LA/RGB/RGBA (`np.array(im)`).
/// Value type; `pixels` is an ordinary copy-on-write array.
public struct Image: Sendable, Equatable {
  public private(set) var width: Int
  public private(set) var height: Int
  public private(set) var format: PixelFormat
  /// Interleaved samples, row-major. Mutate through `withUnsafeMutablePixels`.
  public internal(set) var pixels: [UInt8]

  /// Samples per pixel (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA).
  public var channels: Int { format.channels }
  /// Bytes per row.
  public var rowBytes: Int { width * format.channels }

  /// An image over `pixels`; throws if the count does not match the size or a size is negative.
  public init(width: Int, height: Int, format: PixelFormat, pixels: [UInt8]) throws(ImageIOError) {
    guard width >= 0, height >= 0 else {
      throw .invalidImage(reason: "negative size \(width)x\(height)")
    }
    guard pixels.count == width * height * format.channels else {
      throw .invalidImage(
        reason: "\(width)x\(height) \(format) needs \(width * height * format.channels) bytes, got \(pixels.count)")
    }
    self.width = width
    self.height = height
    self.format = format
    self.pixels = pixels
  }

  /// An image over `pixels` with `channels` samples per pixel (1...4).
  public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws(ImageIOError) {
    guard let format = PixelFormat(channels: channels) else {
      throw .invalidImage(reason: "unsupported channel count \(channels)")
    }
    try self.init(width: width, height: height, format: format, pixels: pixels)
  }

  /// An image with every sample set to `fill` (like `Image.new(mode, size, fill)` with one value).
  public init(width: Int, height: Int, format: PixelFormat, fill: UInt8 = 0) {
    precondition(width >= 0 && height >= 0, "negative size \(width)x\(height)")
    self.width = width
    self.height = height
    self.format = format
    self.pixels = [UInt8](repeating: fill, count: width * height * format.channels)
  }

  /// Internal initialiser for kernels that produced a correctly sized buffer.
  init(uncheckedWidth width: Int, height: Int, format: PixelFormat, pixels: [UInt8]) {
    assert(pixels.count == width * height * format.channels)
    self.width = width
    self.height = height
    self.format = format
    self.pixels = pixels
  }

  /// Builds an image by letting `body` fill a freshly allocated, zeroed buffer.
  static func make(
    width: Int, height: Int, format: PixelFormat,
    _ body: (UnsafeMutableBufferPointer<UInt8>) throws -> Void
  ) rethrows -> Image {
    var pixels = [UInt8](repeating: 0, count: width * height * format.channels)
    try pixels.withUnsafeMutableBufferPointer { try body($0) }
    return Image(uncheckedWidth: width, height: height, format: format, pixels: pixels)
  }

  /// Write access to the samples (the count is fixed).
  public mutating func withUnsafeMutablePixels<R>(
    _ body: (UnsafeMutableBufferPointer<UInt8>) throws -> R
  ) rethrows -> R {
    try pixels.withUnsafeMutableBufferPointer { try body($0) }
  }

  /// The samples of pixel (`x`, `y`).
  public subscript(x: Int, y: Int) -> ArraySlice<UInt8> {
    let start = (y * width + x) * channels
    return pixels[start..<start + channels]
  }
}
