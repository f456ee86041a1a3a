import TensorCore

/// A float tensor inside the executor: the logical (ONNX, NCHW) shape and the physical storage.
///
/// Rank-4 activations produced by convolutions live in NHWC storage (`nhwc == true`); every other
/// value is contiguous row-major in its logical shape. Operators that need a particular layout ask
/// for it (`nchwData()` / `nhwcData()`), which converts only when the layouts differ.
struct FloatValue {
  var shape: [Int]
  var data: Tensor
  var nhwc: Bool

  init(shape: [Int], data: Tensor, nhwc: Bool = false) {
    self.shape = shape
    self.data = data
    self.nhwc = nhwc
  }

  var count: Int { shape.reduce(1, *) }

  /// Whether NHWC and NCHW storage coincide (spatial size 1×1, or a single channel).
  var layoutIsAmbiguous: Bool { shape.count == 4 && (shape[2] * shape[3] == 1 || shape[1] == 1) }

  /// Contiguous row-major data in the logical shape.
  func nchwData() -> Tensor {
    if !nhwc || layoutIsAmbiguous { return data.reshaped(shape) }
    return Ops.nhwcToNchw(data, n: shape[0], h: shape[2], w: shape[3], c: shape[1])
  }

  /// NHWC data `[N, H, W, C]` of a rank-4 value.
  func nhwcData() -> Tensor {
    precondition(shape.count == 4)
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
    if nhwc || layoutIsAmbiguous { return data.reshaped([n, h, w, c]) }
    return Ops.nchwToNhwc(data, n: n, c: c, h: h, w: w)
  }

  func asNCHW() -> FloatValue { nhwc ? FloatValue(shape: shape, data: nchwData()) : self }
}

/// An integer tensor (shape arithmetic, indices). Int8…int64, uint8…uint32 and bool values are
/// held as Int64; `type` remembers the declared element type.
struct IntValue {
  var shape: [Int]
  var values: [Int64]
  var type: ONNXDataType

  var count: Int { values.count }
}

/// A value flowing between nodes.
enum ONNXValue {
  case float(FloatValue)
  case int(IntValue)

  var shape: [Int] {
    switch self {
    case .float(let f): f.shape
    case .int(let i): i.shape
    }
  }

  var typeName: String {
    switch self {
    case .float: "float32"
    case .int(let i): i.type.description
    }
  }
}

/// Shape helpers shared by the operators.
enum ShapeMath {
  static func count(_ shape: [Int]) -> Int { shape.reduce(1, *) }

  static func strides(_ shape: [Int]) -> [Int] {
    var s = [Int](repeating: 1, count: shape.count)
    var acc = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
      s[i] = acc
      acc *= shape[i]
    }
    return s
  }

  /// Numpy-style broadcast of two shapes, nil when they do not broadcast.
  static func broadcast(_ a: [Int], _ b: [Int]) -> [Int]? {
    let r = max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
      let x = i < r - a.count ? 1 : a[i - (r - a.count)]
      let y = i < r - b.count ? 1 : b[i - (r - b.count)]
      if x == y || y == 1 { out[i] = x } else if x == 1 { out[i] = y } else { return nil }
    }
    return out
  }

  /// Strides of `shape` viewed in the broadcast `target` shape (0 along broadcast axes).
  static func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
    let own = strides(shape)
    let offset = target.count - shape.count
    return (0..<target.count).map { i in
      i < offset ? 0 : (shape[i - offset] == 1 && target[i] != 1 ? 0 : own[i - offset])
    }
  }

  /// Normalises a possibly negative axis for a rank, nil when out of range (always for rank 0).
  static func axis(_ a: Int64, rank: Int) -> Int? {
    guard a > Int64(Int32.min), a < Int64(Int32.max) else { return nil }
    let v = a < 0 ? Int(a) + rank : Int(a)
    return (0..<rank).contains(v) ? v : nil
  }
}
