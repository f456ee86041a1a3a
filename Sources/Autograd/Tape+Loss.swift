import TensorCore

extension Tape {
  /// The mean squared error, a scalar `[1]`: `mean((prediction − target)²)`.
  ///
  /// matches: `torch.nn.functional.mse_loss(prediction, target)` (reduction "mean"), the loss of
  /// IP-Adapter's `tutorial_train.py`. Backward: `d prediction = 2 (prediction − target) / N · dL`
  /// and its negative for the target.
  public func mseLoss(_ prediction: Variable, _ target: Variable) throws -> Variable {
    guard prediction.shape == target.shape, prediction.value.count > 0 else {
      throw AutogradError.shapeMismatch(operation: "mseLoss", expected: prediction.shape, actual: target.shape)
    }
    let n = prediction.value.count
    let p = prediction.value, t = target.value
    var acc = 0.0
    let pp = p.floatPointer, tp = t.floatPointer
    for i in 0..<n {
      let d = Double(pp[i]) - Double(tp[i])
      acc += d * d
    }
    let loss = try Tensor(shape: [1], floats: [Float(acc / Double(n))])
    return record(loss, inputs: [prediction, target]) { g, needs in
      let k = 2 * Double(g.floatPointer[0]) / Double(n)
      let d = Self.zipMap(p, t) { a, b in Float(k * (Double(a) - Double(b))) }
      return [needs[0] ? d : nil, needs[1] ? Ops.scale(d, -1) : nil]
    }
  }
}
