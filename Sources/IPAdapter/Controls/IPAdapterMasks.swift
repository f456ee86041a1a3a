import Foundation
import Imaging
import TensorCore

/// Regional masks for image prompts: preprocessing of mask images, the per-layer downsampling to
/// per-query weights (`AttentionSource.queryWeights`), and diffusers' consistency checks.
///
/// How a mask acts (diffusers `IPAdapterAttnProcessor2_0` with `ip_adapter_masks`): for a masked
/// adapter every image gets **its own** attention source (its own softmax over its own tokens) and
/// contributes `scale_i · Attn(Q, K_i, V_i) ⊙ m_i`, where `m_i = downsample(mask_i, Lq)` weights
/// each query position; the same mask serves both guidance branches. Unmasked adapters keep one
/// source over all their images' tokens.
///
/// Size policy (decided as diffusers does, plus a warning): `preprocess` always resizes a mask to
/// the generation size (stretching it), warning when its aspect ratio differs by more than 1 %;
/// `downsample` takes the grid from the mask's own aspect ratio and, where `Lq` does not fit it,
/// zero-pads or truncates the flattened mask with diffusers' warning text (`aspectRatioWarning`).
///
/// matches: diffusers 0.42.1 `IPAdapterMaskProcessor.preprocess` / `.downsample` and the mask
/// checks of `IPAdapterAttnProcessor2_0.__call__`. Known limitations: the mask batch dimension must
/// be 1 (diffusers also accepts one mask per batch row); `queryWeights` are Float32.
public enum IPAdapterMasks {
  /// diffusers' `UserWarning` text for a padded or truncated mask.
  public static let aspectRatioWarning =
    "The aspect ratio of the mask does not match the aspect ratio of the output image. Please update your masks or adjust the output size for optimal performance."

  /// `IPAdapterMaskProcessor().preprocess(images, height, width)`: Pillow LANCZOS resize to
  /// `height × width` (rounded down to multiples of 8), grayscale (`convert("L")`), `/255`,
  /// binarised at 0.5. Returns `[N, H, W]` of 0/1 and a warning per stretched mask.
  public static func preprocess(
    _ images: [Image], height: Int, width: Int, maxPixels: Int = ImageLimits.default.maxPixels
  ) throws -> (masks: Tensor, warnings: [String]) {
    guard !images.isEmpty else { throw IPAdapterControlError.maskMismatch("no mask image given") }
    guard height >= 8, width >= 8 else {
      throw IPAdapterControlError.badShape(name: "mask target size", expected: "at least 8×8", got: [height, width])
    }
    let target = Double(width) / Double(height)
    var warnings: [String] = []
    for (i, im) in images.enumerated() where im.width > 0 && im.height > 0 {
      let aspect = Double(im.width) / Double(im.height)
      if abs(aspect - target) > 0.01 * target {
        warnings.append("mask \(i) (\(im.width)×\(im.height)) is stretched to the \(width)×\(height) output")
      }
    }
    var processor = VaeImageProcessor.mask()
    processor.maxPixels = maxPixels
    let out = try processor.preprocess(images, height: height, width: width)  // [N, H, W, 1]
    return (out.reshaped([out.shape[0], out.shape[1], out.shape[2]]), warnings)
  }

  /// `[N, H, W]` masks of one adapter in diffusers' per-adapter layout `[1, N, H, W]`.
  public static func forAdapter(_ masks: Tensor) throws -> Tensor {
    guard masks.rank == 3 else { throw IPAdapterControlError.badShape(name: "masks", expected: "[N, H, W]", got: masks.shape) }
    return masks.reshaped([1] + masks.shape)
  }

  /// The grid `(mask_h, mask_w)` diffusers resamples a `height × width` mask to for `queryCount`
  /// queries: `mask_h = int(sqrt(Lq / (W/H)))`, plus 1 when `Lq % mask_h ≠ 0`; `mask_w = Lq // mask_h`.
  public static func grid(height: Int, width: Int, queryCount: Int) throws -> (height: Int, width: Int) {
    let ratio = Double(width) / Double(height)
    var h = Int((Double(queryCount) / ratio).squareRoot())
    guard h > 0 else {
      throw IPAdapterControlError.badShape(
        name: "mask", expected: "an aspect ratio that leaves at least one row for \(queryCount) queries", got: [height, width])
    }
    if queryCount % h != 0 { h += 1 }
    let w = queryCount / h
    guard w > 0 else {
      throw IPAdapterControlError.badShape(
        name: "mask", expected: "an aspect ratio that leaves at least one column for \(queryCount) queries", got: [height, width])
    }
    return (h, w)
  }

  /// `IPAdapterMaskProcessor.downsample` for one mask `[H, W]` (or `[1, H, W]`): bicubic resize to
  /// `grid(…)`, flatten row-major, zero-pad or truncate to `queryCount` (then `warning` is
  /// diffusers' text). Returns the per-query weights `[1, Lq]` for `AttentionSource.queryWeights`.
  public static func downsample(_ mask: Tensor, queryCount: Int) throws -> (weights: Tensor, warning: String?) {
    let m = mask.rank == 3 && mask.shape[0] == 1 ? mask.reshaped(Array(mask.shape.dropFirst())) : mask
    guard m.rank == 2, m.shape[0] > 0, m.shape[1] > 0, queryCount > 0 else {
      throw IPAdapterControlError.badShape(name: "mask", expected: "[H, W] or [1, H, W] with a positive query count", got: mask.shape)
    }
    let (gh, gw) = try grid(height: m.shape[0], width: m.shape[1], queryCount: queryCount)
    let resized = bicubicResize(m.scalars(), height: m.shape[0], width: m.shape[1], toHeight: gh, toWidth: gw)
    var flat = [Float](repeating: 0, count: queryCount)
    for i in 0..<min(queryCount, resized.count) { flat[i] = resized[i] }
    let warning = gh * gw == queryCount ? nil : aspectRatioWarning
    return (try Tensor(shape: [1, queryCount], floats: flat), warning)
  }

  /// InstantID's region weights for a layer of `queryCount` queries: the region `[H, W]` through
  /// `F.interpolate(region, scale_factor=1/r, mode="nearest")` with `r = √(H·W/queryCount)`
  /// (output `⌊H/r⌋ × ⌊W/r⌋`, source index `min(⌊dst·r⌋, size − 1)` in float32, as torch), flattened
  /// to `[1, queryCount]`.
  /// - Throws: when the downsampled region does not have `queryCount` cells (the reference fails
  ///   its reshape there).
  public static func nearestRegion(_ region: Tensor, queryCount: Int) throws -> Tensor {
    guard region.rank == 2, region.shape[0] > 0, region.shape[1] > 0, queryCount > 0 else {
      throw IPAdapterControlError.badShape(name: "region mask", expected: "[H, W] with a positive query count", got: region.shape)
    }
    let (h, w) = (region.shape[0], region.shape[1])
    let ratio = (Double(h * w) / Double(queryCount)).squareRoot()
    let factor = 1 / ratio
    let (oh, ow) = (Int((Double(h) * factor).rounded(.down)), Int((Double(w) * factor).rounded(.down)))
    guard oh * ow == queryCount else {
      throw IPAdapterControlError.badShape(
        name: "region mask", expected: "a size that downsamples to \(queryCount) queries", got: region.shape)
    }
    let step = Float(1 / factor)
    func source(_ dst: Int, _ size: Int, _ out: Int) -> Int {
      if out == size { return dst }
      if out == 2 * size { return dst >> 1 }
      return min(Int((Float(dst) * step).rounded(.down)), size - 1)
    }
    let values = region.scalars()
    var out = [Float](repeating: 0, count: queryCount)
    for y in 0..<oh {
      let sy = source(y, h, oh)
      for x in 0..<ow { out[y * ow + x] = values[sy * w + source(x, w, ow)] }
    }
    return try Tensor(shape: [1, queryCount], floats: out)
  }

  /// `torch.nn.functional.interpolate(x, size, mode="bilinear", align_corners=False)` (no
  /// antialias) of one `height × width` plane, in float32 as torch's CPU kernel: source
  /// `(dst + 0.5)·in/out − 0.5` clamped at 0, `h0·(w0·v00 + w1·v01) + h1·(w0·v10 + w1·v11)`.
  public static func bilinearResize(_ x: [Float], height: Int, width: Int, toHeight: Int, toWidth: Int) -> [Float] {
    precondition(x.count == height * width && toHeight > 0 && toWidth > 0)
    func taps(_ input: Int, _ output: Int) -> [(i0: Int, i1: Int, l0: Float, l1: Float)] {
      let scale = Float(input) / Float(output)
      return (0..<output).map { o in
        let real = max(scale * (Float(o) + 0.5) - 0.5, 0)
        let i0 = Int(real)
        let i1 = i0 + (i0 < input - 1 ? 1 : 0)
        let l1 = real - Float(i0)
        return (i0, i1, 1 - l1, l1)
      }
    }
    let ty = taps(height, toHeight)
    let tx = taps(width, toWidth)
    var out = [Float](repeating: 0, count: toHeight * toWidth)
    for (oy, r) in ty.enumerated() {
      for (ox, c) in tx.enumerated() {
        let v00 = x[r.i0 * width + c.i0], v01 = x[r.i0 * width + c.i1]
        let v10 = x[r.i1 * width + c.i0], v11 = x[r.i1 * width + c.i1]
        out[oy * toWidth + ox] = r.l0 * (c.l0 * v00 + c.l1 * v01) + r.l1 * (c.l0 * v10 + c.l1 * v11)
      }
    }
    return out
  }

  /// `torch.nn.functional.interpolate(x, size, mode="bicubic", align_corners=False)` (no
  /// antialias) of one `height × width` plane: source coordinate `(dst + 0.5)·in/out − 0.5`
  /// (not clamped), Keys cubic with a = −0.75, border taps clamped to the edge, float32
  /// arithmetic with the four taps of each row combined first, then the four rows, in the fused
  /// multiply-add order of torch's x86-64 CPU kernel (bit-exact there; other torch builds differ
  /// in the last bit).
  public static func bicubicResize(_ x: [Float], height: Int, width: Int, toHeight: Int, toWidth: Int) -> [Float] {
    precondition(x.count == height * width && toHeight > 0 && toWidth > 0)
    func taps(_ input: Int, _ output: Int) -> [(index: [Int], weight: [Float])] {
      let scale = Float(input) / Float(output)
      return (0..<output).map { o in
        let real = scale * (Float(o) + 0.5) - 0.5
        let i0 = min(Int(real.rounded(.down)), input - 1)
        let t = min(max(real - Float(i0), 0), 1)
        let a: Float = -0.75
        func near(_ v: Float) -> Float { ((a + 2) * v - (a + 3)) * v * v + 1 }
        // ((a·v − 5a)·v + 8a)·v − 4a with the middle step fused, as torch's x86-64 build evaluates it.
        func far(_ v: Float) -> Float { (8 * a).addingProduct(a * v - 5 * a, v) * v - 4 * a }
        let w = [far(t + 1), near(t), near(1 - t), far((1 - t) + 1)]
        let idx = (0..<4).map { j in max(min(i0 - 1 + j, input - 1), 0) }
        return (idx, w)
      }
    }
    // torch's `output = t0·w0; output += t_k·w_k` as its x86-64 AVX2 build contracts it into FMAs:
    // fma(t3, w3, fma(t2, w2, fma(t0, w0, t1·w1))).
    func fused(_ t0: Float, _ t1: Float, _ t2: Float, _ t3: Float, _ w: [Float]) -> Float {
      (t1 * w[1]).addingProduct(t0, w[0]).addingProduct(t2, w[2]).addingProduct(t3, w[3])
    }
    let ys = taps(height, toHeight), xs = taps(width, toWidth)
    var out = [Float](repeating: 0, count: toHeight * toWidth)
    for (oy, ty) in ys.enumerated() {
      for (ox, tx) in xs.enumerated() {
        var r = [Float](repeating: 0, count: 4)
        for j in 0..<4 {
          let row = ty.index[j] * width
          r[j] = fused(x[row + tx.index[0]], x[row + tx.index[1]], x[row + tx.index[2]], x[row + tx.index[3]], tx.weight)
        }
        out[oy * toWidth + ox] = fused(r[0], r[1], r[2], r[3], ty.weight)
      }
    }
    return out
  }

  /// diffusers' mask checks for `ip_adapter_masks`: one entry per adapter (nil = unmasked), each
  /// `[1, N, H, W]` with N = that adapter's image count, and — where per-image scales are given —
  /// one scale per masked image. Messages follow diffusers' wording.
  public static func validate(masks: [Tensor?], imageCounts: [Int], perImageScales: [[Float]?]? = nil) throws {
    guard masks.count == imageCounts.count else {
      throw IPAdapterControlError.maskMismatch(
        "Length of ip_adapter_masks array (\(masks.count)) must match the number of IP-Adapters (\(imageCounts.count)); pass no mask for an unmasked adapter")
    }
    for (i, mask) in masks.enumerated() {
      guard let mask else { continue }
      guard mask.rank == 4 else {
        throw IPAdapterControlError.maskMismatch(
          "Each element of the ip_adapter_masks array should be a tensor with shape [1, num_images_for_ip_adapter, height, width] (got \(mask.shape) at index \(i)). Please use IPAdapterMasks.preprocess to preprocess your mask")
      }
      guard mask.shape[0] == 1 else {
        throw IPAdapterControlError.maskMismatch("mask at index \(i) must have batch size 1, got \(mask.shape[0])")
      }
      guard mask.shape[1] == imageCounts[i] else {
        throw IPAdapterControlError.maskMismatch(
          "Number of masks (\(mask.shape[1])) does not match number of ip images (\(imageCounts[i])) at index \(i)")
      }
      if let all = perImageScales, i < all.count, let scales = all[i], scales.count != mask.shape[1] {
        throw IPAdapterControlError.maskMismatch(
          "Number of masks (\(mask.shape[1])) does not match number of scales (\(scales.count)) at index \(i)")
      }
    }
  }
}
