/// Errors of the ONNX loader and executor. Every case names the file, and where it applies the
/// node (name and operator) and what is wrong, in words a user can act on.
public enum ONNXError: Error, CustomStringConvertible, Equatable {
  /// The file could not be read at all.
  case unreadable(file: String, reason: String)
  /// The bytes are not a well-formed ONNX model (truncated, not protobuf, over a limit).
  case malformed(file: String, reason: String)
  /// An initializer keeps its data in another file; this loader reads self-contained models only.
  case externalData(file: String, tensor: String, location: String)
  /// The graph is inconsistent (undefined inputs, duplicate outputs, a bad initializer).
  case invalidGraph(file: String, reason: String)
  /// An operator (or operator-set version or domain) outside the supported set.
  case unsupportedOperator(file: String, node: String, op: String, reason: String)
  /// A node's attribute or input that the operator's implementation here does not support, or
  /// that is invalid for the operator.
  case invalidNode(file: String, node: String, op: String, reason: String)
  /// A graph input that is missing, unknown, or of the wrong shape.
  case invalidInput(file: String, input: String, reason: String)
  /// A node failed while running (shapes that do not fit the operator).
  case execution(file: String, node: String, op: String, reason: String)

  public var description: String {
    switch self {
    case .unreadable(let file, let reason): "\(file): cannot read the ONNX model: \(reason)"
    case .malformed(let file, let reason): "\(file): not a valid ONNX model: \(reason)"
    case .externalData(let file, let tensor, let location):
      "\(file): initializer '\(tensor)' keeps its data in an external file ('\(location)'); only self-contained .onnx files are supported (re-save the model with onnx.save(model, path, save_as_external_data=False))"
    case .invalidGraph(let file, let reason): "\(file): invalid ONNX graph: \(reason)"
    case .unsupportedOperator(let file, let node, let op, let reason):
      "\(file): node '\(node)' uses operator \(op), which this engine does not support: \(reason)"
    case .invalidNode(let file, let node, let op, let reason): "\(file): node '\(node)' (\(op)): \(reason)"
    case .invalidInput(let file, let input, let reason): "\(file): input '\(input)': \(reason)"
    case .execution(let file, let node, let op, let reason): "\(file): node '\(node)' (\(op)) failed: \(reason)"
    }
  }
}
