import Foundation
import Schedulers
import TensorCore
import TorchRandom
import Testing

/// `TorchGenerator` against `torch.Generator("cpu").manual_seed(seed)` + `torch.randn` /
/// `torch.rand` (torch 2.13, AVX2 kernel). Tolerance: none — every value must be bit-identical,
/// and the sequential float64 sums over all values must be equal.
@Suite("TorchGenerator reproduces torch's CPU generator")
struct TorchGeneratorTests {
  struct Draw: Decodable {
    let kind: String?
    let seed: UInt64?
    let shape: [Int]
    let count: Int
    let first: [Double]
    let last: [Double]
    let sum: Double
    let weightedSum: Double
    enum CodingKeys: String, CodingKey {
      case kind, seed, shape, count, first, last, sum
      case weightedSum = "weighted_sum"
    }
  }

  struct Sequence: Decodable {
    let seed: UInt64
    let draws: [Draw]
  }

  struct Full: Decodable {
    let seed: UInt64
    let shape: [Int]
    let values: [Double]
  }

  struct File: Decodable {
    let single: [Draw]
    let sequences: [Sequence]
    let full: Full
  }

  static func load() throws -> File {
    try JSONDecoder().decode(File.self, from: SchedulerFixtures.data("rng.json"))
  }

  /// Compares a draw with the recorded statistics; values bit for bit.
  static func check(_ tensor: Tensor, _ expected: Draw, _ label: String) {
    let values = tensor.scalars()
    #expect(tensor.shape == expected.shape, "\(label): shape")
    #expect(values.count == expected.count, "\(label): count")
    let first = Array(values.prefix(expected.first.count))
    let last = Array(values.suffix(expected.last.count))
    #expect(first.map(\.bitPattern) == expected.first.map { Float($0).bitPattern }, "\(label): first values \(first)")
    #expect(last.map(\.bitPattern) == expected.last.map { Float($0).bitPattern }, "\(label): last values \(last)")
    var sum = 0.0
    var weighted = 0.0
    for (i, v) in values.enumerated() {
      sum += Double(v)
      weighted += Double(i + 1) * Double(v)
    }
    #expect(sum == expected.sum, "\(label): sum \(sum) vs \(expected.sum)")
    #expect(weighted == expected.weightedSum, "\(label): weighted sum \(weighted) vs \(expected.weightedSum)")
  }

  @Test("randn for seeds 0, 1, 42, 2^32+5, 123456789, 2^64-1 and sizes 1…16384 (exact)")
  func singleDraws() throws {
    let file = try Self.load()
    #expect(file.single.count == 48)
    for draw in file.single {
      var g = TorchGenerator(seed: try #require(draw.seed))
      Self.check(g.randn(draw.shape), draw, "seed \(draw.seed!) shape \(draw.shape)")
    }
  }

  @Test("Consecutive randn/rand draws from one generator, including the cached Box-Muller value (exact)")
  func sequences() throws {
    let file = try Self.load()
    #expect(file.sequences.count == 4)
    for sequence in file.sequences {
      var g = TorchGenerator(seed: sequence.seed)
      for (i, draw) in sequence.draws.enumerated() {
        let tensor = draw.kind == "rand" ? g.rand(draw.shape) : g.randn(draw.shape)
        Self.check(tensor, draw, "seed \(sequence.seed) draw \(i) \(draw.kind ?? "") \(draw.shape)")
      }
    }
  }

  @Test("Every value of a [1, 4, 3, 3] latent, and its NHWC transpose (exact)")
  func fullLatent() throws {
    let full = try Self.load().full
    var g = TorchGenerator(seed: full.seed)
    let x = g.randn(full.shape)
    #expect(x.scalars().map(\.bitPattern) == full.values.map { Float($0).bitPattern })

    var h = TorchGenerator(seed: full.seed)
    let nhwc = h.randn(nchw: full.shape, layout: .nhwc)
    #expect(nhwc.shape == [1, 3, 3, 4])
    let v = nhwc.scalars()
    for c in 0..<4 {
      for y in 0..<3 {
        for xx in 0..<3 {
          #expect(v[(y * 3 + xx) * 4 + c] == Float(full.values[(c * 3 + y) * 3 + xx]))
        }
      }
    }
    var k = TorchGenerator(seed: full.seed)
    #expect(k.randn(like: [1, 3, 3, 4], layout: .nhwc).scalars() == v)
  }

  @Test("Seeds that differ by 2^32 give the same stream, as in torch")
  func seedTruncation() {
    var a = TorchGenerator(seed: 5)
    var b = TorchGenerator(seed: (1 << 32) + 5)
    #expect(a.randn([40]).scalars() == b.randn([40]).scalars())
    #expect(b.seed == (1 << 32) + 5)
  }
}
