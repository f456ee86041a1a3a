import TensorCore

/// Reads a constant float input at preparation time.
func constantFloat(_ constants: [ONNXValue?], _ i: Int, _ what: String, _ c: NodeContext) throws -> FloatValue? {
  guard i < constants.count, i < c.node.inputs.count, !c.node.inputs[i].isEmpty else { return nil }
  guard let v = constants[i] else {
    throw c.invalid("\(what) ('\(c.node.inputs[i])') must be a constant (an initializer); computed \(what.lowercased())s are not supported")
  }
  guard case .float(let f) = v else { throw c.invalid("\(what) must be float") }
  return f
}

/// `Conv` (2-D; grouped, depthwise and dilated included) on oneDNN, NHWC in and out.
struct ConvKernel: ONNXKernel {
  let kernel: Conv2DKernel
  let outChannels: Int
  var limit = 1 << 28
  /// Index of the fused residual input (`ConvFusionPass`), if any, when it is added at run time.
  var residualIndex: Int?
  var foldable: Bool { false }
  /// Weight and bias, and a constant per-channel residual folded into the bias.
  var bakedInputs: Set<Int> = [1, 2]

  static func make(_ c: NodeContext, constants: [ONNXValue?]) throws -> ConvKernel {
    try c.inputs(2...(c.convFusion?.residual != nil ? 4 : 3))
    try c.allowOnly(["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])
    guard let w = try constantFloat(constants, 1, "Weight", c) else { throw c.invalid("weight is missing") }
    guard w.shape.count == 4 else { throw c.invalid("only 2-D convolutions are supported (weight \(w.shape))") }
    let bias = try constantFloat(constants, 2, "Bias", c)
    if let bias, bias.shape != [w.shape[0]] { throw c.invalid("bias shape \(bias.shape) does not match \(w.shape[0]) output channels") }
    let group = try c.int("group", default: 1)
    guard group >= 1, group <= Int64(w.shape[0]), w.shape[0] % Int(group) == 0 else {
      throw c.invalid("group \(group) does not divide the \(w.shape[0]) output channels")
    }
    let dilations = try c.ints("dilations") ?? [1, 1]
    guard dilations.count == 2, dilations.allSatisfy({ (1...64).contains($0) }) else {
      throw c.invalid("dilations \(dilations) are not supported (two values 1–64)")
    }
    if let k = try c.ints("kernel_shape"), k.map(Int.init) != Array(w.shape[2...]) {
      throw c.invalid("kernel_shape \(k) does not match the weight \(w.shape)")
    }
    let strides = try c.ints("strides") ?? [1, 1]
    guard strides.count == 2, strides.allSatisfy({ (1...64).contains($0) }) else {
      throw c.invalid("strides \(strides) are not supported (two strides of 1–64)")
    }
    let autoPad = try c.string("auto_pad", default: "NOTSET")
    var pads = try c.ints("pads") ?? [0, 0, 0, 0]
    switch autoPad {
    case "NOTSET": break
    case "VALID": pads = [0, 0, 0, 0]
    default: throw c.invalid("auto_pad \(autoPad) is not supported (explicit pads only)")
    }
    guard pads.count == 4, pads.allSatisfy({ (0...1024).contains($0) }) else { throw c.invalid("pads \(pads) are invalid") }
    var biasData = bias?.data.reshaped([w.shape[0]])
    var residualIndex = c.convFusion?.residual != nil ? 3 : nil
    var baked: Set<Int> = [1, 2]
    // A constant residual that is one value per output channel (or one value) is a bias: folded
    // into the convolution's own, as onnxruntime's ConvAddFusion does.
    if residualIndex != nil, constants.count > 3, let r = constants[3], case .float(let rv) = r,
      let add = perChannelConstant(rv, channels: w.shape[0])
    {
      let old = biasData?.scalars() ?? [Float](repeating: 0, count: w.shape[0])
      biasData = try Tensor(shape: [w.shape[0]], floats: zip(old, add).map { $0 + $1 })
      residualIndex = nil
      baked.insert(3)
    }
    let kernel = try Conv2DKernel(
      weight: w.data.reshaped(w.shape), bias: biasData, stride: Int(strides[0]), strideWidth: Int(strides[1]),
      padding: Padding2D(top: Int(pads[0]), left: Int(pads[1]), bottom: Int(pads[2]), right: Int(pads[3])),
      activation: c.convFusion?.relu == true ? .relu : .none, groups: Int(group),
      dilation: (Int(dilations[0]), Int(dilations[1])))
    return ConvKernel(
      kernel: kernel, outChannels: w.shape[0], limit: c.maxElements, residualIndex: residualIndex, bakedInputs: baked)
  }

  /// The `channels` values a constant adds to every position of an `[N, channels, H, W]` result, if
  /// it broadcasts that way (shapes `[]`, `[1]`, `[C, 1, 1]`, `[1, C, 1, 1]`, …); nil otherwise.
  static func perChannelConstant(_ v: FloatValue, channels: Int) -> [Float]? {
    guard v.shape.count <= 4 else { return nil }
    let padded = [Int](repeating: 1, count: 4 - v.shape.count) + v.shape
    guard padded[0] == 1, padded[2] == 1, padded[3] == 1, padded[1] == channels || padded[1] == 1 else { return nil }
    let values = v.nchwData().scalars()
    return padded[1] == channels ? values : [Float](repeating: values[0], count: channels)
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    let x = try inputs.float(0, "X")
    guard x.shape.count == 4, x.shape[1] == kernel.inChannels, x.shape.allSatisfy({ $0 > 0 }) else {
      throw OpFailure("input shape \(x.shape) does not fit a convolution over \(kernel.inChannels) channels")
    }
    let (oh, ow) = kernel.outputSize(height: x.shape[2], width: x.shape[3])
    guard oh > 0, ow > 0 else { throw OpFailure("input \(x.shape) is smaller than the kernel") }
    try checkSize([x.shape[0], outChannels, oh, ow], limit: limit)
    var residual: Tensor?
    if let r = residualIndex {
      let value = try inputs.float(r, "residual")
      let shape = [x.shape[0], outChannels, oh, ow]
      if value.shape == shape {
        residual = value.nhwcData()
      } else {
        // A broadcasting Add: expand the operand to the result's shape first.
        guard ShapeMath.broadcast(shape, value.shape) == shape else {
          throw OpFailure("the added operand \(value.shape) does not broadcast to the convolution's result \(shape)")
        }
        let data = value.nchwData()
        let st = ShapeMath.broadcastStrides(value.shape, to: shape)
        let full = Tensor(uninitializedShape: shape)
        let (p, d) = (data.floatPointer, full.mutableFloatPointer)
        forEachIndex(shape, st, st) { o, i, _ in d[o] = p[i] }
        residual = FloatValue(shape: shape, data: full).nhwcData()
      }
    }
    let y = try kernel(x.nhwcData(), accumulate: residual)
    let s = y.shape
    return [.float(FloatValue(shape: [s[0], s[3], s[1], s[2]], data: y, nhwc: true))]
  }
}

/// A per-channel (axis 1) affine map `y = x·a + b`, in either layout.
func channelAffine(_ x: FloatValue, scale a: [Float], shift b: [Float]) -> FloatValue {
  let c = x.shape[1]
  let src = x.data.asFloat32()
  let out = Tensor(uninitializedShape: src.shape)
  let (s, d) = (src.floatPointer, out.mutableFloatPointer)
  let spatial = ShapeMath.count(Array(x.shape[2...]))
  let n = x.shape[0]
  a.withUnsafeBufferPointer { a in
    b.withUnsafeBufferPointer { b in
      if x.nhwc || spatial == 1 {
        Parallel.forRanges(n * spatial, costPerItem: c * 8) { r in
          for px in r {
            let base = px * c
            for ch in 0..<c { d[base + ch] = s[base + ch] * a[ch] + b[ch] }
          }
        }
      } else {
        Parallel.forRanges(n * c, costPerItem: spatial * 8) { r in
          for plane in r {
            let (k, t) = (a[plane % c], b[plane % c])
            let base = plane * spatial
            for i in base..<(base + spatial) { d[i] = s[i] * k + t }
          }
        }
      }
    }
  }
  return FloatValue(shape: x.shape, data: out, nhwc: x.nhwc)
}

/// `BatchNormalization` in inference mode: `y = (x − mean)/√(var + ε)·scale + B`, folded into a
/// per-channel affine map at load time.
struct BatchNormKernel: ONNXKernel {
  let scale: [Float]
  let shift: [Float]
  var foldable: Bool { false }
  var bakedInputs: Set<Int> { [1, 2, 3, 4] }

  static func make(_ c: NodeContext, constants: [ONNXValue?]) throws -> BatchNormKernel {
    try c.inputs(5...5)
    try c.allowOnly(["epsilon", "momentum", "spatial", "training_mode", "is_test", "consumed_inputs"])
    if try c.int("training_mode", default: 0) != 0 { throw c.invalid("training_mode = 1 is not supported") }
    if try c.int("spatial", default: 1) != 1 { throw c.invalid("spatial = 0 is not supported") }
    guard c.node.outputs.count == 1 else { throw c.invalid("the training outputs (running mean/var) are not supported") }
    let eps = try c.float("epsilon", default: 1e-5)
    var params: [[Float]] = []
    for (i, what) in [(1, "Scale"), (2, "B"), (3, "Mean"), (4, "Var")] {
      guard let v = try constantFloat(constants, i, what, c) else { throw c.invalid("\(what) is missing") }
      params.append(v.data.scalars())
    }
    let channels = params[0].count
    guard params.allSatisfy({ $0.count == channels }) else { throw c.invalid("parameters of different lengths") }
    var a = [Float](repeating: 0, count: channels)
    var b = [Float](repeating: 0, count: channels)
    for ch in 0..<channels {
      a[ch] = params[0][ch] / (params[3][ch] + eps).squareRoot()
      b[ch] = params[1][ch] - params[2][ch] * a[ch]
    }
    return BatchNormKernel(scale: a, shift: b)
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    let x = try inputs.float(0, "X")
    guard x.shape.count >= 2, x.shape[1] == scale.count else {
      throw OpFailure("input \(x.shape) does not have \(scale.count) channels on axis 1")
    }
    return [.float(channelAffine(x, scale: scale, shift: shift))]
  }
}

/// `PRelu` with a constant slope (scalar or per-channel on axis 1).
struct PReluKernel: ONNXKernel {
  let slope: [Float]
  var foldable: Bool { false }
  var bakedInputs: Set<Int> { [1] }

  static func make(_ c: NodeContext, constants: [ONNXValue?]) throws -> PReluKernel {
    try c.inputs(2...2)
    try c.allowOnly([])
    guard let s = try constantFloat(constants, 1, "Slope", c) else { throw c.invalid("slope is missing") }
    // Per-channel slopes: [C], [C,1,1], [1,C,1,1] (axis 1 of the input); or one value.
    let dims = s.shape.filter { $0 != 1 }
    guard dims.count <= 1 else { throw c.invalid("slope shape \(s.shape) is not supported (scalar or per-channel only)") }
    if s.count > 1, s.shape.count >= 2, s.shape.last != 1, s.shape.count != 1 {
      throw c.invalid("slope shape \(s.shape) is not per-channel on axis 1")
    }
    return PReluKernel(slope: s.data.scalars())
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    let x = try inputs.float(0, "X")
    let c = x.shape.count >= 2 ? x.shape[1] : 1
    guard slope.count == 1 || (x.shape.count >= 2 && slope.count == c) else {
      throw OpFailure("slope of \(slope.count) values does not fit input \(x.shape)")
    }
    if slope.count == 1 {
      let k = slope[0]
      return [.float(UnaryKernel.apply(x) { $0 >= 0 ? $0 : $0 * k })]
    }
    let src = x.data.asFloat32()
    let out = Tensor(uninitializedShape: src.shape)
    let (s, d) = (src.floatPointer, out.mutableFloatPointer)
    let spatial = ShapeMath.count(Array(x.shape[2...]))
    slope.withUnsafeBufferPointer { a in
      if x.nhwc || spatial == 1 {
        Parallel.forRanges(x.shape[0] * spatial, costPerItem: c * 8) { r in
          for px in r {
            let base = px * c
            for ch in 0..<c {
              let v = s[base + ch]
              d[base + ch] = v >= 0 ? v : v * a[ch]
            }
          }
        }
      } else {
        Parallel.forRanges(x.shape[0] * c, costPerItem: spatial * 8) { r in
          for plane in r {
            let k = a[plane % c]
            for i in (plane * spatial)..<((plane + 1) * spatial) { d[i] = s[i] >= 0 ? s[i] : s[i] * k }
          }
        }
      }
    }
    return [.float(FloatValue(shape: x.shape, data: out, nhwc: x.nhwc))]
  }
}

/// `Gemm`: `Y = alpha·op(A)·op(B) + beta·C`. A constant B with a row-vector C runs on oneDNN.
struct GemmKernel: ONNXKernel {
  let alpha: Float
  let beta: Float
  let transA: Bool
  let transB: Bool
  let linear: LinearKernel?
  var limit = 1 << 28
  var foldable: Bool { linear == nil }
  var bakedInputs: Set<Int> { linear == nil ? [] : [1, 2] }

  static func make(_ c: NodeContext, constants: [ONNXValue?]) throws -> GemmKernel {
    try c.inputs(2...3)
    try c.allowOnly(["alpha", "beta", "transA", "transB", "broadcast"])
    let alpha = try c.float("alpha", default: 1)
    let beta = try c.float("beta", default: 1)
    let transA = try c.int("transA", default: 0) != 0
    let transB = try c.int("transB", default: 0) != 0
    var linear: LinearKernel?
    if !transA, let b = constants.count > 1 ? constants[1] : nil, case .float(let bw) = b, bw.shape.count == 2 {
      // Weight [N, K] for x·Wᵀ.
      var w = transB ? bw.data.reshaped(bw.shape) : transpose2D(bw.data, rows: bw.shape[0], columns: bw.shape[1])
      if alpha != 1 { w = Ops.scale(w, alpha) }
      let n = w.shape[0]
      var bias: Tensor?
      var ok = true
      if c.node.inputs.count > 2, !c.node.inputs[2].isEmpty {
        if let cv = constants[2], case .float(let cf) = cv, cf.count == n || cf.count == 1,
          cf.shape.count <= 1 || (cf.shape.count == 2 && cf.shape[0] == 1)
        {
          let v = cf.data.scalars()
          bias = try Tensor(shape: [n], floats: (0..<n).map { beta * v[cf.count == 1 ? 0 : $0] })
        } else {
          ok = false
        }
      }
      if ok, n > 0, w.shape[1] > 0 { linear = try LinearKernel(weight: w, bias: bias) }
    }
    return GemmKernel(alpha: alpha, beta: beta, transA: transA, transB: transB, linear: linear, limit: c.maxElements)
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    let a = try inputs.float(0, "A")
    guard a.shape.count == 2 else { throw OpFailure("A must be 2-D, is \(a.shape)") }
    if let linear {
      guard a.shape[1] == linear.inFeatures, a.shape[0] > 0 else { throw OpFailure("A \(a.shape) does not fit B with K = \(linear.inFeatures)") }
      let y = try linear(a.nchwData())
      return [.float(FloatValue(shape: y.shape, data: y))]
    }
    let b = try inputs.float(1, "B")
    guard b.shape.count == 2 else { throw OpFailure("B must be 2-D, is \(b.shape)") }
    let (m, k) = transA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
    let (kb, n) = transB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
    guard k == kb else { throw OpFailure("A \(a.shape) and B \(b.shape) do not fit (transA \(transA), transB \(transB))") }
    try checkSize([m, n], limit: limit)
    var out = Tensor.zeros([m, n])
    var betaUsed: Float = 0
    if let cv = inputs.optional(2), beta != 0 {
      guard case .float(let cf) = cv, let s = ShapeMath.broadcast([m, n], cf.shape), s == [m, n] else {
        throw OpFailure("C does not broadcast to [\(m), \(n)]")
      }
      let data = cf.nchwData()
      let st = ShapeMath.broadcastStrides(cf.shape, to: [m, n])
      let p = data.floatPointer
      out.withUnsafeMutableFloats { d in forEachIndex([m, n], st, st) { o, i, _ in d[o] = p[i] } }
      betaUsed = beta
    }
    let (ad, bd) = (a.nchwData(), b.nchwData())
    MatrixMultiply.gemm(
      m: m, n: n, k: k, alpha: alpha, a: ad.floatPointer, transposeA: transA, b: bd.floatPointer,
      transposeB: transB, beta: betaUsed, c: out.mutableFloatPointer)
    return [.float(FloatValue(shape: [m, n], data: out))]
  }
}

func transpose2D(_ t: Tensor, rows: Int, columns: Int) -> Tensor {
  let src = t.asFloat32()
  let out = Tensor(uninitializedShape: [columns, rows])
  let (s, d) = (src.floatPointer, out.mutableFloatPointer)
  for r in 0..<rows { for c in 0..<columns { d[c * rows + r] = s[r * columns + c] } }
  return out
}

/// `MatMul` with numpy semantics (batched, broadcasting batch dimensions).
struct MatMulKernel: ONNXKernel {
  var limit = 1 << 28

  static func make(_ c: NodeContext) throws -> MatMulKernel {
    try c.inputs(2...2)
    try c.allowOnly([])
    return MatMulKernel(limit: c.maxElements)
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    let a = try inputs.float(0, "A")
    let b = try inputs.float(1, "B")
    var sa = a.shape
    var sb = b.shape
    guard !sa.isEmpty, !sb.isEmpty else { throw OpFailure("MatMul of a scalar") }
    let aVector = sa.count == 1
    let bVector = sb.count == 1
    if aVector { sa = [1, sa[0]] }
    if bVector { sb = [sb[0], 1] }
    let (m, k) = (sa[sa.count - 2], sa[sa.count - 1])
    let (kb, n) = (sb[sb.count - 2], sb[sb.count - 1])
    guard k == kb else { throw OpFailure("shapes \(a.shape) and \(b.shape) do not fit") }
    let batchA = Array(sa.dropLast(2))
    let batchB = Array(sb.dropLast(2))
    guard let batch = ShapeMath.broadcast(batchA, batchB) else { throw OpFailure("batch dimensions \(batchA), \(batchB) do not broadcast") }
    try checkSize(batch + [m, n], limit: limit)
    let count = ShapeMath.count(batch)
    let out = Tensor(uninitializedShape: batch + [m, n])
    let (ad, bd) = (a.nchwData(), b.nchwData())
    let stA = ShapeMath.broadcastStrides(batchA, to: batch)
    let stB = ShapeMath.broadcastStrides(batchB, to: batch)
    var pairs: [(Int, Int)] = []
    if batch.isEmpty { pairs = [(0, 0)] } else { forEachIndex(batch, stA, stB) { _, i, j in pairs.append((i, j)) } }
    for (o, (i, j)) in pairs.enumerated() where o < count {
      MatrixMultiply.gemm(
        m: m, n: n, k: k, a: ad.floatPointer + i * m * k, b: bd.floatPointer + j * k * n,
        c: out.mutableFloatPointer + o * m * n)
    }
    var shape = batch + [m, n]
    if aVector { shape.remove(at: shape.count - 2) }
    if bVector { shape.removeLast() }
    return [.float(FloatValue(shape: shape, data: out.reshaped(shape)))]
  }
}
