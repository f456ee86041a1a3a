/// Budgets for images: how large a file and a decoded image read from a stranger may be, and how
/// large an image the engine may make (a generated image, or a resized copy of an input).
///
/// Every size that comes from a file (a PNG/JPEG header, an image whose aspect ratio drives a
/// resize) is checked against these before anything is allocated, so a 1×999,999 image prompt or a
/// 65,535² JPEG header is a typed `ImageIOError.tooLarge`, never a 150 GB allocation.
///
/// Defaults: input files up to 1 GiB and 134,217,728 decoded pixels (a 16,384 × 8,192 panorama, a
/// 200-megapixel phone photo fits); made images up to 16,777,216 pixels (4096 × 4096).
///
/// matches: no reference (Pillow's `MAX_IMAGE_PIXELS` = 89,478,485 only warns below 2× that).
public struct ImageLimits: Sendable, Equatable {
  /// Most pixels (width × height) a decoded input image may have.
  public var maxInputPixels: Int
  /// Largest image file read.
  public var maxInputFileBytes: Int
  /// Most pixels of an image the engine makes from its inputs: the generated image and every
  /// resized copy of an input (the CLIP resize of an image prompt, an init image resized to the
  /// output size).
  public var maxPixels: Int

  public init(maxInputPixels: Int = 1 << 27, maxInputFileBytes: Int = 1 << 30, maxPixels: Int = 1 << 24) {
    self.maxInputPixels = maxInputPixels
    self.maxInputFileBytes = maxInputFileBytes
    self.maxPixels = maxPixels
  }

  /// The defaults above.
  public static let `default` = ImageLimits()

  /// Throws `tooLarge` unless `width × height` is at most `limit` (and both are positive:
  /// a zero side is `invalidImage`). `what` names the image in the message.
  public static func check(
    width: Int, height: Int, limit: Int, what: String
  ) throws(ImageIOError) {
    guard width > 0, height > 0 else {
      throw .invalidImage(reason: "\(what) would be \(width)×\(height) pixels (an empty image)")
    }
    let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
    guard !overflow, pixels <= limit else {
      throw .tooLarge(path: what, width: width, height: height, limit: limit)
    }
  }
}
