import TensorCore

extension Tape {
  /// 2-D convolution of channels-last activations `[B, H, W, Cin]` with a weight in the
  /// checkpoint layout `[Cout, Cin, kh, kw]`, zero padding `padding` on every side, `stride`.
  ///
  /// matches: `torch.nn.functional.conv2d` on the NCHW transpose (the engine keeps activations
  /// NHWC). Computed as an im2col matrix `[B·Ho·Wo, kh·kw·Cin]` times the reordered weight with
  /// BLAS; backward: `dW = dyᵀ · cols`, `db = Σ dy`, `dx = col2im(dy · W)` — each only when needed.
  /// Memory: the im2col matrix is kept for the backward pass (kh·kw times the input).
  public func conv2d(_ x: Variable, weight: Variable, bias: Variable? = nil, stride: Int = 1, padding: Int = 0) throws -> Variable {
    guard x.shape.count == 4, weight.shape.count == 4, weight.shape[1] == x.shape[3], stride > 0, padding >= 0 else {
      throw AutogradError.invalidArgument("conv2d: input \(x.shape) (NHWC), weight \(weight.shape) ([Cout, Cin, kh, kw]), stride \(stride), padding \(padding)")
    }
    let (batch, h, w, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (cout, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
    let ho = (h + 2 * padding - kh) / stride + 1
    let wo = (w + 2 * padding - kw) / stride + 1
    guard ho > 0, wo > 0 else { throw AutogradError.invalidArgument("conv2d: a \(kh)×\(kw) kernel does not fit \(h)×\(w) with padding \(padding)") }
    if let bias, bias.shape != [cout] { throw AutogradError.shapeMismatch(operation: "conv2d bias", expected: [cout], actual: bias.shape) }
    let k = kh * kw * cin
    let rows = batch * ho * wo
    let geometry = ConvGeometry(batch: batch, h: h, w: w, cin: cin, kh: kh, kw: kw, ho: ho, wo: wo, stride: stride, padding: padding)
    let cols = geometry.im2col(x.value)
    let matrix = Self.reorder(weight.value, cout: cout, cin: cin, kh: kh, kw: kw)
    let out = Tensor(uninitializedShape: [batch, ho, wo, cout])
    let o = out.mutableFloatPointer
    if let b = bias?.value.floatPointer {
      for r in 0..<rows { (o + r * cout).update(from: b, count: cout) }
    }
    MatrixMultiply.gemm(m: rows, n: cout, k: k, a: cols.floatPointer, b: matrix.floatPointer, transposeB: true, beta: bias == nil ? 0 : 1, c: o)
    let inputs = [x, weight] + (bias.map { [$0] } ?? [])
    return record(out, inputs: inputs) { g, needs in
      var grads: [Tensor?] = Array(repeating: nil, count: needs.count)
      if needs[0] {
        let dcols = Tensor(uninitializedShape: [rows, k])
        MatrixMultiply.gemm(m: rows, n: k, k: cout, a: g.floatPointer, b: matrix.floatPointer, c: dcols.mutableFloatPointer)
        grads[0] = geometry.col2im(dcols)
      }
      if needs[1] {
        let dm = Tensor(uninitializedShape: [cout, k])
        MatrixMultiply.gemm(m: cout, n: k, k: rows, a: g.floatPointer, transposeA: true, b: cols.floatPointer, c: dm.mutableFloatPointer)
        grads[1] = Self.unreorder(dm, cout: cout, cin: cin, kh: kh, kw: kw)
      }
      if needs.count > 2, needs[2] { grads[2] = Reduce.sumRows(g, columns: cout) }
      return grads
    }
  }

  /// A convolution whose weight does not learn (a frozen UNet's): the forward value comes from
  /// `forward` (the engine's inference convolution — oneDNN, in the model's precision), nothing
  /// but shapes is kept for the backward pass, and the backward pass computes only the input's
  /// gradient `dx = col2im(dy · W)` in float32 (`matrix`: the weight as ``convolutionMatrix(_:)``
  /// lays it out, asked for during the backward pass only, so that no second copy of a frozen
  /// model's weights lives through the run), so neither the im2col matrix nor a weight gradient is
  /// ever built.
  ///
  /// matches: `F.conv2d` with `weight.requires_grad = False` (square kernels, uniform padding).
  public func frozenConv2d(
    _ x: Variable, outChannels cout: Int, kernel: Int, stride: Int, padding: Int, matrix: @escaping () -> Tensor,
    adjoint: ((Tensor) throws -> Tensor)? = nil, forward: (Tensor) throws -> Tensor
  ) throws -> Variable {
    guard x.shape.count == 4, cout > 0, kernel > 0, stride > 0, padding >= 0 else {
      throw AutogradError.invalidArgument("frozenConv2d: input \(x.shape) (NHWC), \(cout) outputs, \(kernel)×\(kernel) kernel")
    }
    let (batch, h, w, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let ho = (h + 2 * padding - kernel) / stride + 1
    let wo = (w + 2 * padding - kernel) / stride + 1
    let y = try forward(x.value).asFloat32()
    guard y.shape == [batch, ho, wo, cout] else {
      throw AutogradError.shapeMismatch(operation: "frozenConv2d forward", expected: [batch, ho, wo, cout], actual: y.shape)
    }
    let geometry = ConvGeometry(batch: batch, h: h, w: w, cin: cin, kh: kernel, kw: kernel, ho: ho, wo: wo, stride: stride, padding: padding)
    // Stride 1 with the output the input's size: dx is the forward convolution of dy with the
    // weight flipped in space and its channels swapped (on oneDNN, float32). Otherwise
    // (a strided downsampler): dx = col2im(dy · W).
    let sameSize = stride == 1 && ho == h && wo == w && 2 * padding == kernel - 1
    return record(y, inputs: [x]) { g, _ in
      if sameSize, let adjoint { return [try adjoint(g).asFloat32()] }
      let m = matrix()
      let rows = batch * ho * wo, k = kernel * kernel * cin
      guard m.shape == [cout, k] else { throw AutogradError.shapeMismatch(operation: "frozenConv2d weight", expected: [cout, k], actual: m.shape) }
      if sameSize {
        let flipped = Self.flippedTransposed(m, cout: cout, cin: cin, kernel: kernel)
        let adjoint = try Conv2DKernel(weight: flipped, bias: nil, padding: .uniform(kernel - 1 - padding))
        return [try adjoint(g).asFloat32()]
      }
      let dcols = Tensor(uninitializedShape: [rows, k])
      // `m` may be made for this call: keep it alive until the product has read it.
      withExtendedLifetime(m) {
        MatrixMultiply.gemm(m: rows, n: k, k: cout, a: g.floatPointer, b: m.floatPointer, c: dcols.mutableFloatPointer)
      }
      return [geometry.col2im(dcols)]
    }
  }

  /// The convolution computing a stride-1 same-size convolution's input gradient: its weight
  /// flipped in space with the channels swapped, padding `k − 1 − p` (oneDNN, in `precision`:
  /// bf16 when the frozen model computes in bf16, as autocast's backward does). Callers may keep it
  /// across steps (`adjoint:` of ``frozenConv2d``) to avoid re-packing the weights.
  public static func adjointConvolution(_ weight: Tensor, padding: Int, precision: ComputePrecision = .float32) throws -> Conv2DKernel {
    let w = weight.asFloat32()
    let (cout, cin, kernel) = (w.shape[0], w.shape[1], w.shape[2])
    let m = reorder(w, cout: cout, cin: cin, kh: kernel, kw: kernel)
    return try Conv2DKernel(
      weight: flippedTransposed(m, cout: cout, cin: cin, kernel: kernel), bias: nil, padding: .uniform(kernel - 1 - padding),
      precision: precision)
  }

  /// `W'[ci, co, y, x] = W[co, ci, k−1−y, k−1−x]` from the column-order matrix `[Cout, k·k·Cin]`.
  static func flippedTransposed(_ m: Tensor, cout: Int, cin: Int, kernel: Int) -> Tensor {
    let out = Tensor(uninitializedShape: [cin, cout, kernel, kernel])
    let s = m.floatPointer, d = out.mutableFloatPointer
    let kk = kernel * kernel
    for o in 0..<cout {
      for y in 0..<kernel {
        for x in 0..<kernel {
          let src = s + o * kk * cin + (y * kernel + x) * cin
          let tap = (kernel - 1 - y) * kernel + (kernel - 1 - x)
          for c in 0..<cin { d[(c * cout + o) * kk + tap] = src[c] }
        }
      }
    }
    return out
  }


  /// A `[Cout, Cin, kh, kw]` weight in the column order of ``frozenConv2d(_:outChannels:kernel:stride:padding:matrix:adjoint:forward:)``.
  public static func convolutionMatrix(_ weight: Tensor) -> Tensor {
    let w = weight.asFloat32()
    return reorder(w, cout: w.shape[0], cin: w.shape[1], kh: w.shape[2], kw: w.shape[3])
  }

  /// `[Cout, Cin, kh, kw]` → `[Cout, kh·kw·Cin]` (the im2col column order).
  static func reorder(_ w: Tensor, cout: Int, cin: Int, kh: Int, kw: Int) -> Tensor {
    let out = Tensor(uninitializedShape: [cout, kh * kw * cin])
    let s = w.floatPointer, d = out.mutableFloatPointer
    for o in 0..<cout { for c in 0..<cin { for y in 0..<kh { for x in 0..<kw {
      d[o * kh * kw * cin + (y * kw + x) * cin + c] = s[((o * cin + c) * kh + y) * kw + x]
    } } } }
    return out
  }

  /// The inverse of `reorder`.
  static func unreorder(_ m: Tensor, cout: Int, cin: Int, kh: Int, kw: Int) -> Tensor {
    let out = Tensor(uninitializedShape: [cout, cin, kh, kw])
    let s = m.floatPointer, d = out.mutableFloatPointer
    for o in 0..<cout { for c in 0..<cin { for y in 0..<kh { for x in 0..<kw {
      d[((o * cin + c) * kh + y) * kw + x] = s[o * kh * kw * cin + (y * kw + x) * cin + c]
    } } } }
    return out
  }

  /// Nearest-neighbour ×2 upsampling of `[B, H, W, C]`.
  ///
  /// matches: `F.interpolate(x, scale_factor=2.0, mode="nearest")` (diffusers `Upsample2D`).
  /// Backward: each 2×2 block's gradients summed.
  public func upsampleNearest2x(_ x: Variable) throws -> Variable {
    guard x.shape.count == 4 else { throw AutogradError.invalidArgument("upsampleNearest2x: input must be NHWC, got \(x.shape)") }
    let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let out = try Ops.upsampleNearest2x(x.value)
    return record(out, inputs: [x]) { g, _ in
      let dx = Tensor.zeros([b, h, w, c])
      let s = g.floatPointer, d = dx.mutableFloatPointer
      for n in 0..<b { for y in 0..<(2 * h) { for xx in 0..<(2 * w) {
        let src = s + ((n * 2 * h + y) * 2 * w + xx) * c
        let dst = d + ((n * h + y / 2) * w + xx / 2) * c
        for ch in 0..<c { dst[ch] += src[ch] }
      } } }
      return [dx]
    }
  }

  /// Elementwise `a · b` (same shapes).
  public func mul(_ a: Variable, _ b: Variable) throws -> Variable {
    guard a.shape == b.shape else { throw AutogradError.shapeMismatch(operation: "mul", expected: a.shape, actual: b.shape) }
    let (av, bv) = (a.value, b.value)
    return record(try Ops.mul(av, bv), inputs: [a, b]) { g, needs in
      [needs[0] ? try Ops.mul(g, bv) : nil, needs[1] ? try Ops.mul(g, av) : nil]
    }
  }
}

/// The index arithmetic of an NHWC convolution's im2col and col2im.
struct ConvGeometry {
  let batch: Int, h: Int, w: Int, cin: Int, kh: Int, kw: Int, ho: Int, wo: Int, stride: Int, padding: Int

  /// `[B·Ho·Wo, kh·kw·Cin]`, zeros where a tap falls in the padding.
  func im2col(_ x: Tensor) -> Tensor {
    let k = kh * kw * cin
    let cols = Tensor.zeros([batch * ho * wo, k])
    let s = x.floatPointer, d = cols.mutableFloatPointer
    for n in 0..<batch { for oy in 0..<ho { for ox in 0..<wo {
      let row = d + ((n * ho + oy) * wo + ox) * k
      for ky in 0..<kh {
        let iy = oy * stride - padding + ky
        guard iy >= 0, iy < h else { continue }
        for kx in 0..<kw {
          let ix = ox * stride - padding + kx
          guard ix >= 0, ix < w else { continue }
          (row + (ky * kw + kx) * cin).update(from: s + ((n * h + iy) * w + ix) * cin, count: cin)
        }
      }
    } } }
    return cols
  }

  /// The adjoint of `im2col`: every column entry added back to the input position it came from.
  func col2im(_ cols: Tensor) -> Tensor {
    let k = kh * kw * cin
    let dx = Tensor.zeros([batch, h, w, cin])
    let s = cols.floatPointer, d = dx.mutableFloatPointer
    for n in 0..<batch { for oy in 0..<ho { for ox in 0..<wo {
      let row = s + ((n * ho + oy) * wo + ox) * k
      for ky in 0..<kh {
        let iy = oy * stride - padding + ky
        guard iy >= 0, iy < h else { continue }
        for kx in 0..<kw {
          let ix = ox * stride - padding + kx
          guard ix >= 0, ix < w else { continue }
          let src = row + (ky * kw + kx) * cin
          let dst = d + ((n * h + iy) * w + ix) * cin
          for c in 0..<cin { dst[c] += src[c] }
        }
      }
    } } }
    return dx
  }
}
