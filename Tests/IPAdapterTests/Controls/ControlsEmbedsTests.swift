import Foundation
import IPAdapter
import Imaging
import TorchRandom
import Models
import Schedulers
import TensorCore
import Testing
import TestSupport

/// Combine modes, embeds scaling, negative-image conventions and the noise image, against
/// formulas written out here and torch values from `gen_ip_controls.py`.
@Suite struct ControlsEmbedsTests {
  @Test func combineModesMatchFormulasAndTorch() throws {
    let goldens = try ControlsFixtures.goldens()
    let modes: [(IPAdapterCombineMode, String)] = [
      (.add, "add"), (.subtract, "subtract"), (.average, "average"), (.normAverage, "norm_average"), (.max, "max"), (.min, "min"),
    ]
    for tag in ["3x5", "4x3x6", "2x7"] {
      let e = try goldens.tensor("combine.\(tag).in")
      for (mode, name) in modes {
        let got = try mode.combine(e)
        let want = try goldens.tensor("combine.\(tag).\(name)")
        #expect(got.shape == want.shape, "\(name) \(tag)")
        #expect(Compare.maxAbsDifference(got, want) <= 1e-6, "\(name) \(tag)")
      }
      #expect(try IPAdapterCombineMode.concat.combine(e).scalars() == e.scalars())
    }
    // Independent formulas with per-image weights on [3, 2] embeds.
    let x = try Tensor(shape: [3, 2], floats: [1, 2, 3, -4, 5, 6])
    let w: [Float] = [2, 1, 0.5]  // → rows [2, 4], [3, -4], [2.5, 3]
    #expect(try IPAdapterCombineMode.add.combine(x, weights: w).scalars() == [7.5, 3])
    #expect(try IPAdapterCombineMode.subtract.combine(x, weights: w).scalars() == [2 - 2.75, 4 - (-0.5)])
    #expect(try IPAdapterCombineMode.average.combine(x, weights: w).scalars() == [7.5 / 3, 1])
    #expect(try IPAdapterCombineMode.concat.combine(x, weights: w).scalars() == [2, 4, 3, -4, 2.5, 3])
    let n0 = (4 + 9 + 6.25 as Float).squareRoot(), n1 = (16 + 16 + 9 as Float).squareRoot()
    let na = try IPAdapterCombineMode.normAverage.combine(x, weights: w).scalars()
    #expect(abs(na[0] - (2 / n0 + 3 / n0 + 2.5 / n0) / 3) < 1e-6 && abs(na[1] - (4 / n1 - 4 / n1 + 3 / n1) / 3) < 1e-6)
    #expect(try IPAdapterCombineMode.max.combine(x, weights: w).scalars() == [3, 4])
    // One image: unchanged whatever the mode; bad input: typed errors.
    let single = try Tensor(shape: [1, 3], floats: [1, 2, 3])
    for m in IPAdapterCombineMode.allCases { #expect(try m.combine(single).scalars() == [1, 2, 3]) }
    #expect(throws: IPAdapterControlError.self) { try IPAdapterCombineMode.add.combine(x, weights: [1]) }
    #expect(throws: IPAdapterControlError.self) { try IPAdapterCombineMode.add.combine(Tensor.zeros([4])) }
    #expect(try IPAdapterCombineMode(name: "norm-average") == .normAverage)
    #expect(throws: IPAdapterControlError.self) { try IPAdapterCombineMode(name: "median") }
  }

  @Test func embedsScalingReproducesComfyAttention() throws {
    let goldens = try ControlsFixtures.goldens()
    let modes: [(IPAdapterEmbedsScaling, String)] = [
      (.vOnly, "v_only"), (.kv, "kv"), (.kvPenalty, "kv_penalty"), (.kMeanVPenalty, "k_mean_v_penalty"),
    ]
    for (c, heads, weights) in [(320, 5, [0.7, 1.6, -0.4]), (640, 10, [1.3])] {
      let q = try goldens.tensor("scaling.\(c).q"), k = try goldens.tensor("scaling.\(c).k"), v = try goldens.tensor("scaling.\(c).v")
      for w in weights {
        for (mode, name) in modes {
          let source = try mode.source(key: k, value: v, weight: Float(w))
          let out = try Attention.multiHead(query: q, sources: [source], heads: heads)
          let want = try goldens.tensor("scaling.\(c).\(w).\(name)")
          #expect(Compare.maxAbsDifference(out, want) <= 2e-5, "\(name) C=\(c) w=\(w)")
        }
      }
    }
  }

  @Test func embedsScalingFormulas() throws {
    // K [1, 2, 640], V rows a and b: K+mean(V) w/ C penalty with w = 2 → w' = 1.
    let k = Tensor.full([1, 2, 640], 0.5)
    var vals = [Float](repeating: 1, count: 640) + [Float](repeating: 3, count: 640)
    let v = try Tensor(shape: [1, 2, 640], floats: vals)
    let s = try IPAdapterEmbedsScaling.kMeanVPenalty.source(key: k, value: v, weight: 2)
    #expect(s.scale == 1 && s.key.scalars() == k.scalars() && s.value.scalars() == v.scalars())
    let s2 = try IPAdapterEmbedsScaling.kMeanVPenalty.source(key: k, value: v, weight: 4)  // w' = 2, mean 2
    vals = [Float](repeating: 1 - 2 + 4, count: 640) + [Float](repeating: 3 - 2 + 4, count: 640)
    #expect(s2.value.scalars() == vals && s2.key.scalars().allSatisfy { $0 == 1 })
    let kv = try IPAdapterEmbedsScaling.kvPenalty.source(key: k, value: v, weight: 4)  // w' = 2
    #expect(kv.scale == 1 && kv.key.scalars().allSatisfy { $0 == 1 } && kv.value.scalars()[0] == 2)
    let vOnly = try IPAdapterEmbedsScaling.vOnly.source(key: k, value: v, weight: 0.3)
    #expect(vOnly.scale == 0.3 && vOnly.key.scalars() == k.scalars())
    for m in IPAdapterEmbedsScaling.allCases { #expect(try m.source(key: k, value: v, weight: 0).scale == 0) }
    #expect(throws: IPAdapterControlError.self) { try IPAdapterEmbedsScaling.kv.source(key: k, value: Tensor.zeros([1, 3, 640]), weight: 1) }
    #expect(try IPAdapterEmbedsScaling(name: "K+mean(V) w/ C penalty") == .kMeanVPenalty)
    #expect(try IPAdapterEmbedsScaling(name: "k-mean-v-penalty") == .kMeanVPenalty)
    #expect(try IPAdapterEmbedsScaling(name: "K+V w/ C penalty") == .kvPenalty)
    #expect(try IPAdapterEmbedsScaling(name: "kv") == .kv)
    #expect(try IPAdapterEmbedsScaling(name: "V only") == .vOnly)
    #expect(throws: IPAdapterControlError.self) { try IPAdapterEmbedsScaling(name: "K only") }
  }

  @Test func negativeImageConventions() throws {
    #expect(IPAdapterNegativeImage.zeros.encoderInput(kind: .imageEmbeds) == .zeroEmbedding)
    #expect(IPAdapterNegativeImage.zeros.encoderInput(kind: .penultimateHiddenState) == .zeroPixels)
    #expect(IPAdapterNegativeImage.comfyUI.encoderInput(kind: .imageEmbeds) == .zeroEmbedding)
    let black = IPAdapterNegativeImage.black(size: 224)
    #expect(black.width == 224 && black.height == 224 && black.format == .rgb && black.pixels.allSatisfy { $0 == 0 })
    #expect(IPAdapterNegativeImage.comfyUI.encoderInput(kind: .penultimateHiddenState, imageSize: 336) == .image(IPAdapterNegativeImage.black(size: 336)))
    let user = Image(width: 5, height: 4, format: .rgb, fill: 9)
    #expect(IPAdapterNegativeImage.image(user).encoderInput(kind: .imageEmbeds) == .image(user))
    #expect(try IPAdapterNegativeImage(name: "black") == .comfyUI)
    #expect(try IPAdapterNegativeImage(name: "diffusers") == .zeros)
    #expect(throws: IPAdapterControlError.self) { try IPAdapterNegativeImage(name: "grey") }
  }

  @Test func noiseImageMatchesComfyRecipe() throws {
    let doc = try #require(try ControlsFixtures.json("noise.json") as? [[String: Any]])
    let goldens = try ControlsFixtures.goldens()
    for c in doc {
      let key = c["key"] as! String
      let noise = try IPAdapterNoise(
        kind: IPAdapterNoise.Kind(rawValue: c["type"] as! String)!, strength: c["strength"] as! Double, blur: c["blur"] as! Int)
      let x = noise.floats()
      #expect(x.count == 224 * 224 * 3)
      let rows = try goldens.tensor(key + ".rows").scalars()
      var diff: Float = 0
      for i in 0..<rows.count { diff = max(diff, abs(x[i] - rows[i])) }
      #expect(diff <= 1e-6, "\(key) max diff \(diff)")
      let sum = x.reduce(0.0) { $0 + Double($1) }
      #expect(abs(sum - Double(try goldens.tensor(key + ".sum").scalars()[0])) < 0.05, "\(key) sum")
      if goldens.info(key + ".u8") != nil {
        let want = try goldens.rawBytes(key + ".u8")
        let image = noise.image()
        #expect(image.width == 224 && image.height == 224 && image.format == .rgb)
        let off = zip(image.pixels, want).filter { $0 != $1 }.count
        #expect(off <= 20, "\(key): \(off) bytes differ")
        #expect(zip(image.pixels, want).allSatisfy { abs(Int($0) - Int($1)) <= 1 })
      }
    }
    // Deterministic, seeded by the base image.
    let fade = try IPAdapterNoise(kind: .fade, strength: 0.5)
    #expect(fade.image() == fade.image())
    #expect(IPAdapterNoise.seed(for: [0.5, 0.75, 1]) == 2)
    let base = Image(width: 300, height: 200, format: .rgb, fill: 255)
    #expect(fade.floats(base: base).allSatisfy { $0 >= 0.5 })
    #expect(throws: IPAdapterControlError.self) { try IPAdapterNoise(kind: .shuffle) }
    #expect(throws: IPAdapterControlError.self) { try IPAdapterNoise(kind: .fade, strength: 1.5) }
    #expect(throws: IPAdapterControlError.self) { try IPAdapterNoise(kind: .fade, blur: 40) }
  }
}
