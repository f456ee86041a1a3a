import TensorCore

extension ONNXValue {
  /// The same elements (logical order) with another shape.
  func reshaped(_ shape: [Int]) -> ONNXValue {
    switch self {
    case .float(let f): .float(FloatValue(shape: shape, data: f.nchwData().reshaped(shape)))
    case .int(let i): .int(IntValue(shape: shape, values: i.values, type: i.type))
    }
  }

  /// A new value of `shape` whose element `o` is this value's element `source(o)` (logical order).
  func gathered(_ shape: [Int], _ source: (Int) -> Int) -> ONNXValue {
    let n = ShapeMath.count(shape)
    switch self {
    case .float(let f):
      let data = f.nchwData()
      let out = Tensor(uninitializedShape: shape)
      let (s, d) = (data.floatPointer, out.mutableFloatPointer)
      for o in 0..<n { d[o] = s[source(o)] }
      return .float(FloatValue(shape: shape, data: out))
    case .int(let i):
      return .int(IntValue(shape: shape, values: (0..<n).map { i.values[source($0)] }, type: i.type))
    }
  }

  /// A new value of `shape` whose element at multi-index `i` is this value's element
  /// `base + Σ i[k]·strides[k]` (logical order): a transposition, a strided slice.
  func gathered(_ shape: [Int], base: Int, strides: [Int]) -> ONNXValue {
    let outStrides = ShapeMath.strides(shape)
    return gathered(shape) { o in
      var rem = o
      var src = base
      for k in 0..<shape.count {
        let (q, r) = rem.quotientAndRemainder(dividingBy: outStrides[k])
        src += q * strides[k]
        rem = r
      }
      return src
    }
  }
}

/// Integer list from a constant-or-runtime int input.
func intList(_ v: ONNXValue?, _ what: String) throws -> [Int64] {
  guard let v else { throw OpFailure("\(what) is missing") }
  guard case .int(let i) = v else { throw OpFailure("\(what) must be an integer tensor") }
  return i.values
}

/// `Shape` (with opset-15 `start`/`end`).
struct ShapeKernel: ONNXKernel {
  let start: Int64
  let end: Int64?

  static func make(_ c: NodeContext) throws -> ShapeKernel {
    try c.inputs(1...1)
    try c.allowOnly(["start", "end"])
    return ShapeKernel(start: try c.int("start", default: 0), end: try c.int("end"))
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    guard let x = inputs.optional(0) else { throw OpFailure("input is missing") }
    let dims = x.shape.map { Int64($0) }
    let r = Int64(dims.count)
    func clamp(_ v: Int64) -> Int { Int(Swift.min(Swift.max(v < 0 ? v + r : v, 0), r)) }
    let lo = clamp(start)
    let hi = Swift.max(lo, clamp(end ?? r))
    let slice = Array(dims[lo..<hi])
    return [.int(IntValue(shape: [slice.count], values: slice, type: .int64))]
  }
}

/// `Reshape` (0 copies a dimension unless `allowzero`, -1 is inferred).
struct ReshapeKernel: ONNXKernel {
  let allowZero: Bool

  static func make(_ c: NodeContext) throws -> ReshapeKernel {
    try c.inputs(2...2)
    try c.allowOnly(["allowzero"])
    return ReshapeKernel(allowZero: try c.int("allowzero", default: 0) != 0)
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    guard let x = inputs.optional(0) else { throw OpFailure("data is missing") }
    let spec = try intList(inputs.optional(1), "shape")
    let inShape = x.shape
    var out: [Int] = []
    var inferred: Int?
    for (i, d) in spec.enumerated() {
      if d == -1 {
        guard inferred == nil else { throw OpFailure("shape \(spec) has more than one -1") }
        inferred = i
        out.append(1)
      } else if d == 0 && !allowZero {
        guard i < inShape.count else { throw OpFailure("shape \(spec) copies dimension \(i) of a rank-\(inShape.count) input") }
        out.append(inShape[i])
      } else {
        guard d >= 0, d <= Int64(TensorDecoding.maxFloatElements) else { throw OpFailure("invalid dimension \(d) in shape \(spec)") }
        out.append(Int(d))
      }
    }
    let total = ShapeMath.count(inShape)
    if let i = inferred {
      let rest = ShapeMath.count(out)
      guard rest > 0, total % rest == 0 else { throw OpFailure("cannot reshape \(inShape) to \(spec)") }
      out[i] = total / rest
    }
    guard ShapeMath.count(out) == total else { throw OpFailure("cannot reshape \(inShape) (\(total) elements) to \(spec)") }
    return [x.reshaped(out)]
  }
}

/// `Flatten` to 2-D at `axis`.
struct FlattenKernel: ONNXKernel {
  let axis: Int64

  static func make(_ c: NodeContext) throws -> FlattenKernel {
    try c.inputs(1...1)
    try c.allowOnly(["axis"])
    return FlattenKernel(axis: try c.int("axis", default: 1))
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    guard let x = inputs.optional(0) else { throw OpFailure("input is missing") }
    let s = x.shape
    let a = axis < 0 ? Int(axis) + s.count : Int(axis)
    guard (0...s.count).contains(a) else { throw OpFailure("axis \(axis) is out of range for rank \(s.count)") }
    return [x.reshaped([ShapeMath.count(Array(s[..<a])), ShapeMath.count(Array(s[a...]))])]
  }
}

/// `Squeeze` / `Unsqueeze` (axes as an attribute before opset 13, as an input from 13).
struct SqueezeKernel: ONNXKernel {
  let unsqueeze: Bool
  let axesAttribute: [Int64]?

  static func make(_ c: NodeContext) throws -> SqueezeKernel {
    try c.inputs(1...2)
    try c.allowOnly(c.opset < 13 ? ["axes"] : [])
    return SqueezeKernel(unsqueeze: c.op == "Unsqueeze", axesAttribute: try c.ints("axes"))
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    guard let x = inputs.optional(0) else { throw OpFailure("input is missing") }
    let axes: [Int64]? = try inputs.optional(1).map { try intList($0, "axes") } ?? axesAttribute
    var shape = x.shape
    if unsqueeze {
      guard let axes else { throw OpFailure("axes are missing") }
      let rank = shape.count + axes.count
      let normal = try axes.map { a -> Int in
        guard let v = ShapeMath.axis(a, rank: rank) else { throw OpFailure("axis \(a) is out of range") }
        return v
      }
      guard Set(normal).count == normal.count else { throw OpFailure("repeated axes \(axes)") }
      for a in normal.sorted() { shape.insert(1, at: a) }
    } else if let axes {
      let normal = try Set(axes.map { a -> Int in
        guard let v = ShapeMath.axis(a, rank: shape.count), shape[v] == 1 else {
          throw OpFailure("cannot squeeze axis \(a) of shape \(shape)")
        }
        return v
      })
      shape = shape.enumerated().filter { !normal.contains($0.offset) }.map(\.element)
    } else {
      shape = shape.filter { $0 != 1 }
    }
    return [x.reshaped(shape)]
  }
}

/// `Transpose`. A permutation `[0, 2, 3, 1]` of an NHWC activation is free.
struct TransposeKernel: ONNXKernel {
  let perm: [Int64]?

  static func make(_ c: NodeContext) throws -> TransposeKernel {
    try c.inputs(1...1)
    try c.allowOnly(["perm"])
    return TransposeKernel(perm: try c.ints("perm"))
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    guard let x = inputs.optional(0) else { throw OpFailure("input is missing") }
    let s = x.shape
    let p = perm.map { $0.map(Int.init) } ?? Array((0..<s.count).reversed())
    guard p.count == s.count, Set(p) == Set(0..<s.count) else { throw OpFailure("perm \(p) is not a permutation of rank \(s.count)") }
    let outShape = p.map { s[$0] }
    if case .float(let f) = x, f.nhwc, p == [0, 2, 3, 1] {
      return [.float(FloatValue(shape: outShape, data: f.data.reshaped(outShape)))]
    }
    let inStrides = ShapeMath.strides(s)
    return [x.gathered(outShape, base: 0, strides: p.map { inStrides[$0] })]
  }
}

/// `Concat` along `axis` (channel concatenation of NHWC activations stays NHWC).
struct ConcatKernel: ONNXKernel {
  let axis: Int64

  static func make(_ c: NodeContext) throws -> ConcatKernel {
    try c.inputs(1...4096)
    try c.allowOnly(["axis"])
    guard let a = try c.int("axis") else { throw c.invalid("attribute 'axis' is required") }
    return ConcatKernel(axis: a)
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    let parts = inputs.compactMap { $0 }
    guard let first = parts.first else { throw OpFailure("no inputs") }
    let rank = first.shape.count
    guard let a = ShapeMath.axis(axis, rank: rank) else { throw OpFailure("axis \(axis) is out of range for rank \(rank)") }
    var outShape = first.shape
    outShape[a] = 0
    for p in parts {
      var s = p.shape
      guard s.count == rank else { throw OpFailure("inputs of different ranks") }
      outShape[a] += s[a]
      s[a] = first.shape[a]
      guard s == first.shape else { throw OpFailure("shapes \(parts.map(\.shape)) differ outside axis \(a)") }
    }
    let outer = ShapeMath.count(Array(outShape[..<a]))
    let inner = ShapeMath.count(Array(outShape[(a + 1)...]))
    switch first {
    case .int:
      var values: [Int64] = []
      for o in 0..<outer {
        for p in parts {
          guard case .int(let v) = p else { throw OpFailure("mixed integer and float inputs") }
          let chunk = v.shape[a] * inner
          values.append(contentsOf: v.values[(o * chunk)..<((o + 1) * chunk)])
        }
      }
      guard case .int(let f) = first else { fatalError() }
      return [.int(IntValue(shape: outShape, values: values, type: f.type))]
    case .float:
      let floats = try parts.map { p -> FloatValue in
        guard case .float(let f) = p else { throw OpFailure("mixed integer and float inputs") }
        return f
      }
      // NHWC channel concatenation.
      if rank == 4, a == 1, floats.allSatisfy({ $0.nhwc }) {
        let (n, h, w) = (outShape[0], outShape[2], outShape[3])
        let c = outShape[1]
        let out = Tensor(uninitializedShape: [n, h, w, c])
        let d = out.mutableFloatPointer
        var offset = 0
        for f in floats {
          let ci = f.shape[1]
          let s = f.data.floatPointer
          for px in 0..<(n * h * w) {
            (d + px * c + offset).update(from: s + px * ci, count: ci)
          }
          offset += ci
        }
        return [.float(FloatValue(shape: outShape, data: out, nhwc: true))]
      }
      let out = Tensor(uninitializedShape: outShape)
      let d = out.mutableFloatPointer
      let datas = floats.map { $0.nchwData() }
      var pos = 0
      for o in 0..<outer {
        for (f, data) in zip(floats, datas) {
          let chunk = f.shape[a] * inner
          (d + pos).update(from: data.floatPointer + o * chunk, count: chunk)
          pos += chunk
        }
      }
      return [.float(FloatValue(shape: outShape, data: out))]
    }
  }
}

/// `Gather` along `axis` (negative indices count from the end).
struct GatherKernel: ONNXKernel {
  let axis: Int64
  var limit = 1 << 28

  static func make(_ c: NodeContext) throws -> GatherKernel {
    try c.inputs(2...2)
    try c.allowOnly(["axis"])
    return GatherKernel(axis: try c.int("axis", default: 0), limit: c.maxElements)
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    guard let data = inputs.optional(0) else { throw OpFailure("data is missing") }
    let indices = try inputs.int(1, "indices")
    let s = data.shape
    guard let a = ShapeMath.axis(axis, rank: s.count), !s.isEmpty else { throw OpFailure("axis \(axis) is out of range for rank \(s.count)") }
    let dim = s[a]
    let idx = try indices.values.map { i -> Int in
      let v = i < 0 ? Int(i) + dim : Int(i)
      guard (0..<dim).contains(v) else { throw OpFailure("index \(i) is out of range for dimension \(dim)") }
      return v
    }
    let outShape = Array(s[..<a]) + indices.shape + Array(s[(a + 1)...])
    try checkSize(outShape, limit: limit)
    let inner = ShapeMath.count(Array(s[(a + 1)...]))
    let k = idx.count
    return [data.gathered(outShape) { o in
      let (rest, i) = o.quotientAndRemainder(dividingBy: inner)
      let (outer, j) = rest.quotientAndRemainder(dividingBy: Swift.max(k, 1))
      return (outer * dim + idx[j]) * inner + i
    }]
  }
}

/// `Slice` (opset ≥ 10: starts/ends/axes/steps inputs; earlier: attributes).
struct SliceKernel: ONNXKernel {
  let attributes: (starts: [Int64], ends: [Int64], axes: [Int64]?)?

  static func make(_ c: NodeContext) throws -> SliceKernel {
    if c.opset < 10 {
      try c.inputs(1...1)
      try c.allowOnly(["starts", "ends", "axes"])
      guard let s = try c.ints("starts"), let e = try c.ints("ends") else { throw c.invalid("starts and ends are required") }
      return SliceKernel(attributes: (s, e, try c.ints("axes")))
    }
    try c.inputs(3...5)
    try c.allowOnly([])
    return SliceKernel(attributes: nil)
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    guard let x = inputs.optional(0) else { throw OpFailure("data is missing") }
    let starts: [Int64]
    let ends: [Int64]
    var axes: [Int64]?
    var steps: [Int64]?
    if let attributes {
      (starts, ends, axes) = attributes
    } else {
      starts = try intList(inputs.optional(1), "starts")
      ends = try intList(inputs.optional(2), "ends")
      axes = try inputs.optional(3).map { try intList($0, "axes") }
      steps = try inputs.optional(4).map { try intList($0, "steps") }
    }
    let s = x.shape
    let axisList = axes ?? (0..<Int64(starts.count)).map { $0 }
    let stepList = steps ?? [Int64](repeating: 1, count: starts.count)
    guard starts.count == ends.count, axisList.count == starts.count, stepList.count == starts.count else {
      throw OpFailure("starts/ends/axes/steps have different lengths")
    }
    var begin = [Int](repeating: 0, count: s.count)
    var step = [Int](repeating: 1, count: s.count)
    var outShape = s
    for k in 0..<starts.count {
      guard let a = ShapeMath.axis(axisList[k], rank: s.count) else { throw OpFailure("axis \(axisList[k]) is out of range") }
      let st = stepList[k]
      guard st != 0, st != Int64.min else { throw OpFailure("invalid step \(st)") }
      let dim = Int64(s[a])
      var b = starts[k] < 0 ? starts[k] + dim : starts[k]
      var e = ends[k] < 0 ? ends[k] + dim : ends[k]
      if st > 0 {
        b = Swift.min(Swift.max(b, 0), dim)
        e = Swift.min(Swift.max(e, 0), dim)
        outShape[a] = e > b ? Int((e - b - 1) / st + 1) : 0
      } else {
        b = Swift.min(Swift.max(b, 0), dim - 1)
        e = Swift.min(Swift.max(e, -1), dim - 1)
        outShape[a] = b > e ? Int((b - e - 1) / (-st) + 1) : 0
      }
      begin[a] = Int(b)
      // A step longer than the axis selects one element, as the axis' own length does; clamped so
      // that step × stride cannot overflow (a file may give any Int64).
      let longest = Swift.max(dim, 1)
      step[a] = Int(st > 0 ? Swift.min(st, longest) : Swift.max(st, -longest))
    }
    let inStrides = ShapeMath.strides(s)
    let base = zip(begin, inStrides).reduce(0) { $0 + $1.0 * $1.1 }
    return [x.gathered(outShape, base: base, strides: zip(step, inStrides).map { $0 * $1 })]
  }
}

/// `Cast` between float32 and the integer types (no float16/float64 computation).
struct CastKernel: ONNXKernel {
  let target: ONNXDataType

  static func make(_ c: NodeContext) throws -> CastKernel {
    try c.inputs(1...1)
    try c.allowOnly(["to", "saturate"])
    guard let to = try c.int("to"), let type = ONNXDataType(rawValue: Int32(truncatingIfNeeded: to)) else {
      throw c.invalid("attribute 'to' is missing or unknown")
    }
    switch type {
    case .float, .int64, .int32, .int16, .int8, .uint8, .uint16, .uint32, .uint64, .bool: break
    default: throw c.invalid("casting to \(type) is not supported (the engine computes in float32)")
    }
    return CastKernel(target: type)
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    guard let x = inputs.optional(0) else { throw OpFailure("input is missing") }
    switch (x, target) {
    case (.float, .float): return [x]
    case (.float(let f), _):
      let values = try f.nchwData().scalars().map { v -> Int64 in
        guard v.isFinite, Swift.abs(v) < 9.2e18 else { throw OpFailure("cannot cast \(v) to \(target)") }
        return target == .bool ? (v != 0 ? 1 : 0) : Int64(v)
      }
      return [.int(IntValue(shape: f.shape, values: values, type: target))]
    case (.int(let i), .float):
      return [.float(FloatValue(shape: i.shape, data: try Tensor(shape: i.shape, floats: i.values.map { Float($0) })))]
    case (.int(let i), _):
      return [.int(IntValue(shape: i.shape, values: target == .bool ? i.values.map { $0 != 0 ? 1 : 0 } : i.values, type: target))]
    }
  }
}

/// `Constant` (tensor or scalar/list attribute forms).
struct ConstantKernel: ONNXKernel {
  let value: ONNXValue

  static func make(_ c: NodeContext, bytes: UnsafeRawBufferPointer?) throws -> ConstantKernel {
    try c.inputs(0...0)
    guard c.node.attributes.count == 1, let (name, attribute) = c.node.attributes.first else {
      throw c.invalid("needs exactly one value attribute")
    }
    switch (name, attribute) {
    case ("value", .tensor(let t)):
      do {
        return ConstantKernel(value: try TensorDecoding.decode(t, bytes: bytes ?? UnsafeRawBufferPointer(start: nil, count: 0)))
      } catch let e as OpFailure {
        throw c.invalid("value: \(e.reason)")
      }
    case ("value_float", .float(let f)):
      return ConstantKernel(value: .float(FloatValue(shape: [], data: try Tensor(shape: [], floats: [f]))))
    case ("value_floats", .floats(let f)):
      return ConstantKernel(value: .float(FloatValue(shape: [f.count], data: try Tensor(shape: [f.count], floats: f))))
    case ("value_int", .int(let i)):
      return ConstantKernel(value: .int(IntValue(shape: [], values: [i], type: .int64)))
    case ("value_ints", .ints(let i)):
      return ConstantKernel(value: .int(IntValue(shape: [i.count], values: i, type: .int64)))
    default:
      throw c.invalid("attribute '\(name)' (\(attribute.kindName)) is not supported")
    }
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] { [value] }
}

/// `ConstantOfShape`.
struct ConstantOfShapeKernel: ONNXKernel {
  let value: ONNXValue
  var limit = 1 << 28

  static func make(_ c: NodeContext, bytes: UnsafeRawBufferPointer?) throws -> ConstantOfShapeKernel {
    try c.inputs(1...1)
    try c.allowOnly(["value"])
    var v = ONNXValue.float(FloatValue(shape: [1], data: try Tensor(shape: [1], floats: [0])))
    if case .tensor(let t)? = c.node.attributes["value"] {
      do { v = try TensorDecoding.decode(t, bytes: bytes ?? UnsafeRawBufferPointer(start: nil, count: 0)) } catch let e as OpFailure { throw c.invalid("value: \(e.reason)") }
    }
    guard ShapeMath.count(v.shape) == 1 else { throw c.invalid("value must hold one element") }
    return ConstantOfShapeKernel(value: v, limit: min(c.maxElements, TensorDecoding.maxIntElements))
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    let dims = try intList(inputs.optional(0), "shape")
    guard dims.allSatisfy({ $0 >= 0 && $0 <= 1 << 31 }) else { throw OpFailure("invalid shape \(dims)") }
    let shape = dims.map(Int.init)
    var total = 1
    for d in shape {
      let (p, o) = total.multipliedReportingOverflow(by: d)
      guard !o, p <= limit else { throw OpFailure("shape \(dims) is too large") }
      total = p
    }
    return [value.gathered(shape) { _ in 0 }]
  }
}
