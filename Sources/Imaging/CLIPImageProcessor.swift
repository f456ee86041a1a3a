import Foundation
import TensorCore

/// A `size`/`crop_size` entry of an image processor config: an int, a `[height, width]` list, or a
/// dict with `shortest_edge` (+ optional `longest_edge`) or `height`/`width`.
///
/// matches: transformers 5.23 `get_size_dict` (an int `size` means `shortest_edge` for CLIP,
/// `default_to_square=False`; an int `crop_size` means a square).
public struct ImageSizeSpec: Sendable, Equatable {
  public var shortestEdge: Int?
  public var longestEdge: Int?
  public var height: Int?
  public var width: Int?

  public init(shortestEdge: Int? = nil, longestEdge: Int? = nil, height: Int? = nil, width: Int? = nil) {
    self.shortestEdge = shortestEdge
    self.longestEdge = longestEdge
    self.height = height
    self.width = width
  }

  public static func shortest(_ edge: Int) -> ImageSizeSpec { ImageSizeSpec(shortestEdge: edge) }
  public static func square(_ side: Int) -> ImageSizeSpec { ImageSizeSpec(height: side, width: side) }
}

/// CLIP vision preprocessing: RGB conversion, shortest-edge resize, centre crop, rescale and
/// normalise, producing `pixel_values` in NHWC.
///
/// matches: transformers 5.23 `CLIPImageProcessor` as diffusers 0.42 gets it in an environment
/// without torchvision — transformers falls back to `CLIPImageProcessorPil` (`PilBackend`), the
/// PIL/numpy path: `convert_to_rgb` (alpha composited onto white), `get_resize_output_image_size`
/// (`new_long = int(size * long / short)`), Pillow resize, numpy `center_crop`, `rescale` in float64
/// then cast to float32, `normalize` `(x - mean) / std` in float32. Output equals `pixel_values`
/// transposed to NHWC. Known limitations: the torchvision backend (used when torchvision is
/// installed) resizes with torch's antialiased kernels and fuses rescale/normalise, so its values
/// differ slightly; `do_pad`, `max_height`/`max_width` sizes are not supported.
public struct CLIPImageProcessor: Sendable, Equatable, Decodable {
  public var doResize: Bool = true
  public var size: ImageSizeSpec = .shortest(224)
  public var resample: Resampling = .bicubic
  public var doCenterCrop: Bool = true
  public var cropSize: ImageSizeSpec = .square(224)
  public var doRescale: Bool = true
  public var rescaleFactor: Double = 1.0 / 255.0
  public var doNormalize: Bool = true
  /// OPENAI_CLIP_MEAN / OPENAI_CLIP_STD (kept in double like the Python floats; cast to float32
  /// when normalising, as numpy does).
  public var imageMean: [Double] = [0.48145466, 0.4578275, 0.40821073]
  public var imageStd: [Double] = [0.26862954, 0.26130258, 0.27577711]
  public var doConvertRGB: Bool = true
  /// Most pixels the resized image may have (not a config key: the engine's budget, see
  /// `ImageLimits.maxPixels`). A 1×999,999 image resized to a 224 shortest edge would otherwise be
  /// 224 × 223,999,776 pixels.
  public var maxPixels: Int = ImageLimits.default.maxPixels

  /// Largest side a config's `size`/`crop_size` may name.
  public static let maximumConfiguredSide = 16_384

  /// The CLIP defaults (224 shortest edge, 224x224 crop, bicubic).
  public init() {}

  /// Decodes a `preprocessor_config.json`; absent keys keep the CLIP defaults.
  public init(configFile path: String) throws {
    let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
    guard size <= 16 << 20 else {
      throw ImageIOError.unsupported(path: path, reason: "\(size) bytes, more than the 16 MiB a preprocessor config may have")
    }
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    self = try JSONDecoder().decode(CLIPImageProcessor.self, from: data)
  }

  private enum Keys: String, CodingKey {
    case doResize = "do_resize", size, resample, doCenterCrop = "do_center_crop"
    case cropSize = "crop_size", doRescale = "do_rescale", rescaleFactor = "rescale_factor"
    case doNormalize = "do_normalize", imageMean = "image_mean", imageStd = "image_std"
    case doConvertRGB = "do_convert_rgb"
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: Keys.self)
    func value<T: Decodable>(_ key: Keys, _ fallback: T) throws -> T {
      try c.decodeIfPresent(T.self, forKey: key) ?? fallback
    }
    doResize = try value(.doResize, doResize)
    doCenterCrop = try value(.doCenterCrop, doCenterCrop)
    doRescale = try value(.doRescale, doRescale)
    rescaleFactor = try value(.rescaleFactor, rescaleFactor)
    doNormalize = try value(.doNormalize, doNormalize)
    doConvertRGB = try value(.doConvertRGB, doConvertRGB)
    if let raw = try c.decodeIfPresent(Int.self, forKey: .resample) {
      guard let r = Resampling(rawValue: raw) else {
        throw DecodingError.dataCorruptedError(
          forKey: .resample, in: c, debugDescription: "unsupported resample filter \(raw)")
      }
      resample = r
    }
    if let s = try Self.decodeSize(c, .size, intMeansShortestEdge: true) { size = s }
    if let s = try Self.decodeSize(c, .cropSize, intMeansShortestEdge: false) { cropSize = s }
    imageMean = try Self.decodeFloats(c, .imageMean) ?? imageMean
    imageStd = try Self.decodeFloats(c, .imageStd) ?? imageStd
    guard [1, 3].contains(imageMean.count), [1, 3].contains(imageStd.count) else {
      throw DecodingError.dataCorruptedError(
        forKey: .imageMean, in: c, debugDescription: "image_mean/image_std need 1 or 3 values")
    }
    guard size.shortestEdge != nil || (size.height != nil && size.width != nil) else {
      throw DecodingError.dataCorruptedError(
        forKey: .size, in: c, debugDescription: "size needs shortest_edge or height and width")
    }
    guard cropSize.height != nil && cropSize.width != nil else {
      throw DecodingError.dataCorruptedError(
        forKey: .cropSize, in: c, debugDescription: "crop_size needs height and width")
    }
    let sides = [size.shortestEdge, size.longestEdge, size.height, size.width, cropSize.height, cropSize.width]
    for side in sides.compactMap({ $0 }) where !(1...Self.maximumConfiguredSide).contains(side) {
      throw DecodingError.dataCorruptedError(
        forKey: .size, in: c, debugDescription: "size/crop_size \(side) is outside 1…\(Self.maximumConfiguredSide)")
    }
    guard rescaleFactor.isFinite, (imageMean + imageStd).allSatisfy(\.isFinite), !imageStd.contains(0) else {
      throw DecodingError.dataCorruptedError(
        forKey: .imageStd, in: c, debugDescription: "rescale_factor, image_mean and image_std must be finite (image_std non-zero)")
    }
  }

  private struct SizeDict: Decodable {
    var shortest_edge: Int?
    var longest_edge: Int?
    var height: Int?
    var width: Int?
  }

  private static func decodeSize(
    _ c: KeyedDecodingContainer<Keys>, _ key: Keys, intMeansShortestEdge: Bool
  ) throws -> ImageSizeSpec? {
    guard c.contains(key), try !c.decodeNil(forKey: key) else { return nil }
    if let n = try? c.decode(Int.self, forKey: key) {
      return intMeansShortestEdge ? .shortest(n) : .square(n)
    }
    if let pair = try? c.decode([Int].self, forKey: key), pair.count == 2 {
      return ImageSizeSpec(height: pair[0], width: pair[1])
    }
    let d = try c.decode(SizeDict.self, forKey: key)
    return ImageSizeSpec(
      shortestEdge: d.shortest_edge, longestEdge: d.longest_edge, height: d.height, width: d.width)
  }

  private static func decodeFloats(_ c: KeyedDecodingContainer<Keys>, _ key: Keys) throws -> [Double]? {
    guard c.contains(key), try !c.decodeNil(forKey: key) else { return nil }
    if let v = try? c.decode(Double.self, forKey: key) { return [v] }
    return try c.decode([Double].self, forKey: key)
  }

  // MARK: - Preprocessing

  /// `pixel_values` for one image, `[1, H, W, 3]` NHWC Float32 (`[1, 224, 224, 3]` for CLIP).
  /// With `do_convert_rgb: false`, a non-RGB image is still converted to RGB (transformers would
  /// fail in `normalize` with a channel-count error instead).
  /// - Throws: `ImageIOError.tooLarge` when the resize would exceed `maxPixels`.
  public func preprocess(_ image: Image) throws(ImageIOError) -> Tensor {
    try preprocess([image])
  }

  /// `pixel_values` for a batch, `[N, H, W, 3]`; every image must produce the same size
  /// (always true with a centre crop).
  public func preprocess(_ images: [Image]) throws(ImageIOError) -> Tensor {
    var prepared: [Image] = []
    for image in images { prepared.append(try preparedImage(image)) }
    guard let first = prepared.first else { throw .invalidImage(reason: "no images to preprocess") }
    let h = first.height, w = first.width
    guard prepared.allSatisfy({ $0.height == h && $0.width == w }) else {
      throw .invalidImage(reason: "the preprocessed images differ in size (the config has no centre crop)")
    }
    let mean = (0..<3).map { Float(imageMean[imageMean.count == 1 ? 0 : $0]) }
    let std = (0..<3).map { Float(imageStd[imageStd.count == 1 ? 0 : $0]) }
    let perImage = h * w * 3
    let out = Tensor(uninitializedShape: [prepared.count, h, w, 3])
    let dst = out.mutableFloatPointer
    // Per-level lookup: every uint8 value maps to one float per channel.
    var table = [Float](repeating: 0, count: 256 * 3)
    for v in 0..<256 {
      for ch in 0..<3 {
        // numpy: rescale -> (uint8 as float64) * factor, cast to float32;
        // normalize -> float32 (x - mean) / std. Without rescale, normalize casts uint8 to float32.
        var x = doRescale ? Float(Double(v) * rescaleFactor) : Float(v)
        if doNormalize { x = (x - mean[ch]) / std[ch] }
        table[v * 3 + ch] = x
      }
    }
    for (n, image) in prepared.enumerated() {
      image.pixels.withUnsafeBufferPointer { src in
        let base = dst + n * perImage
        for i in 0..<perImage { base[i] = table[Int(src[i]) * 3 + i % 3] }
      }
    }
    return out
  }

  /// The 8-bit image after RGB conversion, resize and centre crop (before rescale/normalise).
  /// - Throws: `ImageIOError.tooLarge` when the resized or cropped image would have more than
  ///   `maxPixels` pixels, `.invalidImage` when a side would be 0.
  public func preparedImage(_ image: Image) throws(ImageIOError) -> Image {
    try ImageLimits.check(width: image.width, height: image.height, limit: Int.max, what: "image prompt")
    var rgb =
      doConvertRGB ? image.compositedOnWhiteToRGB()
      : image.format == .rgb ? image : image.converted(to: .rgb)
    if doResize {
      let (h, w) = Self.resizeOutputSize(height: rgb.height, width: rgb.width, size: size)
      try ImageLimits.check(
        width: w, height: h, limit: maxPixels, what: "the CLIP resize of a \(image.width)×\(image.height) image prompt")
      rgb = rgb.resized(width: w, height: h, filter: resample)
    }
    if doCenterCrop, let ch = cropSize.height, let cw = cropSize.width {
      try ImageLimits.check(width: cw, height: ch, limit: maxPixels, what: "the CLIP centre crop")
      rgb = rgb.centerCropped(height: ch, width: cw)
    }
    return rgb
  }

  /// Output (height, width) of the resize step.
  ///
  /// matches: transformers 5.23 `PilBackend.resize`: `shortest_edge` + `longest_edge` →
  /// `get_size_with_aspect_ratio`; `shortest_edge` → `get_resize_output_image_size(…,
  /// default_to_square=False)`: `short, long = sorted(w, h)`, `new_long = int(size * long /
  /// short)`; `height`/`width` → exactly that.
  public static func resizeOutputSize(height: Int, width: Int, size: ImageSizeSpec) -> (Int, Int) {
    if let s = size.shortestEdge, let maxSize = size.longestEdge {
      return sizeWithAspectRatio(height: height, width: width, size: s, maxSize: maxSize)
    }
    if let s = size.shortestEdge {
      let (short, long) = width <= height ? (width, height) : (height, width)
      let newShort = s
      let newLong = Int(Double(s * long) / Double(short))
      return width <= height ? (newLong, newShort) : (newShort, newLong)
    }
    precondition(size.height != nil && size.width != nil, "size needs shortest_edge or height/width")
    return (size.height!, size.width!)
  }

  /// transformers `get_size_with_aspect_ratio(image_size, size, max_size)`.
  static func sizeWithAspectRatio(height: Int, width: Int, size: Int, maxSize: Int) -> (Int, Int) {
    var size = size
    var rawSize: Double? = nil
    let minOriginal = Double(min(height, width)), maxOriginal = Double(max(height, width))
    if maxOriginal / minOriginal * Double(size) > Double(maxSize) {
      let raw = Double(maxSize) * minOriginal / maxOriginal
      rawSize = raw
      size = Int(raw.rounded(.toNearestOrEven))
    }
    if (height <= width && height == size) || (width <= height && width == size) {
      return (height, width)
    }
    if width < height {
      let oh = rawSize.map { Int($0 * Double(height) / Double(width)) } ?? Int(Double(size * height) / Double(width))
      return (oh, size)
    }
    let ow = rawSize.map { Int($0 * Double(width) / Double(height)) } ?? Int(Double(size * width) / Double(height))
    return (size, ow)
  }
}
