import TensorCore

/// Image ↔ tensor conversion around the VAE of Stable Diffusion pipelines, for PIL-style inputs
/// (`Image`) and NHWC tensors (diffusers uses NCHW; only the layout differs).
///
/// matches: diffusers 0.42 `VaeImageProcessor` (and its `IPAdapterMaskProcessor` and inpainting
/// `mask_processor` configurations): `preprocess` = optional crop → resize to a multiple of
/// `vae_scale_factor` (Pillow LANCZOS by default) → `convert("RGB")`/`convert("L")` →
/// `float32(x) / 255` → `2x - 1` → binarise; `postprocess` = `(x * 0.5 + 0.5).clamp(0, 1)` →
/// numpy `(x * 255).round().astype(uint8)` (round half to even, float32). Known limitations: only
/// the PIL input path of `preprocess` (tensor/numpy inputs use `torch.nn.functional.interpolate`
/// there); `postprocess` maps NaN to 0 (numpy's cast of NaN is platform-defined).
public struct VaeImageProcessor: Sendable, Equatable {
  public var doResize: Bool
  public var vaeScaleFactor: Int
  /// `resample` config ("lanczos" by default).
  public var resample: Resampling
  public var reducingGap: Double?
  public var doNormalize: Bool
  public var doBinarize: Bool
  public var doConvertRGB: Bool
  public var doConvertGrayscale: Bool
  /// Most pixels a resized image (the target, or the intermediate of `fill`/`crop`) may have:
  /// `ImageLimits.maxPixels` (not a diffusers setting).
  public var maxPixels: Int = ImageLimits.default.maxPixels

  /// `resize_mode` of `VaeImageProcessor.preprocess` (matches: diffusers 0.42 "default", "fill",
  /// "crop" for PIL inputs).
  public enum ResizeMode: String, Sendable {
    /// Stretch to the target size.
    case `default`
    /// Fit inside, centre, and fill the borders by stretching the edge rows/columns.
    case fill
    /// Cover the target, centre, and crop the excess.
    case crop
  }

  public init(
    doResize: Bool = true, vaeScaleFactor: Int = 8, resample: Resampling = .lanczos,
    reducingGap: Double? = nil, doNormalize: Bool = true, doBinarize: Bool = false,
    doConvertRGB: Bool = false, doConvertGrayscale: Bool = false
  ) {
    precondition(!(doConvertRGB && doConvertGrayscale), "do_convert_rgb and do_convert_grayscale both set")
    self.doResize = doResize
    self.vaeScaleFactor = vaeScaleFactor
    self.resample = resample
    self.reducingGap = reducingGap
    self.doNormalize = doNormalize
    self.doBinarize = doBinarize
    self.doConvertRGB = doConvertRGB
    self.doConvertGrayscale = doConvertGrayscale
  }

  /// Stable Diffusion inpainting's `mask_processor` and diffusers' `IPAdapterMaskProcessor`:
  /// no normalisation, binarised, converted to grayscale (output `[N, H, W, 1]` of 0/1).
  public static func mask(vaeScaleFactor: Int = 8) -> VaeImageProcessor {
    VaeImageProcessor(
      vaeScaleFactor: vaeScaleFactor, doNormalize: false, doBinarize: true, doConvertGrayscale: true)
  }

  /// `VaeImageProcessor.blur`: Pillow's `GaussianBlur(blurFactor)` on the image (diffusers applies
  /// it to inpainting masks before `preprocess`; see `Image.gaussianBlurred(radius:)`).
  public static func blur(_ image: Image, blurFactor: Double = 4) -> Image {
    image.gaussianBlurred(radius: blurFactor)
  }

  /// (height, width) rounded down to multiples of `vae_scale_factor` (`get_default_height_width`).
  public func defaultHeightWidth(for image: Image, height: Int? = nil, width: Int? = nil) -> (Int, Int) {
    let h = height ?? image.height, w = width ?? image.width
    return (h - h % vaeScaleFactor, w - w % vaeScaleFactor)
  }

  /// `VaeImageProcessor.resize` for a PIL image.
  /// - Throws: `ImageIOError.tooLarge`/`.invalidImage` when the target (or, for `fill`/`crop`, the
  ///   aspect-preserving intermediate) would exceed `maxPixels` or have a zero side.
  public func resize(_ image: Image, height: Int, width: Int, mode: ResizeMode = .default) throws(ImageIOError)
    -> Image
  {
    try ImageLimits.check(width: width, height: height, limit: maxPixels, what: "the resized image")
    try ImageLimits.check(width: image.width, height: image.height, limit: Int.max, what: "the image to resize")
    switch mode {
    case .default:
      return image.resized(width: width, height: height, filter: resample, reducingGap: reducingGap)
    case .fill:
      return try resizeAndFill(image, width: width, height: height)
    case .crop:
      return try resizeAndCrop(image, width: width, height: height)
    }
  }

  /// The aspect-preserving intermediate size of `fill` (`cover` false) and `crop` (`cover` true),
  /// checked against `maxPixels` (an extreme aspect ratio makes it huge, or zero).
  private func intermediateSize(_ image: Image, width: Int, height: Int, cover: Bool) throws(ImageIOError) -> (Int, Int) {
    let ratio = Double(width) / Double(height)
    let srcRatio = Double(image.width) / Double(image.height)
    let widthBound = cover ? ratio > srcRatio : ratio < srcRatio
    let heightBound = cover ? ratio <= srcRatio : ratio >= srcRatio
    let scaledW = image.width.multipliedReportingOverflow(by: height)
    let scaledH = image.height.multipliedReportingOverflow(by: width)
    guard !scaledW.overflow, !scaledH.overflow else {
      throw .tooLarge(path: "the resized image", width: image.width, height: image.height, limit: maxPixels)
    }
    let srcW = widthBound ? width : scaledW.partialValue / image.height
    let srcH = heightBound ? height : scaledH.partialValue / image.width
    try ImageLimits.check(
      width: srcW, height: srcH, limit: maxPixels, what: "the aspect-preserving resize of a \(image.width)×\(image.height) image")
    return (srcW, srcH)
  }

  /// `_resize_and_fill`: the stretched edge strips use Pillow's default filter (BICUBIC) on a
  /// zero-height/width box, exactly like diffusers.
  private func resizeAndFill(_ image: Image, width: Int, height: Int) throws(ImageIOError) -> Image {
    let ratio = Double(width) / Double(height)
    let srcRatio = Double(image.width) / Double(image.height)
    let (srcW, srcH) = try intermediateSize(image, width: width, height: height, cover: false)
    let resized = image.resized(width: srcW, height: srcH, filter: resample)
    var canvas = Image(width: width, height: height, format: .rgb)
    canvas.paste(resized, x: width / 2 - srcW / 2, y: height / 2 - srcH / 2)
    if ratio < srcRatio {
      let fillHeight = height / 2 - srcH / 2
      if fillHeight > 0 {
        let w = Double(width), h = Double(resized.height)
        canvas.paste(
          resized.resized(width: width, height: fillHeight, box: ResizeBox(left: 0, top: 0, right: w, bottom: 0)),
          x: 0, y: 0)
        canvas.paste(
          resized.resized(width: width, height: fillHeight, box: ResizeBox(left: 0, top: h, right: w, bottom: h)),
          x: 0, y: fillHeight + srcH)
      }
    } else if ratio > srcRatio {
      let fillWidth = width / 2 - srcW / 2
      if fillWidth > 0 {
        let h = Double(height), w = Double(resized.width)
        canvas.paste(
          resized.resized(width: fillWidth, height: height, box: ResizeBox(left: 0, top: 0, right: 0, bottom: h)),
          x: 0, y: 0)
        canvas.paste(
          resized.resized(width: fillWidth, height: height, box: ResizeBox(left: w, top: 0, right: w, bottom: h)),
          x: fillWidth + srcW, y: 0)
      }
    }
    return canvas
  }

  /// `_resize_and_crop`.
  private func resizeAndCrop(_ image: Image, width: Int, height: Int) throws(ImageIOError) -> Image {
    let (srcW, srcH) = try intermediateSize(image, width: width, height: height, cover: true)
    let resized = image.resized(width: srcW, height: srcH, filter: resample)
    var canvas = Image(width: width, height: height, format: .rgb)
    canvas.paste(resized, x: width / 2 - srcW / 2, y: height / 2 - srcH / 2)
    return canvas
  }

  // MARK: - Preprocess

  /// `preprocess` for one image: `[1, H, W, C]` Float32 (C = 3 for RGB, 1 for gray/masks, or the
  /// image's own channel count when no conversion is configured, as diffusers does).
  public func preprocess(
    _ image: Image, height: Int? = nil, width: Int? = nil, resizeMode: ResizeMode = .default,
    cropsCoords: (left: Int, top: Int, right: Int, bottom: Int)? = nil
  ) throws(ImageIOError) -> Tensor {
    try preprocess([image], height: height, width: width, resizeMode: resizeMode, cropsCoords: cropsCoords)
  }

  /// `preprocess` for a batch; the target size comes from the first image.
  public func preprocess(
    _ images: [Image], height: Int? = nil, width: Int? = nil, resizeMode: ResizeMode = .default,
    cropsCoords: (left: Int, top: Int, right: Int, bottom: Int)? = nil
  ) throws(ImageIOError) -> Tensor {
    guard !images.isEmpty else { throw .invalidImage(reason: "no images to preprocess") }
    var batch = images
    if let c = cropsCoords {
      batch = batch.map { $0.cropped(left: c.left, top: c.top, right: c.right, bottom: c.bottom) }
    }
    if doResize {
      let (h, w) = defaultHeightWidth(for: batch[0], height: height, width: width)
      var resized: [Image] = []
      for image in batch { resized.append(try resize(image, height: h, width: w, mode: resizeMode)) }
      batch = resized
    }
    if doConvertRGB {
      batch = batch.map { $0.converted(to: .rgb) }
    } else if doConvertGrayscale {
      batch = batch.map { $0.converted(to: .gray) }
    }
    let first = batch[0]
    guard batch.allSatisfy({ $0.width == first.width && $0.height == first.height && $0.format == first.format })
    else { throw .invalidImage(reason: "the images differ in size or mode (give a target height and width)") }
    let c = first.channels, perImage = first.width * first.height * c
    let out = Tensor(uninitializedShape: [batch.count, first.height, first.width, c])
    let dst = out.mutableFloatPointer
    var table = [Float](repeating: 0, count: 256)
    for v in 0..<256 {
      var x = Float(v) / 255  // numpy: float32(uint8) / 255.0 in float32
      if doNormalize { x = 2 * x - 1 }
      if doBinarize { x = x < 0.5 ? 0 : 1 }
      table[v] = x
    }
    for (n, image) in batch.enumerated() {
      image.pixels.withUnsafeBufferPointer { src in
        for i in 0..<perImage { dst[n * perImage + i] = table[Int(src[i])] }
      }
    }
    return out
  }

  // MARK: - Postprocess

  /// The decoded tensor `[N, H, W, C]` (values around [-1, 1]) as images (output_type "pil").
  /// `doDenormalize` per image overrides `do_normalize` like diffusers' argument.
  public func postprocess(_ tensor: Tensor, doDenormalize: [Bool]? = nil) -> [Image] {
    let floats = postprocessToFloats(tensor, doDenormalize: doDenormalize)
    precondition(floats.rank == 4 && (1...4).contains(floats.shape[3]), "expected [N, H, W, C]")
    let n = floats.shape[0], h = floats.shape[1], w = floats.shape[2], c = floats.shape[3]
    let perImage = h * w * c
    let src = floats.floatPointer
    return (0..<n).map { b in
      Image.make(width: w, height: h, format: PixelFormat(channels: c)!) { out in
        for i in 0..<perImage {
          let v = (src[b * perImage + i] * 255).rounded(.toNearestOrEven)
          out[i] = v.isNaN ? 0 : UInt8(min(max(v, 0), 255))
        }
      }
    }
  }

  /// output_type "np"/"pt": `(x * 0.5 + 0.5).clamp(0, 1)` in float32 when denormalising.
  public func postprocessToFloats(_ tensor: Tensor, doDenormalize: [Bool]? = nil) -> Tensor {
    let x = tensor.asFloat32()
    precondition(x.rank == 4, "expected [N, H, W, C]")
    let n = x.shape[0], perImage = x.count / max(n, 1)
    let out = Tensor(uninitializedShape: x.shape)
    let src = x.floatPointer, dst = out.mutableFloatPointer
    for b in 0..<n {
      let denormalize = doDenormalize?[b] ?? doNormalize
      for i in (b * perImage)..<((b + 1) * perImage) {
        if denormalize {
          let v = src[i] * 0.5 + 0.5
          dst[i] = v.isNaN ? v : min(max(v, 0), 1)
        } else {
          dst[i] = src[i]
        }
      }
    }
    return out
  }
}

extension Image {
  /// Copies `source` (converted to this image's format) with its top-left corner at (`x`, `y`),
  /// clipped to the canvas.
  ///
  /// matches: Pillow 13 `Image.paste(im, (x, y))` without mask (an RGBA/LA source pasted onto RGB
  /// contributes its colour bytes; alpha is ignored, not composited).
  public mutating func paste(_ source: Image, x: Int, y: Int) {
    let src = source.format == format ? source : source.converted(to: format)
    let c = channels
    let x0 = max(x, 0), x1 = min(x + src.width, width)
    let y0 = max(y, 0), y1 = min(y + src.height, height)
    guard x0 < x1, y0 < y1 else { return }
    let canvasWidth = width
    pixels.withUnsafeMutableBufferPointer { dst in
      src.pixels.withUnsafeBufferPointer { s in
        for yy in y0..<y1 {
          let d = (yy * canvasWidth + x0) * c
          let o = ((yy - y) * src.width + (x0 - x)) * c
          for i in 0..<((x1 - x0) * c) { dst[d + i] = s[o + i] }
        }
      }
    }
  }
}
