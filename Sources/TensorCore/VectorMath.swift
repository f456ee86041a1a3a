/// Vectorised transcendental functions on 16 lanes that follow PyTorch's CPU kernels operation
/// for operation, so that activations agree with the reference to the last bit where possible:
/// - `exp` is the algorithm of Sleef's `expf_u10` (what ATen's `Vectorized<float>::exp` calls);
/// - `erf` is ATen's `Vectorized<float>::erf` (Abramowitz–Stegun 7.1.26 with FMA, |ε| ≤ 1.5e-7);
/// - `silu`, `sigmoid`, `gelu` use the same operator order as ATen's activation kernels.
public enum VectorMath {
  public typealias V = SIMD16<Float>

  /// e^x for every lane (Sleef `expf_u10` algorithm, ≤ 1 ulp): 0 below −104, +inf above 100.
  @inline(__always)
  public static func exp(_ d: V) -> V {
    // rint(d·log2 e) via the 1.5·2²³ trick (exact for |d| < 2²², ties to even), which also gives
    // the integer in the low mantissa bits; Swift's generic SIMD rounding/conversion is scalar.
    let magic = V(repeating: 12_582_912)
    let shifted = d * V(repeating: 1.442_695_040_888_963_4) + magic
    let q = shifted - magic
    let qi = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- SIMD16(repeating: 0x4B40_0000)
    var s = d.addingProduct(q, V(repeating: -0.693_145_751_953_125))
    s = s.addingProduct(q, V(repeating: -1.428_606_765_330_187_045e-6))
    var u = V(repeating: 0.000_198_527_617_612_853_646_278_381)
    u = V(repeating: 0.001_393_043_552_525_341_510_772_71).addingProduct(u, s)
    u = V(repeating: 0.008_333_360_776_305_198_669_433_59).addingProduct(u, s)
    u = V(repeating: 0.041_666_485_369_205_474_853_515_6).addingProduct(u, s)
    u = V(repeating: 0.166_666_671_633_720_397_949_219).addingProduct(u, s)
    u = V(repeating: 0.5).addingProduct(u, s)
    u = V(repeating: 1) + s.addingProduct(s * s, u)
    // ldexp in two halves so that subnormal results and q up to ±128 are exact.
    let half = qi &>> 1
    u = u * pow2(half) * pow2(qi &- half)
    u.replace(with: V(repeating: 0), where: d .< V(repeating: -104))
    u.replace(with: V(repeating: .infinity), where: d .> V(repeating: 100))
    return u
  }

  /// Lane-wise maximum (NaN-oblivious). Swift's `pointwiseMax` and `clamped` handle NaN lane by
  /// lane in scalar code; this compiles to one compare and one blend.
  @inline(__always)
  public static func max(_ a: V, _ b: V) -> V { a.replacing(with: b, where: b .> a) }

  /// Lane-wise minimum (NaN-oblivious).
  @inline(__always)
  public static func min(_ a: V, _ b: V) -> V { a.replacing(with: b, where: b .< a) }

  /// Largest lane (a reduction; use once per row, not per element).
  @inline(__always)
  public static func horizontalMax(_ a: V) -> Float {
    let lo = a.lowHalf
    let hi = a.highHalf
    let h8 = lo.replacing(with: hi, where: hi .> lo)
    var m = h8[0]
    for i in 1..<8 where h8[i] > m { m = h8[i] }
    return m
  }

  @inline(__always)
  static func pow2(_ e: SIMD16<Int32>) -> V {
    unsafeBitCast((e &+ 127) &<< 23, to: V.self)
  }

  /// Scalar e^x consistent with the vector version.
  @inline(__always)
  public static func exp(_ x: Float) -> Float { exp(V(repeating: x))[0] }

  /// `1 / (1 + e^−x)` (ATen's sigmoid kernel order).
  @inline(__always)
  public static func sigmoid(_ x: V) -> V {
    V(repeating: 1) / (exp(V(repeating: 0) - x) + V(repeating: 1))
  }

  /// `x / (1 + e^−x)` (ATen's SiLU kernel).
  @inline(__always)
  public static func silu(_ x: V) -> V {
    x / (V(repeating: 1) + exp(-x))
  }

  /// Exact-form GELU `x·0.5·(1 + erf(x/√2))` (ATen's `GeluType::None` kernel).
  @inline(__always)
  public static func gelu(_ x: V) -> V {
    x * V(repeating: 0.5) * (V(repeating: 1) + erf(x * V(repeating: 0.707_106_781_186_547_524_4)))
  }

  /// QuickGELU `x · sigmoid(1.702·x)` (transformers `QuickGELUActivation`).
  @inline(__always)
  public static func quickGelu(_ x: V) -> V {
    x * sigmoid(V(repeating: 1.702) * x)
  }

  /// The error function as ATen's `Vectorized<float>::erf`:
  /// `sign(x)·(1 − r(t)·t·e^(−x²))`, `t = 1/(1 + 0.3275911·|x|)`.
  @inline(__always)
  public static func erf(_ x: V) -> V {
    let signBits = unsafeBitCast(x, to: SIMD16<UInt32>.self) & SIMD16(repeating: 0x8000_0000)
    let a = unsafeBitCast(unsafeBitCast(x, to: SIMD16<UInt32>.self) & SIMD16(repeating: 0x7FFF_FFFF), to: V.self)
    let one = V(repeating: 1)
    let t = one / one.addingProduct(V(repeating: 0.327_591_1), a)
    var r = V(repeating: -1.453_152_027).addingProduct(V(repeating: 1.061_405_429), t)
    r = V(repeating: 1.421_413_741).addingProduct(r, t)
    r = V(repeating: -0.284_496_736).addingProduct(r, t)
    r = V(repeating: 0.254_829_592).addingProduct(r, t)
    let e = exp(V(repeating: 0) - x * x)
    let y = one.addingProduct((V(repeating: 0) - e) * t, r)
    return unsafeBitCast(unsafeBitCast(y, to: SIMD16<UInt32>.self) ^ signBits, to: V.self)
  }
}
