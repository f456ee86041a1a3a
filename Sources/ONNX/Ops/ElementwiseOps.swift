import Foundation
import TensorCore

/// Unary float operators, applied to the storage whatever its layout.
struct UnaryKernel: ONNXKernel {
  let f: (Float) -> Float

  static func make(_ c: NodeContext) throws -> UnaryKernel {
    try c.inputs(1...3)
    switch c.op {
    case "Relu":
      try c.allowOnly([])
      return UnaryKernel { max($0, 0) }
    case "Sigmoid":
      try c.allowOnly([])
      return UnaryKernel { 1 / (1 + Foundation.exp(-$0)) }
    case "Exp":
      try c.allowOnly([])
      return UnaryKernel { Foundation.exp($0) }
    case "Tanh":
      try c.allowOnly([])
      return UnaryKernel { Foundation.tanh($0) }
    case "Sqrt":
      try c.allowOnly([])
      return UnaryKernel { $0.squareRoot() }
    case "Neg":
      try c.allowOnly([])
      return UnaryKernel { -$0 }
    case "Abs":
      try c.allowOnly([])
      return UnaryKernel { Swift.abs($0) }
    case "Floor":
      try c.allowOnly([])
      return UnaryKernel { $0.rounded(.down) }
    case "Ceil":
      try c.allowOnly([])
      return UnaryKernel { $0.rounded(.up) }
    case "Reciprocal":
      try c.allowOnly([])
      return UnaryKernel { 1 / $0 }
    case "LeakyRelu":
      try c.allowOnly(["alpha"])
      let alpha = try c.float("alpha", default: 0.01)
      return UnaryKernel { $0 >= 0 ? $0 : $0 * alpha }
    case "HardSigmoid":
      try c.allowOnly(["alpha", "beta"])
      let alpha = try c.float("alpha", default: 0.2)
      let beta = try c.float("beta", default: 0.5)
      return UnaryKernel { Swift.max(0, Swift.min(1, alpha * $0 + beta)) }
    default:
      throw c.invalid("not a unary operator")
    }
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    let x = try inputs.float(0, "X")
    return [.float(UnaryKernel.apply(x, f))]
  }

  static func apply(_ x: FloatValue, _ f: (Float) -> Float) -> FloatValue {
    let src = x.data.asFloat32()
    let out = Tensor(uninitializedShape: src.shape)
    let s = src.floatPointer
    let d = out.mutableFloatPointer
    Parallel.forBlocks(src.count, blockSize: 8192, costPerElement: 8) { r in
      for i in r { d[i] = f(s[i]) }
    }
    return FloatValue(shape: x.shape, data: out, nhwc: x.nhwc)
  }
}

/// `Clip` (min/max as attributes before opset 11, as optional inputs from 11).
struct ClipKernel: ONNXKernel {
  let context: NodeContext
  let minAttr: Float
  let maxAttr: Float

  static func make(_ c: NodeContext) throws -> ClipKernel {
    try c.inputs(1...3)
    try c.allowOnly(["min", "max"])
    return ClipKernel(
      context: c, minAttr: try c.float("min", default: -Float.greatestFiniteMagnitude),
      maxAttr: try c.float("max", default: Float.greatestFiniteMagnitude))
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    var lo = minAttr
    var hi = maxAttr
    if let v = inputs.optional(1) { lo = try scalar(v, "min") }
    if let v = inputs.optional(2) { hi = try scalar(v, "max") }
    let x = try inputs.float(0, "X")
    return [.float(UnaryKernel.apply(x) { Swift.min(Swift.max($0, lo), hi) })]
  }

  private func scalar(_ v: ONNXValue, _ what: String) throws -> Float {
    guard case .float(let f) = v, f.count == 1 else { throw OpFailure("\(what) must be a float scalar") }
    return f.data.scalars()[0]
  }
}

/// `Identity` and inference-mode `Dropout` (the optional mask output is all true).
struct IdentityKernel: ONNXKernel {
  let maskOutput: Bool

  static func make(_ c: NodeContext) throws -> IdentityKernel {
    try c.inputs(1...3)
    if c.op == "Dropout" {
      try c.allowOnly(["ratio", "seed", "is_test"])
      if try c.int("is_test") == 0, c.opset < 7 { throw c.invalid("training-mode Dropout is not supported") }
      if c.node.inputs.count == 3 { throw c.invalid("Dropout with a training_mode input is not supported") }
    } else {
      try c.allowOnly([])
    }
    return IdentityKernel(maskOutput: c.node.outputs.count > 1)
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    guard let x = inputs.optional(0) else { throw OpFailure("input is missing") }
    if maskOutput {
      let shape = x.shape
      return [x, .int(IntValue(shape: shape, values: [Int64](repeating: 1, count: ShapeMath.count(shape)), type: .bool))]
    }
    return [x]
  }
}

/// `Add`, `Sub`, `Mul`, `Div` (and `Pow`) with numpy broadcasting, on floats or integers.
///
/// Fast paths: equal shapes in the same layout (any layout), and a rank-4 tensor with a
/// per-channel or scalar operand (NHWC or NCHW). Anything else runs in the logical layout.
struct BinaryKernel: ONNXKernel {
  enum Op { case add, sub, mul, div, pow }
  let op: Op
  var limit = 1 << 28

  static func make(_ c: NodeContext) throws -> BinaryKernel {
    try c.inputs(2...2)
    try c.allowOnly(c.opset < 7 ? ["broadcast", "axis"] : [])
    let op: Op =
      switch c.op {
      case "Add": .add
      case "Sub": .sub
      case "Mul": .mul
      case "Div": .div
      default: .pow
      }
    return BinaryKernel(op: op, limit: c.maxElements)
  }

  @inline(__always)
  func apply(_ a: Float, _ b: Float) -> Float {
    switch op {
    case .add: a + b
    case .sub: a - b
    case .mul: a * b
    case .div: a / b
    case .pow: Foundation.pow(a, b)
    }
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    guard let a = inputs.optional(0), let b = inputs.optional(1) else { throw OpFailure("an input is missing") }
    switch (a, b) {
    case (.float(let x), .float(let y)): return [.float(try floats(x, y))]
    case (.int(let x), .int(let y)): return [.int(try ints(x, y))]
    default: throw OpFailure("operands of different types (\(a.typeName), \(b.typeName))")
    }
  }

  private func floats(_ x: FloatValue, _ y: FloatValue) throws -> FloatValue {
    guard let shape = ShapeMath.broadcast(x.shape, y.shape) else {
      throw OpFailure("shapes \(x.shape) and \(y.shape) do not broadcast")
    }
    try checkSize(shape, limit: limit)
    // Same shape, same physical layout.
    if x.shape == y.shape, x.nhwc == y.nhwc || x.layoutIsAmbiguous {
      let a = x.data.asFloat32()
      let b = y.data.asFloat32()
      let out = Tensor(uninitializedShape: a.shape)
      let (p, q, d) = (a.floatPointer, b.floatPointer, out.mutableFloatPointer)
      let op = self.op
      Parallel.forBlocks(a.count, blockSize: 8192, costPerElement: 12) { r in
        switch op {
        case .add: for i in r { d[i] = p[i] + q[i] }
        case .sub: for i in r { d[i] = p[i] - q[i] }
        case .mul: for i in r { d[i] = p[i] * q[i] }
        case .div: for i in r { d[i] = p[i] / q[i] }
        case .pow: for i in r { d[i] = Foundation.pow(p[i], q[i]) }
        }
      }
      return FloatValue(shape: shape, data: out, nhwc: x.nhwc)
    }
    // Rank-4 tensor with a per-channel / scalar operand.
    if shape.count == 4, let r = try channelOperand(big: x, small: y, shape: shape, smallOnRight: true) { return r }
    if shape.count == 4, let r = try channelOperand(big: y, small: x, shape: shape, smallOnRight: false) { return r }
    return generic(x.nchwData(), x.shape, y.nchwData(), y.shape, shape)
  }

  /// `big` has the output shape; `small` is a scalar or a per-channel vector ([C,1,1], [1,C,1,1]).
  private func channelOperand(big: FloatValue, small: FloatValue, shape: [Int], smallOnRight: Bool) throws -> FloatValue? {
    guard big.shape == shape else { return nil }
    let c = shape[1]
    let s = small.shape
    let perChannel: Bool
    if small.count == 1 {
      perChannel = false
    } else if small.count == c, s.count >= 3, s[s.count - 3] == c, s.count < 4 || s[0] == 1, c > 1 {
      perChannel = true
    } else {
      return nil
    }
    let vector = small.data.asFloat32()  // (already float32: no copy)
    let v = vector.floatPointer
    let a = big.data.asFloat32()
    let out = Tensor(uninitializedShape: a.shape)
    let (p, d) = (a.floatPointer, out.mutableFloatPointer)
    let (h, w) = (shape[2], shape[3])
    if !perChannel {
      let k = v[0]
      Parallel.forBlocks(a.count, blockSize: 8192, costPerElement: 8) { r in
        if smallOnRight { for i in r { d[i] = apply(p[i], k) } } else { for i in r { d[i] = apply(k, p[i]) } }
      }
    } else if big.nhwc {
      Parallel.forRanges(shape[0] * h * w, costPerItem: c * 8) { r in
        for px in r {
          let base = px * c
          if smallOnRight { for ch in 0..<c { d[base + ch] = apply(p[base + ch], v[ch]) } }
          else { for ch in 0..<c { d[base + ch] = apply(v[ch], p[base + ch]) } }
        }
      }
    } else {
      Parallel.forRanges(shape[0] * c, costPerItem: h * w * 8) { r in
        for plane in r {
          let k = v[plane % c]
          let base = plane * h * w
          if smallOnRight { for i in base..<(base + h * w) { d[i] = apply(p[i], k) } }
          else { for i in base..<(base + h * w) { d[i] = apply(k, p[i]) } }
        }
      }
    }
    withExtendedLifetime((vector, a)) {}
    return FloatValue(shape: shape, data: out, nhwc: big.nhwc)
  }

  private func generic(_ a: Tensor, _ aShape: [Int], _ b: Tensor, _ bShape: [Int], _ shape: [Int]) -> FloatValue {
    let out = Tensor(uninitializedShape: shape)
    let sa = ShapeMath.broadcastStrides(aShape, to: shape)
    let sb = ShapeMath.broadcastStrides(bShape, to: shape)
    let (p, q, d) = (a.floatPointer, b.floatPointer, out.mutableFloatPointer)
    forEachIndex(shape, sa, sb) { o, i, j in d[o] = apply(p[i], q[j]) }
    return FloatValue(shape: shape, data: out)
  }

  private func ints(_ x: IntValue, _ y: IntValue) throws -> IntValue {
    guard let shape = ShapeMath.broadcast(x.shape, y.shape) else {
      throw OpFailure("shapes \(x.shape) and \(y.shape) do not broadcast")
    }
    let n = ShapeMath.count(shape)
    guard n <= TensorDecoding.maxIntElements else { throw OpFailure("integer result of \(n) elements is too large") }
    var out = [Int64](repeating: 0, count: n)
    let sa = ShapeMath.broadcastStrides(x.shape, to: shape)
    let sb = ShapeMath.broadcastStrides(y.shape, to: shape)
    var failure: String?
    forEachIndex(shape, sa, sb) { o, i, j in
      let (a, b) = (x.values[i], y.values[j])
      switch op {
      case .add: out[o] = a &+ b
      case .sub: out[o] = a &- b
      case .mul: out[o] = a &* b
      case .div:
        if b == 0 { failure = "integer division by zero" } else { out[o] = a / b }
      case .pow:
        out[o] = b < 0 ? 0 : Int64(Foundation.pow(Double(a), Double(b)))
      }
    }
    if let failure { throw OpFailure(failure) }
    return IntValue(shape: shape, values: out, type: x.type)
  }
}

/// Calls `body(outputIndex, aIndex, bIndex)` over a broadcast output shape.
@inline(__always)
func forEachIndex(_ shape: [Int], _ sa: [Int], _ sb: [Int], _ body: (Int, Int, Int) -> Void) {
  let n = ShapeMath.count(shape)
  guard n > 0 else { return }
  if shape.isEmpty { body(0, 0, 0); return }
  let r = shape.count
  let inner = shape[r - 1]
  let (ia, ib) = (sa[r - 1], sb[r - 1])
  var counter = [Int](repeating: 0, count: r)
  var o = 0
  var offA = 0
  var offB = 0
  while o < n {
    for k in 0..<inner { body(o + k, offA + k * ia, offB + k * ib) }
    o += inner
    // Advance the outer counters.
    var axis = r - 2
    while axis >= 0 {
      counter[axis] += 1
      offA += sa[axis]
      offB += sb[axis]
      if counter[axis] < shape[axis] { break }
      offA -= sa[axis] * shape[axis]
      offB -= sb[axis] * shape[axis]
      counter[axis] = 0
      axis -= 1
    }
  }
}

/// `Softmax` (opset < 13: over the flattened trailing dims from `axis`; ≥ 13: along `axis`).
struct SoftmaxKernel: ONNXKernel {
  let axis: Int64
  let coerced: Bool

  static func make(_ c: NodeContext) throws -> SoftmaxKernel {
    try c.inputs(1...1)
    try c.allowOnly(["axis"])
    let legacy = c.opset < 13
    return SoftmaxKernel(axis: try c.int("axis", default: legacy ? 1 : -1), coerced: legacy)
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    let x = try inputs.float(0, "input")
    let shape = x.shape
    guard let a = ShapeMath.axis(axis, rank: shape.count) else { throw OpFailure("axis \(axis) is out of range for rank \(shape.count)") }
    let data = x.nchwData()
    let out = Tensor(uninitializedShape: shape)
    let (s, d) = (data.floatPointer, out.mutableFloatPointer)
    let outer = ShapeMath.count(Array(shape[..<a]))
    if coerced {
      let inner = ShapeMath.count(Array(shape[a...]))
      Self.rows(s, d, rows: outer, length: inner, stride: 1, groups: 1)
    } else {
      let length = shape.isEmpty ? 1 : shape[a]
      let after = ShapeMath.count(Array(shape[(a + 1)...]))
      Self.rows(s, d, rows: outer, length: length, stride: after, groups: after)
    }
    return [.float(FloatValue(shape: shape, data: out))]
  }

  /// Softmax over `length` elements spaced `stride` apart, for `rows × groups` independent vectors.
  static func rows(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, rows: Int, length: Int, stride: Int, groups: Int) {
    Parallel.forRanges(rows * groups, costPerItem: length * 20) { r in
      for v in r {
        let (row, g) = v.quotientAndRemainder(dividingBy: groups)
        let base = row * length * stride + g
        var m = -Float.infinity
        for k in 0..<length { m = Swift.max(m, s[base + k * stride]) }
        var sum: Float = 0
        for k in 0..<length {
          let e = Foundation.exp(s[base + k * stride] - m)
          d[base + k * stride] = e
          sum += e
        }
        for k in 0..<length { d[base + k * stride] /= sum }
      }
    }
  }
}
