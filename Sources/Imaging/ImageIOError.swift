/// Every failure of image reading, decoding, encoding and writing; each case names the file (or
/// `source` label for in-memory data) and the problem. Decoding never crashes or exits on bad
/// input: libpng/libjpeg errors are caught in C (see `CImageCodecs/shim.h`) and land here.
///
/// matches: no reference type (Pillow raises `OSError`/`SyntaxError`/`UnidentifiedImageError`).
public enum ImageIOError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The file could not be opened or read (`reason` is the system error).
  case unreadable(path: String, reason: String)
  /// The bytes start with neither the PNG nor the JPEG signature.
  case unknownFormat(path: String)
  /// The data ended before the decoder was done.
  case truncated(path: String, format: String)
  /// libpng rejected the data (`message` is libpng's).
  case corruptPNG(path: String, message: String)
  /// libjpeg rejected the data (`message` is libjpeg's).
  case corruptJPEG(path: String, message: String)
  /// A valid file using a feature this decoder does not handle (12-bit JPEG, huge sizes, ...).
  case unsupported(path: String, reason: String)
  /// PNG encoding failed (libpng error, or an invalid text chunk key/value).
  case encodingFailed(path: String, reason: String)
  /// The output could not be written (directory missing or read-only, disk full, ...).
  case unwritable(path: String, reason: String)
  /// Pixel buffer and size disagree, or an unsupported channel count.
  case invalidImage(reason: String)
  /// An image (read, or to be made) larger than its budget in `ImageLimits`; `path` names the file
  /// or what was to be made.
  case tooLarge(path: String, width: Int, height: Int, limit: Int)

  public var description: String {
    switch self {
    case .unreadable(let path, let reason): "\(path): cannot read file: \(reason)"
    case .unknownFormat(let path): "\(path): not a PNG or JPEG file (unrecognised signature)"
    case .truncated(let path, let format): "\(path): truncated \(format) data"
    case .corruptPNG(let path, let message): "\(path): corrupt PNG: \(message)"
    case .corruptJPEG(let path, let message): "\(path): corrupt JPEG: \(message)"
    case .unsupported(let path, let reason): "\(path): unsupported image: \(reason)"
    case .encodingFailed(let path, let reason): "\(path): PNG encoding failed: \(reason)"
    case .unwritable(let path, let reason): "\(path): cannot write file: \(reason)"
    case .invalidImage(let reason): "invalid image: \(reason)"
    case .tooLarge(let path, let width, let height, let limit):
      "\(path): \(width)×\(height) is larger than the limit of \(limit) pixels"
    }
  }

  /// The file or source label the error is about (nil for `invalidImage`).
  public var path: String? {
    switch self {
    case .unreadable(let p, _), .unknownFormat(let p), .truncated(let p, _), .corruptPNG(let p, _),
      .corruptJPEG(let p, _), .unsupported(let p, _), .encodingFailed(let p, _),
      .unwritable(let p, _), .tooLarge(let p, _, _, _):
      p
    case .invalidImage: nil
    }
  }
}
