import Foundation
import TensorCore

/// `MaxPool`, `AveragePool` (2-D, NHWC), `GlobalAveragePool`, `GlobalMaxPool`.
///
/// Output size and window clipping follow onnxruntime: with `ceil_mode` the last window must
/// start inside the input (or its leading padding); `AveragePool` divides by the window clipped
/// to the padded extent (`count_include_pad = 1`) or to the input (`0`).
struct PoolKernel: ONNXKernel {
  enum Kind { case max, average, globalAverage, globalMax }
  let kind: Kind
  let kernel: (Int, Int)
  let stride: (Int, Int)
  let pads: [Int]
  let ceil: Bool
  let countIncludePad: Bool
  var limit = 1 << 28

  static func make(_ c: NodeContext) throws -> PoolKernel {
    try c.inputs(1...1)
    switch c.op {
    case "GlobalAveragePool", "GlobalMaxPool":
      try c.allowOnly([])
      return PoolKernel(
        kind: c.op == "GlobalAveragePool" ? .globalAverage : .globalMax, kernel: (0, 0), stride: (1, 1), pads: [0, 0, 0, 0],
        ceil: false, countIncludePad: false, limit: c.maxElements)
    default:
      try c.allowOnly(["auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "storage_order", "strides"])
      guard c.node.outputs.count == 1 else { throw c.invalid("the Indices output is not supported") }
      guard let k = try c.ints("kernel_shape"), k.count == 2, k.allSatisfy({ (1...1024).contains($0) }) else {
        throw c.invalid("only 2-D pooling with kernel_shape of two sizes 1–1024 is supported")
      }
      let s = try c.ints("strides") ?? [1, 1]
      guard s.count == 2, s.allSatisfy({ (1...1024).contains($0) }) else { throw c.invalid("strides \(s) are not supported") }
      if let d = try c.ints("dilations"), d.contains(where: { $0 != 1 }) { throw c.invalid("dilations \(d) are not supported") }
      if try c.int("storage_order", default: 0) != 0 { throw c.invalid("storage_order 1 is not supported") }
      var pads = try c.ints("pads") ?? [0, 0, 0, 0]
      switch try c.string("auto_pad", default: "NOTSET") {
      case "NOTSET": break
      case "VALID": pads = [0, 0, 0, 0]
      case let other: throw c.invalid("auto_pad \(other) is not supported")
      }
      guard pads.count == 4, pads.allSatisfy({ (0...1024).contains($0) }),
        pads[0] < k[0], pads[2] < k[0], pads[1] < k[1], pads[3] < k[1]
      else { throw c.invalid("pads \(pads) are invalid for kernel \(k)") }
      return PoolKernel(
        kind: c.op == "MaxPool" ? .max : .average, kernel: (Int(k[0]), Int(k[1])), stride: (Int(s[0]), Int(s[1])),
        pads: pads.map(Int.init), ceil: try c.int("ceil_mode", default: 0) != 0,
        countIncludePad: try c.int("count_include_pad", default: 0) != 0, limit: c.maxElements)
    }
  }

  static func outputSize(_ input: Int, kernel: Int, stride: Int, head: Int, tail: Int, ceil: Bool) -> Int {
    let numerator = input + head + tail - kernel
    guard numerator >= 0 else { return 0 }
    var out = (numerator + (ceil ? stride - 1 : 0)) / stride + 1
    if ceil, (out - 1) * stride >= input + head { out -= 1 }
    return out
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    let x = try inputs.float(0, "X")
    guard x.shape.count == 4 else { throw OpFailure("only 4-D inputs are supported, got \(x.shape)") }
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    guard x.shape.allSatisfy({ $0 > 0 }) else { throw OpFailure("cannot pool an empty tensor \(x.shape)") }
    let data = x.nhwcData()
    let s = data.floatPointer
    if kind == .globalAverage || kind == .globalMax {
      let out = Tensor(uninitializedShape: [n, 1, 1, c])
      let d = out.mutableFloatPointer
      let isMax = kind == .globalMax
      for b in 0..<n {
        let o = d + b * c
        for ch in 0..<c { o[ch] = isMax ? -.infinity : 0 }
        for p in 0..<(h * w) {
          let row = s + (b * h * w + p) * c
          if isMax { for ch in 0..<c { o[ch] = Swift.max(o[ch], row[ch]) } } else { for ch in 0..<c { o[ch] += row[ch] } }
        }
        if !isMax { for ch in 0..<c { o[ch] /= Float(h * w) } }
      }
      return [.float(FloatValue(shape: [n, c, 1, 1], data: out, nhwc: true))]
    }
    let oh = Self.outputSize(h, kernel: kernel.0, stride: stride.0, head: pads[0], tail: pads[2], ceil: ceil)
    let ow = Self.outputSize(w, kernel: kernel.1, stride: stride.1, head: pads[1], tail: pads[3], ceil: ceil)
    guard oh > 0, ow > 0 else { throw OpFailure("input \(h)×\(w) is smaller than the pooling window") }
    try checkSize([n, c, oh, ow], limit: limit)
    let out = Tensor(uninitializedShape: [n, oh, ow, c])
    let d = out.mutableFloatPointer
    let isMax = kind == .max
    Parallel.forRanges(n * oh, costPerItem: ow * c * kernel.0 * kernel.1) { r in
      for row in r {
        let (b, oy) = row.quotientAndRemainder(dividingBy: oh)
        let y0p = oy * stride.0 - pads[0]
        let y1p = Swift.min(y0p + kernel.0, h + pads[2])
        let y0 = Swift.max(y0p, 0)
        let y1 = Swift.min(y1p, h)
        for ox in 0..<ow {
          let x0p = ox * stride.1 - pads[1]
          let x1p = Swift.min(x0p + kernel.1, w + pads[3])
          let x0 = Swift.max(x0p, 0)
          let x1 = Swift.min(x1p, w)
          let o = d + ((b * oh + oy) * ow + ox) * c
          for ch in 0..<c { o[ch] = isMax ? -.infinity : 0 }
          for y in y0..<Swift.max(y0, y1) {
            for xx in x0..<Swift.max(x0, x1) {
              let p = s + ((b * h + y) * w + xx) * c
              if isMax { for ch in 0..<c { o[ch] = Swift.max(o[ch], p[ch]) } } else { for ch in 0..<c { o[ch] += p[ch] } }
            }
          }
          if !isMax {
            let size = countIncludePad ? (y1p - y0p) * (x1p - x0p) : (y1 - y0) * (x1 - x0)
            let inv = Float(Swift.max(size, 1))
            for ch in 0..<c { o[ch] /= inv }
          }
        }
      }
    }
    return [.float(FloatValue(shape: [n, c, oh, ow], data: out, nhwc: true))]
  }
}

/// `Resize` (opsets 10–18) and `Upsample` (7–9), nearest neighbour over H and W of a 4-D tensor.
struct ResizeKernel: ONNXKernel {
  enum Transform: String { case halfPixel = "half_pixel", pytorchHalfPixel = "pytorch_half_pixel", alignCorners = "align_corners", asymmetric, tfHalfPixelForNN = "tf_half_pixel_for_nn" }
  enum Rounding: String { case roundPreferFloor = "round_prefer_floor", roundPreferCeil = "round_prefer_ceil", floor, ceil, simple }
  let transform: Transform
  let rounding: Rounding
  let upsample: Bool
  let scalesAttribute: [Float]?
  let opset: Int64
  var limit = 1 << 28

  static func make(_ c: NodeContext) throws -> ResizeKernel {
    let upsample = c.op == "Upsample"
    let mode = try c.string("mode", default: "nearest")
    guard mode == "nearest" else { throw c.invalid("mode '\(mode)' is not supported (nearest only)") }
    if upsample {
      try c.inputs(1...2)
      try c.allowOnly(["mode", "scales", "height_scale", "width_scale"])
      return ResizeKernel(transform: .asymmetric, rounding: .simple, upsample: true, scalesAttribute: try c.floats("scales"), opset: c.opset, limit: c.maxElements)
    }
    try c.inputs(2...4)
    try c.allowOnly(["mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside", "extrapolation_value", "antialias", "axes", "keep_aspect_ratio_policy"])
    if try c.int("antialias", default: 0) != 0 { throw c.invalid("antialias is not supported for nearest") }
    if try c.ints("axes") != nil { throw c.invalid("the axes attribute is not supported") }
    let policy = try c.string("keep_aspect_ratio_policy", default: "stretch")
    guard policy == "stretch" else { throw c.invalid("keep_aspect_ratio_policy \(policy) is not supported") }
    let tname = try c.string("coordinate_transformation_mode", default: c.opset < 11 ? "asymmetric" : "half_pixel")
    guard let t = Transform(rawValue: tname) else { throw c.invalid("coordinate_transformation_mode \(tname) is not supported") }
    let rname = try c.string("nearest_mode", default: c.opset < 11 ? "simple" : "round_prefer_floor")
    guard let r = Rounding(rawValue: rname), r != .simple || c.opset < 11 else { throw c.invalid("nearest_mode \(rname) is not supported") }
    return ResizeKernel(transform: t, rounding: r, upsample: false, scalesAttribute: nil, opset: c.opset, limit: c.maxElements)
  }

  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue] {
    let x = try inputs.float(0, "X")
    guard x.shape.count == 4 else { throw OpFailure("only 4-D inputs are supported, got \(x.shape)") }
    var scales: [Float]?
    var sizes: [Int]?
    if upsample {
      if let v = inputs.optional(1) {
        guard case .float(let f) = v else { throw OpFailure("scales must be float") }
        scales = f.data.scalars()
      } else {
        scales = scalesAttribute
      }
    } else {
      let scalesIndex = opset < 11 ? 1 : 2
      if let v = inputs.optional(scalesIndex), case .float(let f) = v, f.count > 0 { scales = f.data.scalars() }
      if opset >= 11, let v = inputs.optional(3) {
        let list = try intList(v, "sizes")
        if !list.isEmpty {
          guard list.allSatisfy({ $0 > 0 && $0 <= 1 << 20 }) else { throw OpFailure("invalid sizes \(list)") }
          sizes = list.map(Int.init)
        }
      }
    }
    let inShape = x.shape
    guard inShape.allSatisfy({ $0 > 0 }) else { throw OpFailure("cannot resize an empty tensor \(inShape)") }
    var outShape = inShape
    var axisScale = [Float](repeating: 1, count: 4)
    if let sizes {
      guard sizes.count == 4 else { throw OpFailure("sizes \(sizes) must have 4 entries") }
      outShape = sizes
      for i in 0..<4 { axisScale[i] = Float(sizes[i]) / Float(inShape[i]) }
    } else if let scales {
      guard scales.count == 4, scales.allSatisfy({ $0 > 0 && $0.isFinite && $0 <= 1024 }) else { throw OpFailure("invalid scales \(scales)") }
      axisScale = scales
      for i in 0..<4 { outShape[i] = Int(Float(inShape[i]) * scales[i]) }
    } else {
      throw OpFailure("neither scales nor sizes are given")
    }
    guard outShape[0] == inShape[0], outShape[1] == inShape[1] else { throw OpFailure("resizing the batch or channel axis is not supported") }
    guard outShape[2] > 0, outShape[3] > 0, outShape[2] <= 1 << 20, outShape[3] <= 1 << 20 else { throw OpFailure("output size \(outShape) is invalid") }
    try checkSize(outShape, limit: limit)
    let rows = sourceIndices(outShape[2], inShape[2], axisScale[2])
    let cols = sourceIndices(outShape[3], inShape[3], axisScale[3])
    let (n, c, h, w) = (inShape[0], inShape[1], inShape[2], inShape[3])
    let (oh, ow) = (outShape[2], outShape[3])
    let data = x.nhwcData()
    let out = Tensor(uninitializedShape: [n, oh, ow, c])
    let (s, d) = (data.floatPointer, out.mutableFloatPointer)
    Parallel.forRanges(n * oh, costPerItem: ow * c) { r in
      for row in r {
        let (b, oy) = row.quotientAndRemainder(dividingBy: oh)
        let src = s + (b * h + rows[oy]) * w * c
        let dst = d + row * ow * c
        for ox in 0..<ow { (dst + ox * c).update(from: src + cols[ox] * c, count: c) }
      }
    }
    return [.float(FloatValue(shape: outShape, data: out, nhwc: true))]
  }

  private func sourceIndices(_ outSize: Int, _ inSize: Int, _ scale: Float) -> [Int] {
    (0..<outSize).map { o in
      let x = Float(o)
      let original: Float
      switch transform {
      case .halfPixel: original = (x + 0.5) / scale - 0.5
      case .pytorchHalfPixel: original = outSize > 1 ? (x + 0.5) / scale - 0.5 : 0
      case .alignCorners: original = outSize == 1 ? 0 : x * Float(inSize - 1) / Float(outSize - 1)
      case .asymmetric: original = x / scale
      case .tfHalfPixelForNN: original = (x + 0.5) / scale
      }
      var i: Int
      switch rounding {
      case .roundPreferFloor:
        i = original == original.rounded(.down) + 0.5 ? Int(original.rounded(.down)) : Int(original.rounded(.toNearestOrAwayFromZero))
      case .roundPreferCeil:
        i = original == original.rounded(.down) + 0.5 ? Int(original.rounded(.up)) : Int(original.rounded(.toNearestOrAwayFromZero))
      case .floor: i = Int(original.rounded(.down))
      case .ceil: i = Int(original.rounded(.up))
      case .simple: i = scale < 1 ? Int(original.rounded(.up)) : Int(original)
      }
      return Swift.min(Swift.max(i, 0), inSize - 1)
    }
  }
}
