/// The operators this executor implements, and the factory that prepares a node.
///
/// Each implementation checks every attribute it is given: an attribute it does not handle, or a
/// value outside what it implements, is an `ONNXError.invalidNode` at load time. Operators not in
/// this table are `ONNXError.unsupportedOperator`.
public enum ONNXOperators {
  /// Names of the supported operators (default domain).
  public static let supported: [String] = [
    "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Clip", "Concat", "Constant",
    "ConstantOfShape", "Conv", "Div", "Dropout", "Exp", "Flatten", "Floor", "Gather", "Gemm",
    "GlobalAveragePool", "GlobalMaxPool", "HardSigmoid", "Identity", "LeakyRelu", "MatMul", "MaxPool",
    "Mul", "Neg", "Pow", "PRelu", "Reciprocal", "Relu", "Reshape", "Resize", "Shape", "Sigmoid",
    "Slice", "Softmax", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze", "Upsample",
  ]

  static func make(_ c: NodeContext, constants: [ONNXValue?], bytes: UnsafeRawBufferPointer) throws -> any ONNXKernel {
    switch c.op {
    case "Relu", "Sigmoid", "Exp", "Tanh", "Sqrt", "Neg", "Abs", "Floor", "Ceil", "Reciprocal", "LeakyRelu", "HardSigmoid":
      return try UnaryKernel.make(c)
    case "Clip": return try ClipKernel.make(c)
    case "Identity", "Dropout": return try IdentityKernel.make(c)
    case "Add", "Sub", "Mul", "Div", "Pow": return try BinaryKernel.make(c)
    case "Softmax": return try SoftmaxKernel.make(c)
    case "Shape": return try ShapeKernel.make(c)
    case "Reshape": return try ReshapeKernel.make(c)
    case "Flatten": return try FlattenKernel.make(c)
    case "Squeeze", "Unsqueeze": return try SqueezeKernel.make(c)
    case "Transpose": return try TransposeKernel.make(c)
    case "Concat": return try ConcatKernel.make(c)
    case "Gather": return try GatherKernel.make(c)
    case "Slice": return try SliceKernel.make(c)
    case "Cast": return try CastKernel.make(c)
    case "Constant": return try ConstantKernel.make(c, bytes: bytes)
    case "ConstantOfShape": return try ConstantOfShapeKernel.make(c, bytes: bytes)
    case "Conv": return try ConvKernel.make(c, constants: constants)
    case "BatchNormalization": return try BatchNormKernel.make(c, constants: constants)
    case "PRelu": return try PReluKernel.make(c, constants: constants)
    case "Gemm": return try GemmKernel.make(c, constants: constants)
    case "MatMul": return try MatMulKernel.make(c)
    case "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool": return try PoolKernel.make(c)
    case "Resize", "Upsample": return try ResizeKernel.make(c)
    default:
      throw ONNXError.unsupportedOperator(
        file: c.file, node: c.node.name, op: c.op,
        reason: "supported operators: \(supported.joined(separator: ", "))")
    }
  }
}
