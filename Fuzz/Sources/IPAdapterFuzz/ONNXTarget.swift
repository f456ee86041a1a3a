import ONNX
import TensorCore

/// `onnx`: ONNX model files. The whole input is decoded and prepared as a model
/// (`ONNXSession(bytes:)`); when it loads, it runs once on inputs of its declared shapes (symbolic
/// dimensions set to 4, at most 4096 elements each) under a 2²⁰-element limit per value. Errors are
/// the expected outcome; traps, leaks, hangs and huge allocations are failures.
enum ONNXTarget {
  static func run(_ input: [UInt8]) throws {
    let session = try input.withUnsafeBytes { bytes in
      try ONNXSession(bytes: bytes, file: "<fuzz>", options: ONNXSessionOptions(maxValueElements: 1 << 20))
    }
    var feeds: [String: Tensor] = [:]
    for (name, declared) in session.inputs {
      let shape = (declared ?? [1]).map { d -> Int in
        guard let d, d > 0 else { return 4 }
        return Int(min(d, 64))
      }
      guard shape.count <= 6, shape.reduce(1, *) <= 4096 else { return }
      feeds[name] = Tensor.full(shape, 0.5)
    }
    let outputs = try session.run(feeds)
    for t in outputs { TensorReading.touch(t) }
  }
}
