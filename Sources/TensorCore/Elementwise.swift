import CKernels

/// Elementwise and data-movement kernels on Float32 tensors, vectorised and spread over threads.
/// The arithmetic kernels are the C ones of `CKernels` (AVX2/FMA when the CPU has them, chosen at
/// run time); `map` applies any Swift closure, for small or one-off work.
public enum Ops {
  typealias V = SIMD16<Float>

  /// Applies `f` lane-wise to every element (16 at a time) of `x`.
  @inline(__always)
  public static func map(_ x: Tensor, _ f: (SIMD16<Float>) -> SIMD16<Float>) -> Tensor {
    let input = x.asFloat32()
    defer { withExtendedLifetime(input) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: x.shape)
    let src = input.floatPointer
    let dst = out.mutableFloatPointer
    let n = x.count
    Parallel.forBlocks(n, blockSize: 4096, costPerElement: 8) { block in
      var i = block.lowerBound
      let end = block.upperBound
      while i + 16 <= end {
        let y = f(UnsafeRawPointer(src + i).loadUnaligned(as: V.self))
        UnsafeMutableRawPointer(dst + i).storeBytes(of: y, as: V.self)
        i += 16
      }
      if i < end {
        var tail = V(repeating: 0)
        for j in 0..<(end - i) { tail[j] = src[i + j] }
        let y = f(tail)
        for j in 0..<(end - i) { dst[i + j] = y[j] }
      }
    }
    return out
  }

  /// Runs a C kernel over `x` into a new Float32 tensor of its shape, in blocks on all threads.
  @inline(__always)
  static func kernel(
    _ x: Tensor, costPerElement: Int = 8,
    _ body: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void
  ) -> Tensor {
    let input = x.asFloat32()
    defer { withExtendedLifetime(input) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: x.shape)
    let src = input.floatPointer
    let dst = out.mutableFloatPointer
    Parallel.forBlocks(x.count, blockSize: 4096, costPerElement: costPerElement) { block in
      body(src + block.lowerBound, dst + block.lowerBound, block.count)
    }
    return out
  }

  /// Combines two tensors of equal shape element-wise with a C kernel.
  static func binary(_ a: Tensor, _ b: Tensor, _ name: String, _ op: ipa_binary) throws -> Tensor {
    guard a.shape == b.shape else {
      throw TensorError.shapeMismatch(operation: name, expected: a.shape, actual: b.shape)
    }
    let x = a.asFloat32()
    defer { withExtendedLifetime(x) {} }  // read through raw pointers below
    let y = b.asFloat32()
    defer { withExtendedLifetime(y) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: a.shape)
    let (p, q, dst) = (x.floatPointer, y.floatPointer, out.mutableFloatPointer)
    Parallel.forBlocks(a.count, blockSize: 4096, costPerElement: 12) { block in
      let i = block.lowerBound
      ipa_binary_map(op, p + i, q + i, dst + i, block.count)
    }
    return out
  }

  /// A two-input C kernel over equal-shaped tensors, parallel in blocks.
  static func binaryKernel(
    _ a: Tensor, _ b: Tensor, _ name: String, costPerElement: Int = 24,
    _ body: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void
  ) throws -> Tensor {
    guard a.shape == b.shape else {
      throw TensorError.shapeMismatch(operation: name, expected: a.shape, actual: b.shape)
    }
    let (x, y) = (a.asFloat32(), b.asFloat32())
    defer { withExtendedLifetime((x, y)) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: a.shape)
    let (p, q, dst) = (x.floatPointer, y.floatPointer, out.mutableFloatPointer)
    Parallel.forBlocks(a.count, blockSize: 4096, costPerElement: costPerElement) { block in
      let i = block.lowerBound
      body(p + i, q + i, dst + i, block.count)
    }
    return out
  }

  /// The input gradient of `gelu(x)` (exact erf) for the output gradient `dy`.
  /// matches: ATen's `gelu_backward(dy, x, approximate="none")`: `dy · (Φ(x) + x·φ(x))`.
  public static func geluBackward(_ dy: Tensor, _ x: Tensor) throws -> Tensor {
    try binaryKernel(dy, x, "gelu backward") { ipa_gelu_backward($0, $1, $2, $3) }
  }

  /// The input gradient of `silu(x)` for the output gradient `dy`.
  /// matches: ATen's `silu_backward`: `dy · σ(x) · (1 + x·(1 − σ(x)))`.
  public static func siluBackward(_ dy: Tensor, _ x: Tensor) throws -> Tensor {
    try binaryKernel(dy, x, "silu backward") { ipa_silu_backward($0, $1, $2, $3) }
  }

  /// `a + b` (same shape).
  public static func add(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary(a, b, "add", IPA_ADD) }
  /// `a − b` (same shape).
  public static func sub(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary(a, b, "sub", IPA_SUB) }
  /// `a · b` (same shape).
  public static func mul(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary(a, b, "mul", IPA_MUL) }
  /// `x · s`.
  public static func scale(_ x: Tensor, _ s: Float) -> Tensor { kernel(x) { ipa_scale($0, s, $1, $2) } }
  /// `x / s` (a true division, as torch computes `tensor / scalar`).
  public static func divide(_ x: Tensor, _ s: Float) -> Tensor { kernel(x) { ipa_divide($0, s, $1, $2) } }
  /// `x · s + t` (one rounding for the product, as `torch.addcmul`-free code computes `x*s + t`).
  public static func affine(_ x: Tensor, scale s: Float, shift t: Float) -> Tensor {
    kernel(x) { ipa_affine($0, s, t, $1, $2) }
  }

  /// e^x (Sleef `expf_u10`, as `torch.exp`).
  public static func exp(_ x: Tensor) -> Tensor { kernel(x) { ipa_unary_map(IPA_EXP, $0, $1, $2) } }
  /// SiLU `x·σ(x)`. matches: `torch.nn.functional.silu`.
  public static func silu(_ x: Tensor) -> Tensor { kernel(x) { ipa_unary_map(IPA_SILU, $0, $1, $2) } }
  /// Exact GELU. matches: `torch.nn.functional.gelu(approximate="none")`.
  public static func gelu(_ x: Tensor) -> Tensor { kernel(x) { ipa_unary_map(IPA_GELU, $0, $1, $2) } }
  /// QuickGELU. matches: transformers `QuickGELUActivation`.
  public static func quickGelu(_ x: Tensor) -> Tensor { kernel(x) { ipa_unary_map(IPA_QUICK_GELU, $0, $1, $2) } }
  /// Clamps every element into `[lo, hi]`.
  public static func clamp(_ x: Tensor, _ lo: Float, _ hi: Float) -> Tensor {
    kernel(x) { ipa_clamp($0, lo, hi, $1, $2) }
  }

  /// GEGLU: splits the last dimension `[…, 2D]` into `hidden, gate` and returns `hidden·gelu(gate)`.
  /// matches: diffusers `GEGLU.forward` after its projection.
  public static func geglu(_ x: Tensor) throws -> Tensor {
    let twoD = x.shape[x.rank - 1]
    guard twoD % 2 == 0 else { throw TensorError.invalidArgument("GEGLU needs an even last dimension") }
    let d = twoD / 2
    let input = x.asFloat32()
    defer { withExtendedLifetime(input) {} }  // read through raw pointers below
    var shape = x.shape
    shape[shape.count - 1] = d
    let out = Tensor(uninitializedShape: shape)
    let rows = x.count / twoD
    let src = input.floatPointer
    let dst = out.mutableFloatPointer
    Parallel.forRanges(rows, costPerItem: twoD * 8) { range in
      for r in range {
        let h = src + r * twoD
        ipa_geglu(h, h + d, dst + r * d, d)
      }
    }
    return out
  }

  /// Adds a per-sample, per-channel vector to every position: `x [N, …, C] + v [N, C]`.
  /// (The time-embedding injection of a ResNet block.)
  public static func addChannelVector(_ x: Tensor, _ v: Tensor) throws -> Tensor {
    let n = x.shape[0]
    let c = x.shape[x.rank - 1]
    guard v.shape == [n, c] else {
      throw TensorError.shapeMismatch(operation: "add per-channel vector", expected: [n, c], actual: v.shape)
    }
    let input = x.asFloat32()
    defer { withExtendedLifetime(input) {} }  // read through raw pointers below
    let vec = v.asFloat32()
    defer { withExtendedLifetime(vec) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: x.shape)
    let positions = x.count / (n * c)
    let src = input.floatPointer
    let dst = out.mutableFloatPointer
    let vp = vec.floatPointer
    Parallel.forRanges(n * positions, costPerItem: c * 8) { range in
      for row in range {
        let b = row / positions
        let s = src + row * c
        let o = dst + row * c
        let add = vp + b * c
        var i = 0
        while i + 16 <= c {
          let y = UnsafeRawPointer(s + i).loadUnaligned(as: V.self)
            + UnsafeRawPointer(add + i).loadUnaligned(as: V.self)
          UnsafeMutableRawPointer(o + i).storeBytes(of: y, as: V.self)
          i += 16
        }
        while i < c {
          o[i] = s[i] + add[i]
          i += 1
        }
      }
    }
    return out
  }

  /// Concatenates along the last dimension (channels in NHWC): `[…, Ca] ++ […, Cb]`.
  public static func concatLast(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    guard a.rank == b.rank, a.shape.dropLast() == b.shape.dropLast() else {
      throw TensorError.shapeMismatch(operation: "concat channels", expected: a.shape, actual: b.shape)
    }
    let ca = a.shape[a.rank - 1]
    let cb = b.shape[b.rank - 1]
    var shape = a.shape
    shape[shape.count - 1] = ca + cb
    let x = a.asFloat32()
    defer { withExtendedLifetime(x) {} }  // read through raw pointers below
    let y = b.asFloat32()
    defer { withExtendedLifetime(y) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: shape)
    let rows = ca + cb == 0 ? 0 : out.count / (ca + cb)
    let dst = out.mutableFloatPointer
    Parallel.forRanges(rows, costPerItem: (ca + cb) * 8) { range in
      for r in range {
        (dst + r * (ca + cb)).update(from: x.floatPointer + r * ca, count: ca)
        (dst + r * (ca + cb) + ca).update(from: y.floatPointer + r * cb, count: cb)
      }
    }
    return out
  }

  /// Concatenates along the first dimension (batch or tokens of a `[1, L, C]` sequence use
  /// `concatRows` on the reshaped tensors).
  public static func concatRows(_ parts: [Tensor]) throws -> Tensor {
    guard let first = parts.first else { throw TensorError.invalidArgument("concat of no tensors") }
    for p in parts where p.shape.dropFirst() != first.shape.dropFirst() {
      throw TensorError.shapeMismatch(operation: "concat rows", expected: first.shape, actual: p.shape)
    }
    var shape = first.shape
    shape[0] = parts.reduce(0) { $0 + $1.shape[0] }
    let out = Tensor(uninitializedShape: shape)
    var dst = out.mutableFloatPointer
    for p in parts {
      let f = p.asFloat32()
      defer { withExtendedLifetime(f) {} }  // read through raw pointers below
      dst.update(from: f.floatPointer, count: f.count)
      dst += f.count
    }
    return out
  }

  /// The transpose of a matrix `[R, C]` → `[C, R]` (float32).
  /// matches: `m.t().contiguous()`.
  public static func transposedMatrix(_ m: Tensor) throws -> Tensor {
    guard m.rank == 2 else { throw TensorError.invalidArgument("transpose expects a matrix, got \(m.shape)") }
    let (r, c) = (m.shape[0], m.shape[1])
    let src = m.asFloat32()
    defer { withExtendedLifetime(src) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: [c, r])
    let (s, d) = (src.floatPointer, out.mutableFloatPointer)
    for i in 0..<r { for j in 0..<c { d[j * r + i] = s[i * c + j] } }
    return out
  }

  /// Nearest-neighbour ×2 upsampling of NHWC `[N, H, W, C]` → `[N, 2H, 2W, C]`.
  /// matches: `torch.nn.functional.interpolate(scale_factor=2.0, mode="nearest")`.
  public static func upsampleNearest2x(_ x: Tensor) throws -> Tensor {
    guard x.rank == 4 else { throw TensorError.invalidArgument("upsample expects NHWC, got \(x.shape)") }
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let input = x.asFloat32()
    defer { withExtendedLifetime(input) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: [n, 2 * h, 2 * w, c])
    let src = input.floatPointer
    let dst = out.mutableFloatPointer
    Parallel.forRanges(n * h, costPerItem: w * c * 16) { range in
      for row in range {
        let s = src + row * w * c
        let o0 = dst + row * 2 * (2 * w * c)
        for xw in 0..<w {
          (o0 + (2 * xw) * c).update(from: s + xw * c, count: c)
          (o0 + (2 * xw + 1) * c).update(from: s + xw * c, count: c)
        }
        (o0 + 2 * w * c).update(from: o0, count: 2 * w * c)
      }
    }
    return out
  }

  /// Repeats a one-channel NHWC tensor `[N, H, W, 1]` over `channels` channels.
  public static func broadcastChannels(_ x: Tensor, to channels: Int) throws -> Tensor {
    guard x.rank == 4, x.shape[3] == 1 else {
      throw TensorError.invalidArgument("broadcastChannels expects [N, H, W, 1], got \(x.shape)")
    }
    let input = x.asFloat32()
    defer { withExtendedLifetime(input) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: [x.shape[0], x.shape[1], x.shape[2], channels])
    let d = out.mutableFloatPointer
    let s = input.floatPointer
    for p in 0..<x.count { (d + p * channels).update(repeating: s[p], count: channels) }
    return out
  }

  /// Nearest-neighbour downsampling of NHWC by an integer factor: pixel `(factor·i, factor·j)`.
  /// matches: `torch.nn.functional.interpolate(size=(H/f, W/f), mode="nearest")`.
  public static func nearestDownsample(_ x: Tensor, factor: Int) throws -> Tensor {
    guard x.rank == 4, factor >= 1, x.shape[1] % factor == 0, x.shape[2] % factor == 0 else {
      throw TensorError.invalidArgument("cannot downsample \(x.shape) by \(factor)")
    }
    let (n, h, w, c) = (x.shape[0], x.shape[1] / factor, x.shape[2] / factor, x.shape[3])
    let input = x.asFloat32()
    defer { withExtendedLifetime(input) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: [n, h, w, c])
    let d = out.mutableFloatPointer
    let s = input.floatPointer
    for b in 0..<n {
      for i in 0..<h {
        for j in 0..<w {
          (d + ((b * h + i) * w + j) * c).update(
            from: s + ((b * x.shape[1] + i * factor) * x.shape[2] + j * factor) * c, count: c)
        }
      }
    }
    return out
  }

  /// Nearest-neighbour resize of NHWC to `height × width` with PyTorch's index rule
  /// (`src = min(⌊dst · in/out⌋, in − 1)` in float, exact ×2 as `dst >> 1`).
  /// matches: `torch.nn.functional.interpolate(size=(height, width), mode="nearest")`.
  public static func upsampleNearest(_ x: Tensor, height: Int, width: Int) throws -> Tensor {
    guard x.rank == 4, height > 0, width > 0 else {
      throw TensorError.invalidArgument("nearest resize expects NHWC and a positive size, got \(x.shape) → \(height)×\(width)")
    }
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    if height == 2 * h && width == 2 * w { return try upsampleNearest2x(x) }
    func index(_ o: Int, _ input: Int, _ output: Int) -> Int {
      if output == input { return o }
      if output == 2 * input { return o >> 1 }
      let scale = Float(input) / Float(output)
      return min(Int((Float(o) * scale).rounded(.down)), input - 1)
    }
    let rows = (0..<height).map { index($0, h, height) }
    let cols = (0..<width).map { index($0, w, width) }
    let input = x.asFloat32()
    defer { withExtendedLifetime(input) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: [n, height, width, c])
    let d = out.mutableFloatPointer
    let s = input.floatPointer
    for b in 0..<n {
      for i in 0..<height {
        for j in 0..<width {
          (d + ((b * height + i) * width + j) * c).update(from: s + ((b * h + rows[i]) * w + cols[j]) * c, count: c)
        }
      }
    }
    return out
  }

  /// NCHW → NHWC (for tensors exchanged with PyTorch-layout files).
  public static func nchwToNhwc(_ x: Tensor) throws -> Tensor {
    guard x.rank == 4 else { throw TensorError.invalidArgument("expected a 4-D tensor, got \(x.shape)") }
    return nchwToNhwc(x, n: x.shape[0], c: x.shape[1], h: x.shape[2], w: x.shape[3])
  }

  /// NHWC → NCHW.
  public static func nhwcToNchw(_ x: Tensor) throws -> Tensor {
    guard x.rank == 4 else { throw TensorError.invalidArgument("expected a 4-D tensor, got \(x.shape)") }
    return nhwcToNchw(x, n: x.shape[0], h: x.shape[1], w: x.shape[2], c: x.shape[3])
  }

  /// The `n·c·h·w` values of `x` read as NCHW, as a new NHWC tensor `[n, h, w, c]` (whatever
  /// shape `x` carries; its element count must match).
  public static func nchwToNhwc(_ x: Tensor, n: Int, c: Int, h: Int, w: Int) -> Tensor {
    precondition(x.count == n * c * h * w, "nchwToNhwc: \(x.count) values for [\(n), \(c), \(h), \(w)]")
    let input = x.asFloat32()
    defer { withExtendedLifetime(input) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: [n, h, w, c])
    let s = input.floatPointer
    let d = out.mutableFloatPointer
    Parallel.forRanges(n * h, costPerItem: w * c * 2) { range in
      for nh in range {
        let (b, y) = nh.quotientAndRemainder(dividingBy: h)
        for x in 0..<w {
          let dst = d + ((b * h + y) * w + x) * c
          let src = s + b * c * h * w + y * w + x
          for ch in 0..<c { dst[ch] = src[ch * h * w] }
        }
      }
    }
    return out
  }

  /// The `n·h·w·c` values of `x` read as NHWC, as a new NCHW tensor `[n, c, h, w]`.
  public static func nhwcToNchw(_ x: Tensor, n: Int, h: Int, w: Int, c: Int) -> Tensor {
    precondition(x.count == n * c * h * w, "nhwcToNchw: \(x.count) values for [\(n), \(h), \(w), \(c)]")
    let input = x.asFloat32()
    defer { withExtendedLifetime(input) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: [n, c, h, w])
    let s = input.floatPointer
    let d = out.mutableFloatPointer
    Parallel.forRanges(n * c, costPerItem: h * w * 2) { range in
      for nc in range {
        let (b, ch) = nc.quotientAndRemainder(dividingBy: c)
        let src = s + b * h * w * c + ch
        let dst = d + nc * h * w
        for p in 0..<(h * w) { dst[p] = src[p * c] }
      }
    }
    return out
  }

  /// Rows of `table` `[V, C]` picked by `ids` → `[ids.count, C]` (embedding lookup).
  public static func gatherRows(_ table: Tensor, _ ids: [Int]) throws -> Tensor {
    guard table.rank == 2 else { throw TensorError.invalidArgument("embedding table must be 2-D") }
    let (vocab, c) = (table.shape[0], table.shape[1])
    let t = table.asFloat32()
    defer { withExtendedLifetime(t) {} }  // read through raw pointers below
    let out = Tensor(uninitializedShape: [ids.count, c])
    let d = out.mutableFloatPointer
    for (i, id) in ids.enumerated() {
      guard id >= 0, id < vocab else {
        throw TensorError.invalidArgument("token id \(id) outside the embedding table of \(vocab) rows")
      }
      (d + i * c).update(from: t.floatPointer + id * c, count: c)
    }
    return out
  }
}
