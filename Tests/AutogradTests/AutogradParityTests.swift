import Foundation
import TensorCore
import TestSupport
import Testing
import Autograd
import Weights

/// Every autograd operation against `torch.autograd` (tools/reference/gen_training.py): the output
/// and the gradient of every input for a random upstream gradient, relative error ≤ 1e-5; a
/// Resampler-like chain end to end; AdamW against `torch.optim.AdamW` over six steps ≤ 1e-6.
@Suite struct AutogradParityTests {
  static let golden = try! SafeTensorsFile(path: Fixtures.url("training/autograd.safetensors").path)

  func tensor(_ key: String) throws -> Tensor { try Self.golden.tensor(key).asFloat32() }

  /// Leaves for `inputs` of case `name`, the result of `body`, and the check of its value and of
  /// every input's gradient.
  func check(_ name: String, _ inputs: [String], tolerance: Float = 1e-5, _ body: (Tape, [String: Variable]) throws -> Variable)
    throws
  {
    let tape = Tape()
    var leaves: [String: Variable] = [:]
    for key in inputs { leaves[key] = tape.leaf(try tensor("\(name).\(key)")) }
    let y = try body(tape, leaves)
    let expected = try tensor("\(name).y")
    #expect(y.shape == expected.shape, "\(name): shape \(y.shape)")
    let valueError = Compare.relativeError(y.value, expected)
    #expect(valueError <= tolerance, "\(name): output relative error \(valueError)")
    try tape.backward(y, seed: try tensor("\(name).dy").reshaped(y.shape))
    for key in inputs {
      let grad = try #require(leaves[key]?.grad, "\(name): no gradient for \(key)")
      let error = Compare.relativeError(grad, try tensor("\(name).d\(key)"))
      #expect(error <= tolerance, "\(name): d\(key) relative error \(error)")
    }
  }

  @Test func linearMatchesTorch() throws {
    try check("linear", ["x", "weight", "bias"]) { t, v in try t.linear(v["x"]!, weight: v["weight"]!, bias: v["bias"]!) }
  }

  @Test func layerNormMatchesTorch() throws {
    try check("layer_norm", ["x", "weight", "bias"]) { t, v in
      try t.layerNorm(v["x"]!, weight: v["weight"]!, bias: v["bias"]!, eps: 1e-5)
    }
  }

  @Test func groupNormOnChannelsLastMatchesTorch() throws {
    try check("group_norm", ["x", "weight", "bias"]) { t, v in
      try t.groupNorm(v["x"]!, groups: 4, weight: v["weight"]!, bias: v["bias"]!, eps: 1e-5)
    }
  }

  @Test func geluAndSiLUMatchTorch() throws {
    try check("gelu", ["x"]) { t, v in t.gelu(v["x"]!) }
    try check("silu", ["x"]) { t, v in t.silu(v["x"]!) }
  }

  @Test func multiHeadAttentionMatchesTorch() throws {
    try check("attention", ["q", "k", "v"]) { t, v in try t.attention(v["q"]!, v["k"]!, v["v"]!, heads: 3) }
    // The backward pass in query blocks of 2 rows (2, 2, 1), as real sizes split it.
    try check("attention", ["q", "k", "v"]) { t, v in try t.attention(v["q"]!, v["k"]!, v["v"]!, heads: 3, blockRows: 2) }
  }

  @Test func meanSquaredErrorMatchesTorch() throws {
    try check("mse", ["prediction", "target"]) { t, v in try t.mseLoss(v["prediction"]!, v["target"]!) }
  }

  @Test func convolutionsMatchTorch() throws {
    try check("conv3x3", ["x", "weight", "bias"]) { t, v in try t.conv2d(v["x"]!, weight: v["weight"]!, bias: v["bias"]!, padding: 1) }
    try check("conv_down", ["x", "weight", "bias"]) { t, v in
      try t.conv2d(v["x"]!, weight: v["weight"]!, bias: v["bias"]!, stride: 2, padding: 1)
    }
    try check("conv1x1", ["x", "weight"]) { t, v in try t.conv2d(v["x"]!, weight: v["weight"]!) }
  }

  @Test func nearestUpsamplingAndProductsMatchTorch() throws {
    try check("upsample", ["x"]) { t, v in try t.upsampleNearest2x(v["x"]!) }
    try check("mul", ["a", "b"]) { t, v in try t.mul(v["a"]!, v["b"]!) }
  }

  /// LayerNorm → linear → GELU → linear queries over linear keys and values of the same input,
  /// four heads → linear → MSE: every weight's gradient through the whole chain.
  @Test func aResamplerLikeChainMatchesTorchEndToEnd() throws {
    let names = ["x", "ln_w", "ln_b", "w1", "b1", "w2", "wk", "wv", "wo", "bo", "target"]
    try check("chain", names) { t, v in
      let h = try t.layerNorm(v["x"]!, weight: v["ln_w"]!, bias: v["ln_b"]!, eps: 1e-5)
      let q = try t.linear(t.gelu(try t.linear(h, weight: v["w1"]!, bias: v["b1"]!)), weight: v["w2"]!)
      let a = try t.attention(q, try t.linear(h, weight: v["wk"]!), try t.linear(h, weight: v["wv"]!), heads: 4)
      return try t.mseLoss(try t.linear(a, weight: v["wo"]!, bias: v["bo"]!), v["target"]!)
    }
  }

  @Test func adamWMatchesTorchOverSixSteps() throws {
    let tape = Tape()
    let p = tape.leaf(try tensor("adamw.param.0"))
    let optimizer = try AdamW(parameters: [p], learningRate: 1e-3, weightDecay: 1e-2)
    for step in 1...6 {
      // A gradient as backward leaves it: the seed of the parameter itself.
      try tape.backward(p, seed: try tensor("adamw.grad.\(step)"))
      try optimizer.step()
      optimizer.zeroGrad()
      let error = Compare.relativeError(p.value, try tensor("adamw.param.\(step)"))
      #expect(error <= 1e-6, "step \(step): relative error \(error)")
    }
    #expect(optimizer.steps == [6])
  }
}

/// What the tape does besides the arithmetic.
@Suite struct AutogradBehaviourTests {
  /// At real sizes the group norm's backward sums run on every thread in blocks (the golden's
  /// 15 positions run on one): 24 × 20 positions, 48 channels in 6 groups, against the formula
  /// evaluated directly in double precision (≤ 1e-5 relative).
  @Test func groupNormBackwardAcrossThreadsMatchesTheDirectFormula() throws {
    let (n, h, w, c, groups) = (2, 24, 20, 48, 6)
    func random(_ shape: [Int], _ seed: UInt64) throws -> Tensor {
      var g = SeededGenerator(seed: seed)
      return try Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -2...2, using: &g) })
    }
    let x = try random([n, h, w, c], 31), dy = try random([n, h, w, c], 32), gamma = try random([c], 33)
    let tape = Tape()
    let xv = tape.leaf(x)
    let y = try tape.groupNorm(xv, groups: groups, weight: tape.leaf(gamma, requiresGrad: false), bias: nil, eps: 1e-5)
    try tape.backward(y, seed: dy)
    let (xp, gp, wp) = (x.scalars(), dy.scalars(), gamma.scalars())
    let (pixels, per) = (h * w, c / groups)
    var expected = [Float](repeating: 0, count: x.count)
    for b in 0..<n {
      for g in 0..<groups {
        var values: [(Int, Double, Double, Double)] = []  // index, x, dy·γ
        for p in 0..<pixels {
          for ch in g * per..<(g + 1) * per {
            let i = (b * pixels + p) * c + ch
            values.append((i, Double(xp[i]), Double(gp[i]) * Double(wp[ch]), 0))
          }
        }
        let m = Double(values.count)
        let mean = values.reduce(0) { $0 + $1.1 } / m
        let variance = values.reduce(0) { $0 + ($1.1 - mean) * ($1.1 - mean) } / m
        let rstd = 1 / (variance + 1e-5).squareRoot()
        let meanD = values.reduce(0) { $0 + $1.2 } / m
        let meanDX = values.reduce(0) { $0 + $1.2 * ($1.1 - mean) * rstd } / m
        for (i, xi, d, _) in values { expected[i] = Float(rstd * (d - meanD - (xi - mean) * rstd * meanDX)) }
      }
    }
    let error = Compare.relativeError(try #require(xv.grad), try Tensor(shape: x.shape, floats: expected))
    #expect(error <= 1e-5, "relative error \(error)")
  }

  /// A frozen weight gets no gradient (none is computed); the input's gradient is unchanged.
  @Test func frozenWeightsGetNoGradient() throws {
    let golden = AutogradParityTests.golden
    let tape = Tape()
    let x = tape.leaf(try golden.tensor("linear.x"))
    let w = tape.leaf(try golden.tensor("linear.weight"), requiresGrad: false)
    let b = tape.leaf(try golden.tensor("linear.bias"), requiresGrad: false)
    let y = try tape.linear(x, weight: w, bias: b)
    try tape.backward(y, seed: try golden.tensor("linear.dy"))
    #expect(w.grad == nil && b.grad == nil)
    #expect(Compare.relativeError(try #require(x.grad), try golden.tensor("linear.dx")) <= 1e-5)
  }

  /// Operations on frozen values only are not recorded, and a loss without a trainable input
  /// is refused by name.
  @Test func nothingTrainableRecordsNothing() throws {
    let tape = Tape()
    let a = tape.leaf(try Tensor(shape: [2], floats: [1, 2]), requiresGrad: false)
    let y = try tape.mseLoss(tape.gelu(a), a)
    #expect(tape.count == 0)
    #expect(throws: AutogradError.self) { try tape.backward(y) }
  }

  /// A variable read twice receives the sum of both paths' gradients.
  @Test func gradientsOfSharedInputsAccumulate() throws {
    let tape = Tape()
    let x = tape.leaf(try Tensor(shape: [3], floats: [1, -2, 0.5]))
    let y = try tape.add(tape.scale(x, 3), x)  // 4x
    let loss = try tape.mseLoss(y, tape.leaf(Tensor.zeros([3]), requiresGrad: false))  // mean(16 x²)
    try tape.backward(loss)
    // d/dx mean(16 x²) = 32 x / 3
    let expected = try Tensor(shape: [3], floats: [32.0 / 3, -64.0 / 3, 16.0 / 3].map { Float($0) })
    #expect(Compare.relativeError(try #require(x.grad), expected) <= 1e-6)
  }

  @Test func badShapesAreTypedErrors() throws {
    let tape = Tape()
    let x = tape.leaf(Tensor.zeros([2, 5]))
    #expect(throws: AutogradError.self) { try tape.linear(x, weight: tape.leaf(Tensor.zeros([3, 4]))) }
    #expect(throws: AutogradError.self) { try tape.attention(x.reshapedLeaf(tape, [1, 2, 5]), x.reshapedLeaf(tape, [1, 2, 5]), x.reshapedLeaf(tape, [1, 2, 5]), heads: 2) }
    #expect(throws: AutogradError.self) { try tape.groupNorm(x, groups: 3, weight: nil, bias: nil, eps: 1e-5) }
    #expect(throws: AutogradError.self) { try AdamW(parameters: [x], learningRate: -1) }
  }
}

extension Variable {
  /// A fresh leaf holding this value reshaped (test helper).
  func reshapedLeaf(_ tape: Tape, _ shape: [Int]) -> Variable { tape.leaf(value.reshaped(shape)) }
}
