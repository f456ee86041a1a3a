import Foundation
import Imaging
import TensorCore
import Weights

/// Shared helpers for the test targets: fixture locations and tensor comparisons.
public enum Fixtures {
  /// `Tests/Fixtures` of this checkout.
  public static let root: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

  public static func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }

  /// A temporary copy of the fixture folder `relative` made of symlinks to its entries, without
  /// `excluding` (for tests that take a component away or put a file beside the others). The
  /// caller removes it.
  public static func linkedCopy(of relative: String, excluding: Set<String> = []) throws -> URL {
    let fm = FileManager.default
    let source = url(relative)
    let copy = fm.temporaryDirectory.appendingPathComponent("fixture-\(UUID().uuidString)")
    try fm.createDirectory(at: copy, withIntermediateDirectories: true)
    for item in try fm.contentsOfDirectory(atPath: source.path).sorted() where !excluding.contains(item) {
      try fm.createSymbolicLink(at: copy.appendingPathComponent(item), withDestinationURL: source.appendingPathComponent(item))
    }
    return copy
  }

  /// Opens a safetensors fixture.
  public static func archive(_ relative: String) throws -> SafeTensorsFile {
    try SafeTensorsFile(path: url(relative).path)
  }
}

/// Error metrics used by parity tests.
public enum Compare {
  /// Fraction of 8-bit values that differ by at most 1 (0 when the images differ in size or
  /// channels): the end-to-end image criterion, e.g. "within 1/255 on ≥ 99 %".
  public static func closeFraction(_ a: Image, _ b: Image) -> Double {
    guard a.width == b.width, a.height == b.height, a.channels == b.channels, !a.pixels.isEmpty else { return 0 }
    var close = 0
    for i in 0..<a.pixels.count where abs(Int(a.pixels[i]) - Int(b.pixels[i])) <= 1 { close += 1 }
    return Double(close) / Double(a.pixels.count)
  }


  /// `max|a − b| / max|b|` — the error relative to the reference tensor's scale.
  /// Tensors of different sizes compare as `.infinity` (a failed expectation, not a crash).
  public static func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
    guard a.count == b.count else { return .infinity }
    let x = a.scalars()
    let y = b.scalars()
    var diff: Float = 0
    var scale: Float = 0
    for i in 0..<x.count {
      diff = max(diff, abs(x[i] - y[i]))
      scale = max(scale, abs(y[i]))
    }
    return diff / max(scale, 1e-30)
  }

  /// `max|a − b|`.
  public static func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
    guard a.count == b.count else { return .infinity }
    let x = a.scalars()
    let y = b.scalars()
    var diff: Float = 0
    for i in 0..<x.count { diff = max(diff, abs(x[i] - y[i])) }
    return diff
  }
}

extension Tensor {
  /// NCHW → NHWC for comparing with PyTorch goldens.
  public func nhwc() throws -> Tensor { try Ops.nchwToNhwc(self) }
  /// NHWC → NCHW.
  public func nchw() throws -> Tensor { try Ops.nhwcToNchw(self) }

  /// `[B, H, L, D]` → `[B, L, H·D]` (the token-major layout of the attention kernel).
  public func headsToTokens() -> Tensor {
    let (b, h, l, d) = (shape[0], shape[1], shape[2], shape[3])
    let x = scalars()
    var out = [Float](repeating: 0, count: count)
    for bi in 0..<b {
      for hi in 0..<h {
        for li in 0..<l {
          for di in 0..<d {
            out[((bi * l + li) * h + hi) * d + di] = x[((bi * h + hi) * l + li) * d + di]
          }
        }
      }
    }
    return try! Tensor(shape: [b, l, h * d], floats: out)
  }
}

/// A seeded pseudo-random generator (SplitMix64), so that randomised tests are reproducible: a
/// failure reports its seed and replays exactly.
///
/// matches: Vigna's SplitMix64 (the seeding generator of xoshiro).
public struct SeededGenerator: RandomNumberGenerator, Sendable {
  private var state: UInt64

  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
