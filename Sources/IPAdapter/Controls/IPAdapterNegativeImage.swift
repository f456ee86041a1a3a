import Foundation
import Imaging
import Models
import TensorCore
import TorchRandom

/// What the unconditional (negative) branch of classifier-free guidance sees for an adapter. The
/// tools disagree, which is why the same seed gives different pictures in each; pick the
/// convention of the tool you want to match:
///
/// | convention | global adapters (`image_embeds`) | Plus / Full-face (hidden states) | used by |
/// |---|---|---|---|
/// | `zeros` | zero embedding | encoder on **zero normalised pixels** (the mean colour) | tencent reference, diffusers, InvokeAI, Draw Things |
/// | `comfyUI` | zero embedding | encoder on a **black** image (pixel 0 → −mean/std after normalisation) | ComfyUI_IPAdapter_plus without `image_negative` |
/// | `image(x)` | encoder(x) `image_embeds` | encoder(x) hidden states | ComfyUI `image_negative` (a user image, or an `IPAdapterNoise` image) |
///
/// AUTOMATIC1111 (sd-webui-controlnet) uses zeros for global adapters (= `zeros`) but, for Plus,
/// unconditional hidden states precomputed and shipped as `clip_vision_h_uc.data`; that data is
/// not reproduced here, `zeros` is the nearest. FaceID embeddings always use zeros in ComfyUI.
///
/// matches: diffusers 0.42.1 `StableDiffusionPipeline.encode_image`; ComfyUI_IPAdapter_plus
/// @ 9d076a3 `ipadapter_execute` (`image_negative`, `torch.zeros([1, 224, 224, 3])` black image).
public enum IPAdapterNegativeImage: Sendable, Equatable {
  case zeros
  case comfyUI
  case image(Image)

  /// Accepts `zeros` (aliases `reference`, `diffusers`) and `comfyui` (alias `black`); images are
  /// passed programmatically.
  public init(name: String) throws {
    switch name.lowercased() {
    case "zeros", "zero", "reference", "diffusers": self = .zeros
    case "comfyui", "comfy", "black": self = .comfyUI
    default:
      throw IPAdapterControlError.unknownName(kind: "negative image convention", name: name, known: ["zeros", "comfyui"])
    }
  }

  /// What to feed the image encoder for the unconditional branch of an adapter whose projection
  /// reads `kind`, for an encoder of `imageSize` pixels.
  public func encoderInput(kind: CLIPVisionOutputKind, imageSize: Int = 224) -> IPAdapterUnconditionalInput {
    switch (self, kind) {
    case (.image(let x), _): .image(x)
    case (_, .imageEmbeds): .zeroEmbedding
    case (.zeros, .penultimateHiddenState): .zeroPixels
    case (.comfyUI, .penultimateHiddenState): .image(Self.black(size: imageSize))
    }
  }

  /// A black RGB square (ComfyUI's default negative for Plus models).
  public static func black(size: Int = 224) -> Image { Image(width: size, height: size, format: .rgb, fill: 0) }
}

/// The unconditional input an adapter's encoder gets (see `IPAdapterNegativeImage`).
///
/// matches: diffusers `encode_image` (`zeros_like(image_embeds)` / encoder on
/// `zeros_like(pixel_values)`) and ComfyUI `encode_image_masked(image_negative)`.
public enum IPAdapterUnconditionalInput: Sendable, Equatable {
  /// No encoder pass: a zero `image_embeds` vector.
  case zeroEmbedding
  /// The encoder on an all-zero *normalised* pixel tensor.
  case zeroPixels
  /// The encoder on this image, preprocessed like a reference image.
  case image(Image)
}

/// A random number stream for `IPAdapterNoise`: `uniform` = `torch.rand(count)`, `normal` =
/// `torch.randn(count)`. `TorchGenerator` (PyTorch's CPU generator, bit for bit) is the default,
/// which reproduces ComfyUI.
///
/// matches: the global torch CPU generator that `IPAdapterNoise.make_noise` reseeds with
/// `torch.manual_seed` (via `TorchGenerator`, which reproduces torch 2.13's CPU generator).
public protocol IPAdapterRandomSource {
  mutating func uniform(count: Int) -> [Float]
  mutating func normal(count: Int) -> [Float]
}

extension TorchGenerator: IPAdapterRandomSource {
  public mutating func uniform(count: Int) -> [Float] { rand([count]).scalars() }
  public mutating func normal(count: Int) -> [Float] { randnFloats(count: count) }
}

/// The ComfyUI "IPAdapter Noise" node: a noisy image meant as `image_negative`.
///
/// Recipe (float32, HWC order, values in [0, 1]): base = black 224² (or the given image, centre
/// cropped to a square and resized to 224²); seed = `int(sum(base)) % 1000000007`, a fresh
/// generator with that seed; then with strength s:
/// - fade: `base·(1 − s) + U·s`;
/// - dissolve: `M = U₁ < s`, `base·(1 − M) + U₂·M`;
/// - gaussian: `base + N·s`;
/// then clamp to [0, 1]; `blur > 0` (made odd) applies torchvision's `gaussian_blur` (σ =
/// 0.15·k + 0.35, reflect padding). `image` quantises like ComfyUI's `clip_preprocess`,
/// `round(255·x)` half to even.
///
/// matches: ComfyUI_IPAdapter_plus @ 9d076a3 `IPAdapterNoise.make_noise` with torchvision v2
/// `gaussian_blur`. Known limitations: `shuffle` (torchvision `ElasticTransform`) is not
/// implemented; a base image is resized with Pillow's bicubic on 8-bit pixels where ComfyUI uses
/// torch's antialiased bicubic on floats (small differences, and a possibly different seed).
public struct IPAdapterNoise: Equatable, Sendable {
  public enum Kind: String, Sendable, CaseIterable { case fade, dissolve, gaussian, shuffle }

  public var kind: Kind
  public var strength: Double
  public var blur: Int
  /// ComfyUI always works at 224 × 224.
  public static let size = 224

  public init(kind: Kind, strength: Double = 1, blur: Int = 0) throws {
    guard (0...1).contains(strength) else { throw IPAdapterControlError.outOfRange(name: "noise strength", value: strength, range: "0…1") }
    guard (0...32).contains(blur) else { throw IPAdapterControlError.outOfRange(name: "noise blur", value: Double(blur), range: "0…32") }
    guard kind != .shuffle else {
      throw IPAdapterControlError.unsupported("IPAdapter Noise type 'shuffle' (torchvision ElasticTransform) is not supported; use fade, dissolve or gaussian")
    }
    self.kind = kind
    self.strength = strength
    self.blur = blur
  }

  /// ComfyUI's seed for a base image: `int(torch.sum(image).item()) % 1000000007`.
  public static func seed(for pixels: [Float]) -> UInt64 {
    UInt64(pixels.reduce(0.0) { $0 + Double($1) }.rounded(.towardZero)) % 1_000_000_007
  }

  /// The noisy image as floats `[224·224·3]` (row-major HWC), before quantisation.
  public func floats<R: IPAdapterRandomSource>(base: Image? = nil, generator: (UInt64) -> R) -> [Float] {
    let n = Self.size * Self.size * 3
    var x = [Float](repeating: 0, count: n)
    if let base {
      let rgb = base.converted(to: .rgb)
      let side = min(rgb.width, rgb.height)
      let top = Int((Double(rgb.height - side) / 2).rounded(.toNearestOrEven))
      let left = Int((Double(rgb.width - side) / 2).rounded(.toNearestOrEven))
      let square = rgb.cropped(left: left, top: top, right: left + side, bottom: top + side)
      let resized = square.resized(width: Self.size, height: Self.size, filter: .bicubic)
      x = resized.pixels.map { Float($0) / 255 }
    }
    var rng = generator(Self.seed(for: x))
    let s = Float(strength), keep = Float(1 - strength)
    switch kind {
    case .fade:
      let u = rng.uniform(count: n)
      for i in 0..<n { x[i] = x[i] * keep + u[i] * s }
    case .dissolve:
      let m = rng.uniform(count: n).map { $0 < s ? Float(1) : 0 }
      let u = rng.uniform(count: n)
      for i in 0..<n { x[i] = x[i] * (1 - m[i]) + u[i] * m[i] }
    case .gaussian:
      let g = rng.normal(count: n)
      for i in 0..<n { x[i] = x[i] + g[i] * s }
    case .shuffle:
      break  // refused by init
    }
    x = x.map { Swift.min(Swift.max($0, 0), 1) }
    if blur > 0 { x = Self.gaussianBlur(x, size: Self.size, kernel: blur % 2 == 0 ? blur + 1 : blur) }
    return x
  }

  /// The noisy image, quantised to 8 bits as ComfyUI's CLIP preprocessing does.
  /// The noisy image with PyTorch's CPU generator, as ComfyUI makes it.
  public func image(base: Image? = nil) -> Image { image(base: base) { TorchGenerator(seed: $0) } }

  /// The noisy image with PyTorch's CPU generator, as floats (see `floats(base:generator:)`).
  public func floats(base: Image? = nil) -> [Float] { floats(base: base) { TorchGenerator(seed: $0) } }

  public func image<R: IPAdapterRandomSource>(base: Image? = nil, generator: (UInt64) -> R) -> Image {
    let x = floats(base: base, generator: generator)
    let bytes = x.map { UInt8(Swift.min(Swift.max((255 * $0).rounded(.toNearestOrEven), 0), 255)) }
    return try! Image(width: Self.size, height: Self.size, format: .rgb, pixels: bytes)
  }

  /// torchvision v2 `gaussian_blur(img, k)` with `sigma = None` on an HWC RGB square: 1-D kernel
  /// `softmax(−(x/σ)²)` over `linspace(−(k−1)/(2√2), (k−1)/(2√2), k)`, 2-D kernel = outer
  /// product, reflect padding of k/2, per-channel convolution.
  static func gaussianBlur(_ x: [Float], size: Int, kernel k: Int) -> [Float] {
    let sigma = Float(Double(k) * 0.15 + 0.35)
    let lim = Float(Double(k - 1) / (2 * 2.0.squareRoot()))
    let step = (lim - -lim) / Float(k - 1)
    let xs: [Float] = (0..<k).map { i in i < k / 2 ? -lim + step * Float(i) : lim - step * Float(k - 1 - i) }
    let logits = xs.map { -(($0 / sigma) * ($0 / sigma)) }
    let top = logits.max() ?? 0
    let e = logits.map { Foundation.exp($0 - top) }
    let total = e.reduce(0, +)
    let k1 = e.map { $0 / total }
    let half = k / 2
    func reflect(_ i: Int) -> Int { i < 0 ? -i : i >= size ? 2 * (size - 1) - i : i }
    var out = [Float](repeating: 0, count: x.count)
    for y in 0..<size {
      for xx in 0..<size {
        for c in 0..<3 {
          var acc: Float = 0
          for dy in 0..<k {
            let sy = reflect(y + dy - half)
            for dx in 0..<k {
              acc += (k1[dy] * k1[dx]) * x[(sy * size + reflect(xx + dx - half)) * 3 + c]
            }
          }
          out[(y * size + xx) * 3 + c] = acc
        }
      }
    }
    return out
  }
}
