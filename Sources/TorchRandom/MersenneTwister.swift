/// The 32-bit Mersenne Twister (MT19937) exactly as PyTorch's CPU generator runs it.
///
/// matches: `at::mt19937_engine` (`aten/src/ATen/core/MT19937RNGEngine.h`, torch 2.13): the state is
/// seeded with Knuth's multiplier from the low 32 bits of the seed (so seeds `s` and `s + 2^32` give
/// the same stream, as in torch), and regenerated 624 words at a time.
struct MersenneTwister: Sendable {
  private static let n = 624
  private static let m = 397
  private static let matrixA: UInt32 = 0x9908_b0df
  private static let upperMask: UInt32 = 0x8000_0000
  private static let lowerMask: UInt32 = 0x7fff_ffff

  private var state: [UInt32]
  /// Index of the next word of `state` to temper; `n` means the block is used up.
  private var next: Int

  init(seed: UInt64) {
    var s = [UInt32](repeating: 0, count: Self.n)
    s[0] = UInt32(truncatingIfNeeded: seed)
    for j in 1..<Self.n {
      s[j] = 1_812_433_253 &* (s[j - 1] ^ (s[j - 1] >> 30)) &+ UInt32(j)
    }
    state = s
    next = Self.n
  }

  /// The next tempered 32-bit output (torch's `CPUGeneratorImpl::random()`).
  mutating func nextUInt32() -> UInt32 {
    if next == Self.n { regenerate() }
    var y = state[next]
    next += 1
    y ^= y >> 11
    y ^= (y << 7) & 0x9d2c_5680
    y ^= (y << 15) & 0xefc6_0000
    y ^= y >> 18
    return y
  }

  /// Two outputs combined high word first (torch's `CPUGeneratorImpl::random64()`).
  mutating func nextUInt64() -> UInt64 {
    let hi = UInt64(nextUInt32())
    let lo = UInt64(nextUInt32())
    return (hi << 32) | lo
  }

  private mutating func regenerate() {
    let n = Self.n
    let m = Self.m
    state.withUnsafeMutableBufferPointer { s in
      for i in 0..<n {
        let u = s[i]
        let v = s[(i + 1) % n]
        let mixed = (u & Self.upperMask) | (v & Self.lowerMask)
        let twisted = (mixed >> 1) ^ ((v & 1) != 0 ? Self.matrixA : 0)
        s[i] = s[(i + m) % n] ^ twisted
      }
    }
    next = 0
  }
}
