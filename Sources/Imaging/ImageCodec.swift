#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Container format of an encoded image, detected from its first bytes (PNG signature
/// `89 50 4E 47 0D 0A 1A 0A`, JPEG SOI `FF D8 FF`).
///
/// matches: Pillow 13 `Image.format` ("PNG"/"JPEG"), which is also chosen by content, not extension.
public enum ImageFileFormat: String, Sendable, Equatable {
  case png
  case jpeg
}

/// A decoded image with what the file said about it.
///
/// `alphaFromTransparency` is true when the alpha channel came from a PNG tRNS chunk (Pillow keeps
/// such images in mode P/L/RGB with `info["transparency"]`); either way Pillow and transformers
/// treat the image as having alpha, exactly like the alpha channel here.
///
/// matches: Pillow 13 `Image.open(...)` → (`im.convert(...)` pixels, `im.format`, `im.text`).
public struct DecodedImage: Sendable, Equatable {
  public var image: Image
  public var fileFormat: ImageFileFormat
  /// PNG tEXt/zTXt/iTXt chunks in file order (empty for JPEG).
  public var text: [PNGTextChunk]
  public var alphaFromTransparency: Bool

  /// The value of the first text chunk named `key`.
  public func text(forKey key: String) -> String? { text.first { $0.key == key }?.value }
}

/// Reading and writing image files: PNG and JPEG decoding (chosen by magic bytes, never by the
/// file extension) and atomic PNG writing with text chunks.
///
/// matches: Pillow 13 `Image.open(path)` + the conversion to L/LA/RGB/RGBA described on
/// `PNGCodec`/`JPEGCodec`; known limitations are listed there.
public enum ImageCodec {
  /// The format whose signature starts `bytes`, if any.
  public static func detectFormat(_ bytes: UnsafeRawBufferPointer) -> ImageFileFormat? {
    if bytes.count >= 8 && zip(bytes.prefix(8), PNGCodec.signature).allSatisfy({ $0 == $1 }) {
      return .png
    }
    if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF { return .jpeg }
    return nil
  }

  /// Decodes PNG or JPEG data; `source` names it in errors. An image with more pixels than
  /// `limits.maxInputPixels` is refused from its header, before its pixels are allocated.
  public static func decode(
    _ bytes: [UInt8], source: String = "<memory>", limits: ImageLimits = .default
  ) throws(ImageIOError) -> DecodedImage {
    guard bytes.count <= limits.maxInputFileBytes else {
      throw .unsupported(path: source, reason: "\(bytes.count) bytes is more than the \(limits.maxInputFileBytes)-byte limit")
    }
    // Typed throws do not pass through `withUnsafeBytes` yet, so carry the result out.
    let result: Result<DecodedImage, ImageIOError> = bytes.withUnsafeBytes { raw in
      do throws(ImageIOError) {
        switch detectFormat(raw) {
        case .png: return .success(try PNGCodec.decode(raw, source: source, maxPixels: limits.maxInputPixels))
        case .jpeg: return .success(try JPEGCodec.decode(raw, source: source, maxPixels: limits.maxInputPixels))
        case nil: return .failure(.unknownFormat(path: source))
        }
      } catch {
        return .failure(error)
      }
    }
    return try result.get()
  }

  /// Reads and decodes the file at `path` (files larger than `limits.maxInputFileBytes` are
  /// refused before they are read).
  public static func decode(contentsOfFile path: String, limits: ImageLimits = .default) throws(ImageIOError)
    -> DecodedImage
  {
    try decode(try readFile(path, maxBytes: limits.maxInputFileBytes), source: path, limits: limits)
  }

  /// Encodes `image` as an 8-bit PNG with the given text chunks, in order.
  /// `compressionLevel` is zlib's 0...9 (Pillow's default is 6).
  public static func encodePNG(
    _ image: Image, text: [PNGTextChunk] = [], compressionLevel: Int = 6
  ) throws(ImageIOError) -> [UInt8] {
    try PNGCodec.encode(
      image, text: text, compressionLevel: min(max(compressionLevel, 0), 9), path: "<memory>")
  }

  /// Encodes `image` as PNG and writes it atomically: the bytes go to a temporary file in the same
  /// directory, which is flushed and then renamed over `path`. A failure leaves no partial file.
  public static func writePNG(
    _ image: Image, to path: String, text: [PNGTextChunk] = [], compressionLevel: Int = 6
  ) throws(ImageIOError) {
    let bytes: [UInt8]
    do throws(ImageIOError) {
      bytes = try encodePNG(image, text: text, compressionLevel: compressionLevel)
    } catch {
      if case .encodingFailed(_, let reason) = error { throw .encodingFailed(path: path, reason: reason) }
      throw error
    }
    try writeAtomically(bytes, to: path)
  }

  // MARK: - Files

  static func errnoDescription(_ code: Int32) -> String { String(cString: strerror(code)) }

  /// The whole file as bytes (refused when larger than `maxBytes`).
  public static func readFile(_ path: String, maxBytes: Int = ImageLimits.default.maxInputFileBytes) throws(ImageIOError)
    -> [UInt8]
  {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw .unreadable(path: path, reason: errnoDescription(errno)) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw .unreadable(path: path, reason: errnoDescription(errno)) }
    guard (info.st_mode & S_IFMT) == S_IFREG else {
      throw .unreadable(path: path, reason: "not a regular file")
    }
    guard Int(info.st_size) <= maxBytes else {
      throw .unsupported(path: path, reason: "\(info.st_size) bytes is more than the \(maxBytes)-byte limit")
    }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(Int(info.st_size))
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
      let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n < 0 {
        if errno == EINTR { continue }
        throw .unreadable(path: path, reason: errnoDescription(errno))
      }
      if n == 0 { break }
      guard bytes.count + n <= maxBytes else {  // the file grew while it was read
        throw .unsupported(path: path, reason: "more than the \(maxBytes)-byte limit")
      }
      bytes.append(contentsOf: chunk[0..<n])
    }
    return bytes
  }

  /// Writes `bytes` to a temporary file next to `path`, fsyncs it and renames it into place.
  public static func writeAtomically(_ bytes: [UInt8], to path: String) throws(ImageIOError) {
    let slash = path.lastIndex(of: "/")
    let directory = slash.map { String(path[..<$0]) }.map { $0.isEmpty ? "/" : $0 } ?? "."
    let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
    guard !name.isEmpty else { throw .unwritable(path: path, reason: "path names a directory") }
    var template = Array("\(directory)/.\(name).tmp-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { throw .unwritable(path: path, reason: errnoDescription(errno)) }
    let temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    var failure: String? = nil
    bytes.withUnsafeBytes { raw in
      var offset = 0
      while offset < raw.count {
        let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
        if n < 0 {
          if errno == EINTR { continue }
          failure = errnoDescription(errno)
          return
        }
        offset += n
      }
    }
    if failure == nil && fsync(fd) != 0 { failure = errnoDescription(errno) }
    // mkstemp creates 0600; give the file the usual permissions (0666 minus umask).
    if failure == nil {
      let mask = umask(0)
      umask(mask)
      if fchmod(fd, 0o666 & ~mask) != 0 { failure = errnoDescription(errno) }
    }
    if close(fd) != 0 && failure == nil { failure = errnoDescription(errno) }
    if failure == nil && rename(temporary, path) != 0 { failure = errnoDescription(errno) }
    if let failure {
      unlink(temporary)
      throw .unwritable(path: path, reason: failure)
    }
  }
}

extension Image {
  /// Decodes the PNG or JPEG file at `path` (format from its signature, not its extension),
  /// within `limits`.
  public init(contentsOfFile path: String, limits: ImageLimits = .default) throws(ImageIOError) {
    self = try ImageCodec.decode(contentsOfFile: path, limits: limits).image
  }

  /// Writes the image as PNG atomically (see `ImageCodec.writePNG`).
  public func writePNG(to path: String, text: [PNGTextChunk] = []) throws(ImageIOError) {
    try ImageCodec.writePNG(self, to: path, text: text)
  }
}

// MARK: - Pillow integer helpers shared by the converters

/// Pillow's `MULDIV255(a, b)`: `(a * b + 128 + ((a * b + 128) >> 8)) >> 8`, i.e. round(a*b/255).
@inline(__always) func mulDiv255(_ a: Int, _ b: Int) -> Int {
  let t = a * b + 128
  return ((t >> 8) + t) >> 8
}

/// Pillow's `CLIP8`.
@inline(__always) func clip8(_ v: Int) -> UInt8 { UInt8(min(max(v, 0), 255)) }
