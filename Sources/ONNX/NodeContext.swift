import TensorCore

/// An operator implementation prepared for one node.
protocol ONNXKernel {
  /// Runs the node on its inputs (nil for omitted optional inputs), giving one value per output.
  func run(_ inputs: [ONNXValue?]) throws -> [ONNXValue]
  /// Whether the node may be evaluated at load time when all its inputs are constants.
  var foldable: Bool { get }
  /// Input positions whose constants the kernel took in when it was made (packed weights, folded
  /// parameters) and does not read when it runs: the session then neither keeps nor passes them.
  var bakedInputs: Set<Int> { get }
}

extension ONNXKernel {
  var foldable: Bool { true }
  var bakedInputs: Set<Int> { [] }
}

/// Checks a result's element count against the session's limit before it is allocated.
func checkSize(_ shape: [Int], limit: Int) throws {
  var total = 1
  for d in shape {
    guard d >= 0 else { throw OpFailure("negative dimension in \(shape)") }
    let (p, o) = total.multipliedReportingOverflow(by: d)
    guard !o, p <= limit else { throw OpFailure("a result of shape \(shape) is above the limit of \(limit) elements") }
    total = p
  }
}

/// A failure inside an operator, wrapped by `NodeContext.wrap` into an `ONNXError` naming the node.
struct OpFailure: Error {
  let reason: String
  init(_ reason: String) { self.reason = reason }
}

/// The node being prepared or run: attribute access with checks, and error wrapping.
struct NodeContext {
  let file: String
  let node: ONNXNodeProto
  let opset: Int64
  /// Largest element count of one value this session may create (`ONNXSessionOptions`).
  var maxElements: Int = ONNXSessionOptions().maxValueElements
  /// For a `Conv` that absorbed the nodes after it (`ConvFusionPass`).
  var convFusion: ConvFusion?

  var op: String { node.opType }

  func invalid(_ reason: String) -> ONNXError {
    .invalidNode(file: file, node: node.name, op: node.opType, reason: reason)
  }

  func wrap<T>(_ body: () throws -> T) throws -> T {
    do {
      return try body()
    } catch let e as OpFailure {
      throw ONNXError.execution(file: file, node: node.name, op: node.opType, reason: e.reason)
    } catch let e as TensorError {
      throw ONNXError.execution(file: file, node: node.name, op: node.opType, reason: e.description)
    }
  }

  // MARK: attributes

  func int(_ name: String) throws -> Int64? {
    switch node.attributes[name] {
    case nil: return nil
    case .int(let v): return v
    case let other?: throw invalid("attribute '\(name)' should be an int, is \(other.kindName)")
    }
  }

  func int(_ name: String, default d: Int64) throws -> Int64 { try int(name) ?? d }

  func float(_ name: String, default d: Float) throws -> Float {
    switch node.attributes[name] {
    case nil: return d
    case .float(let v): return v
    case .int(let v): return Float(v)
    case let other?: throw invalid("attribute '\(name)' should be a float, is \(other.kindName)")
    }
  }

  func ints(_ name: String) throws -> [Int64]? {
    switch node.attributes[name] {
    case nil: return nil
    case .ints(let v): return v
    case .int(let v): return [v]
    case let other?: throw invalid("attribute '\(name)' should be ints, is \(other.kindName)")
    }
  }

  func floats(_ name: String) throws -> [Float]? {
    switch node.attributes[name] {
    case nil: return nil
    case .floats(let v): return v
    case .float(let v): return [v]
    case let other?: throw invalid("attribute '\(name)' should be floats, is \(other.kindName)")
    }
  }

  func string(_ name: String, default d: String) throws -> String {
    switch node.attributes[name] {
    case nil: return d
    case .string(let v): return v
    case let other?: throw invalid("attribute '\(name)' should be a string, is \(other.kindName)")
    }
  }

  /// Refuses attributes the implementation does not know (so an unhandled option is never ignored).
  func allowOnly(_ names: Set<String>) throws {
    for key in node.attributes.keys where !names.contains(key) {
      throw invalid("attribute '\(key)' is not supported by this implementation")
    }
  }

  /// Checks the number of inputs (counting omitted optional ones as present positions).
  func inputs(_ range: ClosedRange<Int>) throws {
    guard range.contains(node.inputs.count) else {
      throw invalid("expects \(range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound)–\(range.upperBound)") inputs, has \(node.inputs.count)")
    }
    guard !node.inputs.isEmpty || range.lowerBound == 0 else { return }
    if range.lowerBound > 0, node.inputs[0].isEmpty { throw invalid("its first input is empty") }
  }
}

// MARK: - argument access inside kernels

extension Array where Element == ONNXValue? {
  func float(_ i: Int, _ what: String) throws -> FloatValue {
    guard i < count, let v = self[i] else { throw OpFailure("input \(i) (\(what)) is missing") }
    guard case .float(let f) = v else { throw OpFailure("input \(i) (\(what)) should be float, is \(v.typeName)") }
    return f
  }

  func int(_ i: Int, _ what: String) throws -> IntValue {
    guard i < count, let v = self[i] else { throw OpFailure("input \(i) (\(what)) is missing") }
    switch v {
    case .int(let x): return x
    case .float: throw OpFailure("input \(i) (\(what)) should be an integer tensor, is float32")
    }
  }

  func optional(_ i: Int) -> ONNXValue? { i < count ? self[i] : nil }
}
