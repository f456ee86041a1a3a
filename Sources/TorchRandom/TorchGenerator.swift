import Foundation
import TensorCore

/// Memory layout of 4-D latents, for the one place it matters here: drawing noise in torch's
/// element order.
public enum LatentLayout: String, Sendable, CaseIterable {
  /// `[N, C, H, W]`, torch's layout.
  case nchw
  /// `[N, H, W, C]`, channels last.
  case nhwc
}

/// A random number generator that reproduces PyTorch's CPU generator bit for bit.
///
/// matches: `torch.Generator("cpu").manual_seed(seed)` followed by any sequence of
/// `torch.randn(shape, generator=g, dtype=torch.float32)` and `torch.rand(...)` calls (torch 2.13),
/// and therefore diffusers' `randn_tensor(shape, generator=g)` with a single CPU generator (one
/// draw over the whole shape, in row-major order, whatever the layout the caller later gives it).
///
/// How torch draws normals (`aten/src/ATen/native/cpu/DistributionTemplates.h`):
/// - 16 or more elements: one 24-bit uniform per element first, then Box-Muller on blocks of 16
///   (pairs j, j + 8) with Cephes polynomials (see `CephesBoxMuller`); if the count is not a
///   multiple of 16, the last 16 elements are redrawn from fresh uniforms and transformed again.
/// - fewer than 16 elements: element by element in double precision from 53-bit uniforms,
///   `r = sqrt(-2 log1p(-u2))`, `theta = 2 pi u1`; `r cos(theta)` is returned and `r sin(theta)` is
///   cached in the generator for the next small draw (the cache survives across calls and is not
///   touched by the 16+ path).
///
/// Known limitations: matches torch's AVX2 kernel (any x86-64 CPU with AVX2, including AVX-512
/// machines); torch on a CPU without AVX2 (or on ARM) differs in the last bit of some values.
/// Only float32 output is provided.
public struct TorchGenerator: Sendable {
  /// The seed passed to `init` (torch's `initial_seed()`).
  public let seed: UInt64
  private var engine: MersenneTwister
  /// torch's `next_double_normal_sample_`: the sine half of the last scalar Box-Muller pair.
  private var cachedNormal: Double?

  /// A generator in the state of `torch.Generator("cpu").manual_seed(seed)`. Only the low 32 bits
  /// of `seed` select the stream, exactly as in torch.
  public init(seed: UInt64) {
    self.seed = seed
    engine = MersenneTwister(seed: seed)
    cachedNormal = nil
  }

  /// The next raw 32-bit output of the engine (torch's `CPUGeneratorImpl::random()`).
  public mutating func nextUInt32() -> UInt32 { engine.nextUInt32() }

  /// Standard normal samples with the given shape: `torch.randn(shape, generator=self)`.
  public mutating func randn(_ shape: [Int]) -> Tensor {
    let values = randnFloats(count: shape.reduce(1, *))
    // The element count matches the shape by construction.
    return try! Tensor(shape: shape, floats: values)
  }

  /// Uniform samples in [0, 1) with the given shape: `torch.rand(shape, generator=self)`.
  public mutating func rand(_ shape: [Int]) -> Tensor {
    let count = shape.reduce(1, *)
    var values = [Float](repeating: 0, count: count)
    for i in 0..<count { values[i] = nextUniformFloat() }
    return try! Tensor(shape: shape, floats: values)
  }

  /// `count` standard normal samples in torch's order.
  public mutating func randnFloats(count: Int) -> [Float] {
    precondition(count >= 0, "negative sample count \(count)")
    if count < 16 {
      return (0..<count).map { _ in Float(nextScalarNormal()) }
    }
    var values = [Float](repeating: 0, count: count)
    values.withUnsafeMutableBufferPointer { buffer in
      let data = buffer.baseAddress!
      for i in 0..<count { data[i] = nextUniformFloat() }
      var start = 0
      while start + 16 <= count {
        CephesBoxMuller.transform16(data + start)
        start += 16
      }
      if count % 16 != 0 {
        let tail = data + (count - 16)
        for i in 0..<16 { tail[i] = nextUniformFloat() }
        CephesBoxMuller.transform16(tail)
      }
    }
    return values
  }

  /// `at::uniform_real_distribution<float>(0, 1)`: the low 24 bits of one output times 2^-24.
  @inline(__always)
  private mutating func nextUniformFloat() -> Float {
    Float(engine.nextUInt32() & 0x00ff_ffff) * Float(1.0 / 16_777_216.0)
  }

  /// `at::uniform_real_distribution<double>(0, 1)`: the low 53 bits of a 64-bit draw times 2^-53.
  private mutating func nextUniformDouble() -> Double {
    Double(engine.nextUInt64() & ((1 << 53) - 1)) * (1.0 / 9_007_199_254_740_992.0)
  }

  /// `at::normal_distribution<double>(0, 1)` with torch's one-value cache.
  private mutating func nextScalarNormal() -> Double {
    if let cached = cachedNormal {
      cachedNormal = nil
      return cached * 1 + 0
    }
    let u1 = nextUniformDouble()
    let u2 = nextUniformDouble()
    let r = (-2.0 * Foundation.log1p(-u2)).squareRoot()
    let theta = 2.0 * Double.pi * u1
    cachedNormal = r * Foundation.sin(theta)
    return r * Foundation.cos(theta) * 1 + 0
  }
}

extension TorchGenerator {
  /// `torch.randn(nchwShape)` returned in `layout`: the values torch would put at `[n, c, h, w]`
  /// are at `[n, c, h, w]` (`.nchw`) or `[n, h, w, c]` (`.nhwc`). `nchwShape` must be 4-D for
  /// `.nhwc`; other ranks are returned as drawn.
  public mutating func randn(nchw nchwShape: [Int], layout: LatentLayout) -> Tensor {
    let values = randnFloats(count: nchwShape.reduce(1, *))
    guard layout == .nhwc, nchwShape.count == 4 else {
      return try! Tensor(shape: nchwShape, floats: values)
    }
    let (n, c, h, w) = (nchwShape[0], nchwShape[1], nchwShape[2], nchwShape[3])
    var out = [Float](repeating: 0, count: values.count)
    for b in 0..<n {
      for ch in 0..<c {
        for y in 0..<h {
          for x in 0..<w {
            out[((b * h + y) * w + x) * c + ch] = values[((b * c + ch) * h + y) * w + x]
          }
        }
      }
    }
    return try! Tensor(shape: [n, h, w, c], floats: out)
  }

  /// Noise for a tensor of `shape` stored in `layout`, drawn as torch draws it for the NCHW
  /// equivalent (`randn_tensor(model_output.shape)` in a diffusers scheduler).
  public mutating func randn(like shape: [Int], layout: LatentLayout) -> Tensor {
    guard layout == .nhwc, shape.count == 4 else { return randn(shape) }
    return randn(nchw: [shape[0], shape[3], shape[1], shape[2]], layout: .nhwc)
  }
}
