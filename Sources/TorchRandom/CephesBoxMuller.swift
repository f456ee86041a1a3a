/// One lane of the AVX2 Box-Muller transform PyTorch uses for float tensors of 16+ elements.
///
/// matches: `normal_fill_16_AVX2` (`aten/src/ATen/native/cpu/DistributionTemplates.h`) with
/// `log256_ps` / `sincos256_ps` from `aten/src/ATen/native/cpu/avx_mathfun.h` (Cephes single-precision
/// polynomials, not libm), as compiled into the torch 2.13 x86-64 wheel: the compiler fuses each
/// multiply into the add or subtract that consumes it, so the fused multiply-adds below are
/// deliberate and each one changes the last bit of some outputs. torch picks this kernel on every
/// CPU with AVX2 (its AVX-512 build reuses it); a CPU without AVX2 runs torch's scalar libm kernel,
/// which differs from this in the last bit.
enum CephesBoxMuller {
  /// `float(2 * pi)` as `_mm256_set1_ps(2.0f * c10::pi<double>)` rounds it.
  static let twoPi = Float(2.0 * Double.pi)

  /// Rewrites `block[0..<16]`, uniform values in [0, 1), into 16 standard normal values:
  /// lanes j and j + 8 form one Box-Muller pair (cosine into j, sine into j + 8).
  @inline(__always)
  static func transform16(_ block: UnsafeMutablePointer<Float>) {
    for j in 0..<8 {
      let u1 = 1 - block[j]  // [0, 1) -> (0, 1] for the logarithm
      let u2 = block[j + 8]
      let radius = (-2 * log(u1)).squareRoot()
      let (s, c) = sincos(twoPi * u2)
      // torch stores fmadd(n, std, mean) with std 1 and mean 0, which turns -0 into +0.
      block[j] = radius * c + 0
      block[j + 8] = radius * s + 0
    }
  }

  /// Natural logarithm for x > 0: `log256_ps`, one lane.
  @inline(__always)
  static func log(_ input: Float) -> Float {
    let minNormal = Float(bitPattern: 0x0080_0000)
    var x = Swift.max(input, minNormal)
    let exponentBits = Int32(bitPattern: x.bitPattern >> 23)
    x = Float(bitPattern: (x.bitPattern & ~UInt32(0x7f80_0000)) | Float(0.5).bitPattern)
    var e = Float(exponentBits - 0x7f)
    e = e + 1
    let below = x < Float(0.707106781186547524)
    let tmp: Float = below ? x : 0
    x = x - 1
    e = e - (below ? 1 : 0)
    x = x + tmp

    let z = x * x
    var y = Float(-1.1514610310e-1).addingProduct(Float(7.0376836292e-2), x)
    y = Float(1.1676998740e-1).addingProduct(y, x)
    y = Float(-1.2420140846e-1).addingProduct(y, x)
    y = Float(1.4249322787e-1).addingProduct(y, x)
    y = Float(-1.6668057665e-1).addingProduct(y, x)
    y = Float(2.0000714765e-1).addingProduct(y, x)
    y = Float(-2.4999993993e-1).addingProduct(y, x)
    y = Float(3.3333331174e-1).addingProduct(y, x)
    y = y * x
    y = (e * Float(-2.12194440e-4)).addingProduct(y, z)
    y = y.addingProduct(z, Float(-0.5))
    x = x + y
    x = x.addingProduct(e, Float(0.693359375))
    return input <= 0 ? .nan : x
  }

  /// Sine and cosine for |x| < 8192: `sincos256_ps`, one lane.
  @inline(__always)
  static func sincos(_ input: Float) -> (sin: Float, cos: Float) {
    var signSin = input.bitPattern & 0x8000_0000
    var x = Float(bitPattern: input.bitPattern & 0x7fff_ffff)
    let scaled = x * Float(1.27323954473516)  // 4 / pi
    var j = Int32(scaled)  // truncation, as cvttps
    j = (j &+ 1) & ~1
    let y = Float(j)
    let swapSignSin = UInt32(bitPattern: j & 4) << 29
    let useSinePolynomial = (j & 2) == 0
    let signCos = UInt32(bitPattern: ~(j &- 2) & 4) << 29
    signSin ^= swapSignSin

    // Extended-precision reduction: x = ((x - y*DP1) - y*DP2) - y*DP3.
    x = x.addingProduct(y, Float(-0.78515625))
    x = x.addingProduct(y, Float(-2.4187564849853515625e-4))
    x = x.addingProduct(y, Float(-3.77489497744594108e-8))

    let z = x * x
    var yc = Float(-1.388731625493765e-3).addingProduct(Float(2.443315711809948e-5), z)
    yc = Float(4.166664568298827e-2).addingProduct(yc, z)
    yc = yc * z
    let halfZ = z * 0.5
    yc = (-halfZ).addingProduct(yc, z)
    yc = yc + 1

    var ys = Float(8.3321608736e-3).addingProduct(Float(-1.9515295891e-4), z)
    ys = Float(-1.6666654611e-1).addingProduct(ys, z)
    ys = ys * z
    ys = x.addingProduct(ys, x)

    // sincos256_ps selects with and/andnot then adds a zero, which also turns -0 into +0.
    let sinPart = useSinePolynomial ? ys + 0 : 0 + yc
    let cosPart = useSinePolynomial ? yc + 0 : 0 + ys
    return (
      Float(bitPattern: sinPart.bitPattern ^ signSin),
      Float(bitPattern: cosPart.bitPattern ^ signCos)
    )
  }
}
