import TensorCore

extension Tape {
  /// `x · Wᵀ + b` over the last axis: `x` `[…, in]`, `weight` `[out, in]`, `bias` `[out]`.
  ///
  /// matches: `torch.nn.functional.linear`. Backward: `dx = dy · W`, `dW = dyᵀ · x`,
  /// `db = Σ dy` (BLAS products; each only when needed).
  public func linear(_ x: Variable, weight: Variable, bias: Variable? = nil) throws -> Variable {
    let inFeatures = x.shape.last ?? 0
    guard weight.shape.count == 2, weight.shape[1] == inFeatures, inFeatures > 0 else {
      throw AutogradError.shapeMismatch(operation: "linear weight", expected: [weight.shape.first ?? 0, inFeatures], actual: weight.shape)
    }
    let outFeatures = weight.shape[0]
    if let bias, bias.shape != [outFeatures] {
      throw AutogradError.shapeMismatch(operation: "linear bias", expected: [outFeatures], actual: bias.shape)
    }
    let rows = x.value.count / inFeatures
    let xv = x.value, wv = weight.value
    let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [outFeatures])
    let o = out.mutableFloatPointer
    if let b = bias?.value.floatPointer {
      for r in 0..<rows { (o + r * outFeatures).update(from: b, count: outFeatures) }
    }
    MatrixMultiply.gemm(
      m: rows, n: outFeatures, k: inFeatures, a: xv.floatPointer, b: wv.floatPointer, transposeB: true,
      beta: bias == nil ? 0 : 1, c: o)
    let inputs = [x, weight] + (bias.map { [$0] } ?? [])
    return record(out, inputs: inputs) { g, needs in
      var grads: [Tensor?] = [nil, nil, nil]
      if needs[0] {
        let dx = Tensor(uninitializedShape: xv.shape)
        MatrixMultiply.gemm(
          m: rows, n: inFeatures, k: outFeatures, a: g.floatPointer, b: wv.floatPointer, c: dx.mutableFloatPointer)
        grads[0] = dx
      }
      if needs[1] {
        let dw = Tensor(uninitializedShape: wv.shape)
        MatrixMultiply.gemm(
          m: outFeatures, n: inFeatures, k: rows, a: g.floatPointer, transposeA: true, b: xv.floatPointer,
          c: dw.mutableFloatPointer)
        grads[1] = dw
      }
      if needs.count > 2, needs[2] { grads[2] = Reduce.sumRows(g, columns: outFeatures) }
      return Array(grads.prefix(needs.count))
    }
  }

  /// A linear layer whose weight does not learn: the forward value comes from `forward` (the
  /// engine's inference kernel, in the model's precision); the backward pass computes only
  /// `dx = dy · W` in float32, asking for the `[out, in]` weight then (`weight`), so that no
  /// float32 copy of a frozen model's weights lives through the run.
  ///
  /// matches: `F.linear` with a frozen weight and bias.
  public func frozenLinear(
    _ x: Variable, inFeatures: Int, outFeatures: Int, weight: @escaping () -> Tensor, forward: (Tensor) throws -> Tensor
  ) throws -> Variable {
    guard x.shape.last == inFeatures, inFeatures > 0, outFeatures > 0 else {
      throw AutogradError.shapeMismatch(operation: "frozenLinear input", expected: [inFeatures], actual: x.shape)
    }
    let y = try forward(x.value).asFloat32()
    guard y.shape == Array(x.shape.dropLast()) + [outFeatures] else {
      throw AutogradError.shapeMismatch(operation: "frozenLinear forward", expected: Array(x.shape.dropLast()) + [outFeatures], actual: y.shape)
    }
    let rows = x.value.count / inFeatures
    let shape = x.shape
    return record(y, inputs: [x]) { g, _ in
      let w = weight()
      guard w.shape == [outFeatures, inFeatures] else {
        throw AutogradError.shapeMismatch(operation: "frozenLinear weight", expected: [outFeatures, inFeatures], actual: w.shape)
      }
      let dx = Tensor(uninitializedShape: shape)
      // `w` may be a fresh (pooled) conversion: keep it alive until the product has read it.
      withExtendedLifetime(w) {
        MatrixMultiply.gemm(m: rows, n: inFeatures, k: outFeatures, a: g.floatPointer, b: w.floatPointer, c: dx.mutableFloatPointer)
      }
      return [dx]
    }
  }

  /// `a + b` (same shapes).
  public func add(_ a: Variable, _ b: Variable) throws -> Variable {
    guard a.shape == b.shape else { throw AutogradError.shapeMismatch(operation: "add", expected: a.shape, actual: b.shape) }
    return record(try Ops.add(a.value, b.value), inputs: [a, b]) { g, _ in [g, g] }
  }

  /// `s · a`.
  public func scale(_ a: Variable, _ s: Float) -> Variable {
    record(Ops.scale(a.value, s), inputs: [a]) { g, _ in [Ops.scale(g, s)] }
  }
}

/// Reductions the backward kernels share.
enum Reduce {
  /// Σ over rows of a `[rows, columns]` view: `[columns]` (double accumulation).
  static func sumRows(_ t: Tensor, columns: Int) -> Tensor {
    let rows = columns == 0 ? 0 : t.count / columns
    var acc = [Double](repeating: 0, count: columns)
    let p = t.floatPointer
    for r in 0..<rows {
      let row = p + r * columns
      for c in 0..<columns { acc[c] += Double(row[c]) }
    }
    let out = Tensor(uninitializedShape: [columns])
    let o = out.mutableFloatPointer
    for c in 0..<columns { o[c] = Float(acc[c]) }
    return out
  }
}
