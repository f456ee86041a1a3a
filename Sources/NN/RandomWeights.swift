import TensorCore

extension Module {
  /// Gives every parameter deterministic pseudo-random values (no checkpoint needed), stored in
  /// `dtype` as a checkpoint would store them, then prepares the kernels.
  ///
  /// Matrices and kernels are uniform in ±√(3/fan_in) (unit variance per output), normalisation
  /// weights are 1 and every other vector is small, so activations stay in range through deep
  /// real-size models. Used by the benchmark to build real-size models without downloads.
  /// - Parameter prepare: kernel options, or nil to leave the kernels unprepared (e.g. before
  ///   saving the weights).
  public func fillWithRandomWeights(seed: UInt64, dtype: DType = .float16, prepare: PrepareOptions? = PrepareOptions()) throws {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    for (name, p) in namedParameters() {
      let n = p.shape.reduce(1, *)
      let isNormWeight = p.shape.count == 1 && name.hasSuffix("weight") && (name.contains("norm") || name.contains("ln"))
      let fanIn = p.shape.count >= 2 ? p.shape.dropFirst().reduce(1, *) : 1
      let bound: Float = p.shape.count >= 2 ? (3 / Float(fanIn)).squareRoot() : 0.02
      var values = Tensor(uninitializedShape: p.shape)
      values.withUnsafeMutableFloats { v in
        if isNormWeight {
          v.update(repeating: 1)
          return
        }
        for i in 0..<n {
          state ^= state << 13
          state ^= state >> 7
          state ^= state << 17
          v[i] = (Float(state >> 40) / Float(1 << 24) * 2 - 1) * bound
        }
      }
      try p.assign(dtype == .float32 ? values : values.converted(to: dtype))
    }
    if let prepare { try prepareTree(prepare) }
  }
}
