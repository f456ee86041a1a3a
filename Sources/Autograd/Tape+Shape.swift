import TensorCore

extension Tape {
  /// `[1, …]` repeated `count` times along the first axis.
  ///
  /// matches: `t.repeat(count, 1, …)`. Backward: the sum over the copies.
  public func repeatBatch(_ x: Variable, count: Int) throws -> Variable {
    guard x.shape.first == 1, count > 0 else {
      throw AutogradError.invalidArgument("repeatBatch: needs a leading axis of 1 and a positive count, got \(x.shape) × \(count)")
    }
    let n = x.value.count
    let out = Tensor(uninitializedShape: [count] + x.shape.dropFirst())
    for b in 0..<count { (out.mutableFloatPointer + b * n).update(from: x.value.floatPointer, count: n) }
    let shape = x.shape
    return record(out, inputs: [x]) { g, _ in [Reduce.sumRows(g, columns: n).reshaped(shape)] }
  }

  /// `[B, La, C]` and `[B, Lb, C]` joined along the sequence axis: `[B, La + Lb, C]`.
  ///
  /// matches: `torch.cat((a, b), dim=-2)`. Backward: each part's rows of the gradient.
  public func concatSequence(_ a: Variable, _ b: Variable) throws -> Variable {
    guard a.shape.count == 3, b.shape.count == 3, a.shape[0] == b.shape[0], a.shape[2] == b.shape[2] else {
      throw AutogradError.invalidArgument("concatSequence: \(a.shape) and \(b.shape) differ outside the sequence axis")
    }
    let (batch, la, lb, c) = (a.shape[0], a.shape[1], b.shape[1], a.shape[2])
    let out = Tensor(uninitializedShape: [batch, la + lb, c])
    let o = out.mutableFloatPointer
    for n in 0..<batch {
      (o + n * (la + lb) * c).update(from: a.value.floatPointer + n * la * c, count: la * c)
      (o + (n * (la + lb) + la) * c).update(from: b.value.floatPointer + n * lb * c, count: lb * c)
    }
    return record(out, inputs: [a, b]) { g, needs in
      let gp = g.floatPointer
      var da: Tensor? = nil, db: Tensor? = nil
      if needs[0] {
        let t = Tensor(uninitializedShape: [batch, la, c])
        for n in 0..<batch { (t.mutableFloatPointer + n * la * c).update(from: gp + n * (la + lb) * c, count: la * c) }
        da = t
      }
      if needs[1] {
        let t = Tensor(uninitializedShape: [batch, lb, c])
        for n in 0..<batch {
          (t.mutableFloatPointer + n * lb * c).update(from: gp + (n * (la + lb) + la) * c, count: lb * c)
        }
        db = t
      }
      return [da, db]
    }
  }

  /// `a` and `b` joined along the last axis (channels of NHWC activations): shapes equal but for
  /// the last axis.
  ///
  /// matches: `torch.cat((a, b), dim=1)` on NCHW (a UNet up block joining a skip tensor).
  /// Backward: each part's columns of the gradient.
  public func concatLast(_ a: Variable, _ b: Variable) throws -> Variable {
    guard a.shape.count == b.shape.count, a.shape.count >= 1, a.shape.dropLast() == b.shape.dropLast() else {
      throw AutogradError.invalidArgument("concatLast: \(a.shape) and \(b.shape) differ outside the last axis")
    }
    let (ca, cb) = (a.shape.last!, b.shape.last!)
    let rows = a.value.count / max(ca, 1)
    let out = try Ops.concatLast(a.value, b.value)
    return record(out, inputs: [a, b]) { g, needs in
      let gp = g.floatPointer
      func columns(_ start: Int, _ width: Int, _ shape: [Int]) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        let d = t.mutableFloatPointer
        for r in 0..<rows { (d + r * width).update(from: gp + r * (ca + cb) + start, count: width) }
        return t
      }
      return [needs[0] ? columns(0, ca, a.shape) : nil, needs[1] ? columns(ca, cb, b.shape) : nil]
    }
  }

  /// The `parts` equal slices of the first axis (the stacked `[W_q; W_k; W_v]` of an
  /// `nn.MultiheadAttention`'s `in_proj_weight`, or its bias).
  ///
  /// matches: `t.chunk(parts, dim=0)`. Backward: each slice's gradient in its rows.
  public func splitRows(_ x: Variable, parts: Int) throws -> [Variable] {
    guard let rows = x.shape.first, parts > 0, rows % parts == 0 else {
      throw AutogradError.invalidArgument("splitRows: \(x.shape) does not split into \(parts) equal parts")
    }
    let per = x.value.count / parts
    let shape = [rows / parts] + x.shape.dropFirst()
    return (0..<parts).map { i in
      var part = Tensor(uninitializedShape: shape)
      part.withUnsafeMutableFloats { $0.baseAddress!.update(from: x.value.floatPointer + i * per, count: per) }
      return record(part, inputs: [x]) { g, _ in
        var full = Tensor.zeros(x.shape)
        full.withUnsafeMutableFloats { ($0.baseAddress! + i * per).update(from: g.floatPointer, count: per) }
        return [full]
      }
    }
  }

  /// The transpose of a matrix `[R, C]` → `[C, R]` (a weight stored `[in, out]`, used as `x · W`).
  ///
  /// matches: `w.t()`. Backward: the transpose of the gradient.
  public func transpose(_ x: Variable) throws -> Variable {
    guard x.shape.count == 2 else { throw AutogradError.invalidArgument("transpose: needs a matrix, got \(x.shape)") }
    return record(try Ops.transposedMatrix(x.value), inputs: [x]) { g, _ in [try Ops.transposedMatrix(g)] }
  }

  /// The `parts` equal slices of the last axis.
  ///
  /// matches: `t.chunk(parts, dim=-1)`. Backward: each slice's gradient in its columns (zeros
  /// elsewhere; the slices' contributions add up).
  public func chunkLast(_ x: Variable, parts: Int) throws -> [Variable] {
    guard let width = x.shape.last, parts > 0, width % parts == 0 else {
      throw AutogradError.invalidArgument("chunkLast: \(x.shape) does not split into \(parts) equal parts")
    }
    let part = width / parts
    let rows = x.value.count / max(width, 1)
    let shape = Array(x.shape.dropLast()) + [part]
    return (0..<parts).map { index in
      let out = Tensor(uninitializedShape: shape)
      for r in 0..<rows {
        (out.mutableFloatPointer + r * part).update(from: x.value.floatPointer + r * width + index * part, count: part)
      }
      let full = x.shape
      return record(out, inputs: [x]) { g, _ in
        let dx = Tensor.zeros(full)
        for r in 0..<rows {
          (dx.mutableFloatPointer + r * width + index * part).update(from: g.floatPointer + r * part, count: part)
        }
        return [dx]
      }
    }
  }
}

extension Tape {
  /// The same values with another shape of the same element count.
  ///
  /// matches: `t.reshape(shape)`. Backward: the gradient reshaped back.
  public func reshape(_ x: Variable, _ shape: [Int]) throws -> Variable {
    guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) == x.value.count else {
      throw AutogradError.shapeMismatch(operation: "reshape of \(x.shape)", expected: shape, actual: x.shape)
    }
    let original = x.shape
    return record(x.value.reshaped(shape), inputs: [x]) { g, _ in [g.reshaped(original)] }
  }
}

extension Tape {
  /// `x` `[B, …, C]` plus one vector per sample `v` `[B, C]`, broadcast over the positions.
  ///
  /// matches: `x + v[:, None, None, :]` (a ResNet block's time embedding on NHWC activations).
  /// Backward: `dv` sums the gradient over each sample's positions.
  public func addPerSample(_ x: Variable, _ v: Variable) throws -> Variable {
    guard x.shape.count >= 2, v.shape == [x.shape[0], x.shape[x.shape.count - 1]] else {
      throw AutogradError.shapeMismatch(operation: "addPerSample", expected: [x.shape.first ?? 0, x.shape.last ?? 0], actual: v.shape)
    }
    let (batch, c) = (x.shape[0], v.shape[1])
    let positions = x.value.count / max(batch * c, 1)
    let out = Tensor(uninitializedShape: x.shape)
    let s = x.value.floatPointer, vp = v.value.floatPointer, d = out.mutableFloatPointer
    for n in 0..<batch { for p in 0..<positions {
      let base = (n * positions + p) * c
      for ch in 0..<c { d[base + ch] = s[base + ch] + vp[n * c + ch] }
    } }
    return record(out, inputs: [x, v]) { g, needs in
      var dv: Tensor? = nil
      if needs[1] {
        var acc = [Double](repeating: 0, count: batch * c)
        let gp = g.floatPointer
        for n in 0..<batch { for p in 0..<positions {
          let base = (n * positions + p) * c
          for ch in 0..<c { acc[n * c + ch] += Double(gp[base + ch]) }
        } }
        dv = try Tensor(shape: [batch, c], floats: acc.map { Float($0) })
      }
      return [needs[0] ? g : nil, dv]
    }
  }
}
