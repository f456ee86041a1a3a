import Foundation
import TensorCore
import Weights

/// A loaded ONNX model, ready to run on the CPU with TensorCore's kernels.
///
/// Loading decodes the protobuf (`ONNXProtoDecoder`, bounds-checked), converts the initializers,
/// checks that every node's operator is supported (`ONNXOperators`) and prepares it: convolution
/// weights are handed to oneDNN, constant sub-graphs are evaluated once. An operator outside the
/// supported set, an attribute the implementation does not cover, or external tensor data is an
/// `ONNXError` at load time, naming the node — never a wrong result at run time.
///
/// Rank-4 activations run in NHWC (oneDNN's fast layout); results come back in ONNX's logical
/// layout. Values are freed as soon as their last consumer has run, so memory stays bounded by
/// the widest cut of the graph.
///
/// matches: onnxruntime's CPU execution provider (fp32) for the operators in `ONNXOperators`
/// (opsets 9–18 of the default domain). Limitations: float32 computation only (float16
/// initializers are widened), no sub-graphs (If/Loop/Scan), no sparse or external initializers.
/// `@unchecked Sendable`: immutable after init; `run` keeps its state on the stack (kernels cache
/// oneDNN primitives behind their own locks).
public final class ONNXSession: @unchecked Sendable {
  /// File the model came from (in messages).
  public let file: String
  public let opset: Int64
  public let producer: String
  /// Graph inputs that are not initializers, with their declared shapes (nil = symbolic).
  public let inputs: [(name: String, shape: [Int64?]?)]
  public let outputNames: [String]
  /// Operator types used by the graph, sorted (for diagnostics and routing).
  public let operatorTypes: [String]

  struct PreparedNode {
    let node: ONNXNodeProto
    let kernel: any ONNXKernel
    let inputSlots: [Int?]
    let outputSlots: [Int]
    /// Slots whose last use is this node (released after it runs).
    var release: [Int]
  }

  private let nodes: [PreparedNode]
  private let constants: [Int: ONNXValue]
  private let inputSlots: [String: Int]
  private let outputSlots: [Int]
  private let slotCount: Int
  private let maxElements: Int

  /// Supported opset range of the default domain.
  public static let supportedOpsets: ClosedRange<Int64> = 7...18

  /// Largest model file accepted (bytes).
  public static let maxFileSize = 4 << 30

  public convenience init(contentsOf path: String, options: ONNXSessionOptions = ONNXSessionOptions()) throws {
    let mapped: MemoryMappedFile
    do {
      mapped = try MemoryMappedFile(path: path)
    } catch {
      throw ONNXError.unreadable(file: path, reason: "\(error)")
    }
    guard mapped.byteCount <= Self.maxFileSize else {
      throw ONNXError.malformed(file: path, reason: "file of \(mapped.byteCount) bytes is above the \(Self.maxFileSize >> 30) GiB limit")
    }
    try self.init(bytes: mapped.bytes, file: path, options: options)
  }

  /// Loads a model from bytes in memory (`file` names it in messages).
  public init(bytes: UnsafeRawBufferPointer, file: String, options: ONNXSessionOptions = ONNXSessionOptions()) throws {
    self.file = file
    self.maxElements = options.maxValueElements
    let model: ONNXModelProto
    do {
      model = try ONNXProtoDecoder.model(bytes, limits: .default)
    } catch {
      throw ONNXError.malformed(file: file, reason: error.description)
    }
    guard let opset = model.opsetImports[""] ?? model.opsetImports["ai.onnx"] else {
      throw ONNXError.malformed(file: file, reason: "no opset import for the default ONNX domain")
    }
    guard Self.supportedOpsets.contains(opset) else {
      throw ONNXError.unsupportedOperator(
        file: file, node: "(model)", op: "opset \(opset)",
        reason: "operator-set versions \(Self.supportedOpsets.lowerBound)–\(Self.supportedOpsets.upperBound) are supported; convert the model with onnx.version_converter")
    }
    self.opset = opset
    self.producer = "\(model.producerName) \(model.producerVersion)".trimmingCharacters(in: .whitespaces)
    let graph = model.graph
    guard !graph.hasSparseInitializers else {
      throw ONNXError.invalidGraph(file: file, reason: "sparse initializers are not supported")
    }

    var slots: [String: Int] = [:]
    func slot(_ name: String) -> Int {
      if let s = slots[name] { return s }
      let s = slots.count
      slots[name] = s
      return s
    }

    // Initializers.
    var constants: [Int: ONNXValue] = [:]
    for t in graph.initializers {
      guard !t.name.isEmpty else { throw ONNXError.invalidGraph(file: file, reason: "an initializer has no name") }
      let value = try TensorDecoding.value(t, bytes: bytes, file: file)
      constants[slot(t.name)] = value
    }
    // Graph inputs (those not shadowed by an initializer).
    var inputs: [(String, [Int64?]?)] = []
    var inputSlots: [String: Int] = [:]
    for v in graph.inputs where slots[v.name] == nil || constants[slots[v.name]!] == nil {
      guard v.elementType == ONNXDataType.float.rawValue || v.elementType == 0 else {
        throw ONNXError.invalidInput(
          file: file, input: v.name,
          reason: "element type \(ONNXDataType(rawValue: v.elementType)?.description ?? "\(v.elementType)") is not supported (float32 inputs only)")
      }
      inputs.append((v.name, v.shape))
      inputSlots[v.name] = slot(v.name)
    }
    self.inputs = inputs
    self.inputSlots = inputSlots

    // Nodes, in file order (ONNX requires a topological order).
    var defined = Set(constants.keys).union(inputSlots.values)
    var prepared: [PreparedNode] = []
    var opTypes = Set<String>()
    let (graphNodes, fusions) =
      options.fuseConvolutions
      ? ConvFusionPass.apply(
        graph.nodes, graphOutputs: Set(graph.outputs.map(\.name)),
        available: Set(graph.initializers.map(\.name)).union(inputSlots.keys))
      : (graph.nodes, [:])
    for (index, node) in graphNodes.enumerated() {
      let name = node.name.isEmpty ? "#\(index) \(node.opType)" : node.name
      var named = node
      named.name = name
      opTypes.insert(node.opType)
      guard node.domain.isEmpty || node.domain == "ai.onnx" else {
        throw ONNXError.unsupportedOperator(
          file: file, node: name, op: "\(node.domain).\(node.opType)", reason: "operators of domain '\(node.domain)' are not supported")
      }
      var inSlots: [Int?] = []
      for input in node.inputs {
        if input.isEmpty { inSlots.append(nil); continue }
        guard let s = slots[input], defined.contains(s) else {
          throw ONNXError.invalidGraph(
            file: file, reason: "node '\(name)' (\(node.opType)) reads '\(input)', which no earlier node, input or initializer defines")
        }
        inSlots.append(s)
      }
      var outSlots: [Int] = []
      for output in node.outputs {
        if output.isEmpty { outSlots.append(-1); continue }
        if let s = slots[output], defined.contains(s) {
          throw ONNXError.invalidGraph(file: file, reason: "node '\(name)' redefines '\(output)'")
        }
        let s = slot(output)
        defined.insert(s)
        outSlots.append(s)
      }
      var context = NodeContext(file: file, node: named, opset: opset, maxElements: options.maxValueElements)
      context.convFusion = fusions[index]
      let known = inSlots.map { $0.flatMap { constants[$0] } }
      let kernel = try ONNXOperators.make(context, constants: known, bytes: bytes)
      // Fold nodes whose inputs are all constants (shape arithmetic, Cast of fp16 weights, …).
      if kernel.foldable, inSlots.allSatisfy({ $0 == nil || constants[$0!] != nil }) {
        let outputs = try context.wrap { try kernel.run(known) }
        for (s, v) in zip(outSlots, outputs) where s >= 0 { constants[s] = v }
        continue
      }
      // Constants the kernel took in are not passed to it (nor kept, unless another node reads them).
      let runSlots = inSlots.enumerated().map { i, s in
        kernel.bakedInputs.contains(i) && s.map { constants[$0] != nil } == true ? nil : s
      }
      prepared.append(PreparedNode(node: named, kernel: kernel, inputSlots: runSlots, outputSlots: outSlots, release: []))
    }
    var outputSlots: [Int] = []
    for v in graph.outputs {
      guard let s = slots[v.name], defined.contains(s) else {
        throw ONNXError.invalidGraph(file: file, reason: "graph output '\(v.name)' is not produced by any node")
      }
      outputSlots.append(s)
    }
    guard !outputSlots.isEmpty else { throw ONNXError.invalidGraph(file: file, reason: "the graph has no outputs") }
    // Liveness: release every non-constant value after its last reader.
    var lastUse: [Int: Int] = [:]
    for (i, n) in prepared.enumerated() {
      for s in n.inputSlots.compactMap({ $0 }) where constants[s] == nil { lastUse[s] = i }
      for s in n.outputSlots where s >= 0 && lastUse[s] == nil { lastUse[s] = i }
    }
    for s in outputSlots { lastUse[s] = nil }
    for (s, i) in lastUse { prepared[i].release.append(s) }
    self.nodes = prepared
    // Only the constants something still reads at run time (the packed weights' originals go).
    let read = Set(prepared.flatMap { $0.inputSlots.compactMap { $0 } }).union(outputSlots)
    self.constants = constants.filter { read.contains($0.key) }
    self.outputSlots = outputSlots
    self.outputNames = graph.outputs.map(\.name)
    self.slotCount = slots.count
    self.operatorTypes = opTypes.sorted()
  }

  /// Elements of the constants the session keeps for its runs (what its kernels did not take in).
  var retainedConstantElements: Int {
    constants.values.reduce(0) { total, v in
      switch v {
      case .float(let f): total + f.count
      case .int(let i): total + i.count
      }
    }
  }

  /// Runs the graph. `inputs` are float32 tensors in ONNX's layout (NCHW for images), by name;
  /// the outputs come back in ONNX's layout, in graph order.
  public func run(_ inputs: [String: Tensor]) throws -> [Tensor] {
    try run(inputs.mapValues { ONNXInput(nchw: $0) })
  }

  /// Runs the graph with inputs that may already be NHWC (saves a transposition for images).
  public func run(_ inputs: [String: ONNXInput]) throws -> [Tensor] {
    var values = [ONNXValue?](repeating: nil, count: slotCount)
    for (s, v) in constants { values[s] = v }
    for (name, input) in inputs {
      guard let s = inputSlots[name] else {
        throw ONNXError.invalidInput(file: file, input: name, reason: "the model has no such input (inputs: \(self.inputs.map(\.name).joined(separator: ", ")))")
      }
      values[s] = .float(try checked(input, name: name))
    }
    for (name, s) in inputSlots where values[s] == nil {
      throw ONNXError.invalidInput(file: file, input: name, reason: "not given")
    }
    for n in nodes {
      try CancellationToken.checkCurrent()
      let args = n.inputSlots.map { $0.flatMap { values[$0] } }
      let context = NodeContext(file: file, node: n.node, opset: opset, maxElements: maxElements)
      let outputs = try context.wrap { try n.kernel.run(args) }
      for (s, v) in zip(n.outputSlots, outputs) where s >= 0 { values[s] = v }
      for s in n.release { values[s] = nil }
    }
    return try outputSlots.enumerated().map { i, s in
      switch values[s] {
      case .float(let f): return f.nchwData()
      case .int(let v):
        return try Tensor(shape: v.shape, floats: v.values.map { Float($0) })
      case nil:
        throw ONNXError.invalidGraph(file: file, reason: "output '\(outputNames[i])' was not computed")
      }
    }
  }

  private func checked(_ input: ONNXInput, name: String) throws -> FloatValue {
    let value = input.value
    guard value.data.dtype == .float32 else {
      throw ONNXError.invalidInput(file: file, input: name, reason: "expected float32, got \(value.data.dtype)")
    }
    if let declared = inputs.first(where: { $0.name == name })?.shape {
      guard declared.count == value.shape.count,
        zip(declared, value.shape).allSatisfy({ $0.0 == nil || $0.0! <= 0 || $0.0! == Int64($0.1) })
      else {
        throw ONNXError.invalidInput(
          file: file, input: name,
          reason: "shape \(value.shape) does not fit the declared \(declared.map { $0.map(String.init) ?? "?" })")
      }
    }
    guard value.count <= maxElements else {
      throw ONNXError.invalidInput(file: file, input: name, reason: "\(value.count) elements are above the limit of \(maxElements)")
    }
    guard value.shape.allSatisfy({ $0 > 0 }) else {
      throw ONNXError.invalidInput(file: file, input: name, reason: "empty shape \(value.shape)")
    }
    return value
  }
}

/// Resource limits of a session: every value an operator creates is checked before allocation.
public struct ONNXSessionOptions: Sendable {
  /// Most elements of one value (default 2²⁸ = 1 GiB of float32).
  public var maxValueElements: Int
  /// Fold `Conv → [Add →] Relu` chains into the convolution (oneDNN post-ops), as onnxruntime does.
  public var fuseConvolutions: Bool

  public init(maxValueElements: Int = 1 << 28, fuseConvolutions: Bool = true) {
    self.maxValueElements = maxValueElements
    self.fuseConvolutions = fuseConvolutions
  }
}

/// A graph input: a float32 tensor in ONNX's layout, or an image batch given as NHWC.
public struct ONNXInput {
  let value: FloatValue

  /// A tensor in ONNX's logical layout (NCHW for images).
  public init(nchw tensor: Tensor) {
    value = FloatValue(shape: tensor.shape, data: tensor.asFloat32())
  }

  /// An image batch `[N, H, W, C]` for a model input declared `[N, C, H, W]`.
  public init(nhwc tensor: Tensor) {
    precondition(tensor.rank == 4)
    let s = tensor.shape
    value = FloatValue(shape: [s[0], s[3], s[1], s[2]], data: tensor.asFloat32(), nhwc: true)
  }
}

/// The interface of an ONNX model (inputs, outputs, first node names) read without preparing
/// any kernel: for choosing what a file is before loading it (insightface routes model files
/// this way).
public struct ONNXSignature: Sendable {
  public let file: String
  /// Graph inputs that are not initializers, with declared shapes (nil entries are symbolic).
  public let inputs: [(name: String, shape: [Int64?]?)]
  public let outputs: [(name: String, shape: [Int64?]?)]
  /// Names of the first nodes (insightface looks for `Sub`/`Mul` there to find built-in normalisation).
  public let leadingNodeNames: [String]
  public let operatorTypes: [String]

  public init(contentsOf path: String) throws {
    let mapped: MemoryMappedFile
    do {
      mapped = try MemoryMappedFile(path: path)
    } catch {
      throw ONNXError.unreadable(file: path, reason: "\(error)")
    }
    let model: ONNXModelProto
    do {
      model = try ONNXProtoDecoder.model(mapped.bytes, limits: .default)
    } catch {
      throw ONNXError.malformed(file: path, reason: error.description)
    }
    let initialized = Set(model.graph.initializers.map(\.name))
    file = path
    inputs = model.graph.inputs.filter { !initialized.contains($0.name) }.map { ($0.name, $0.shape) }
    outputs = model.graph.outputs.map { ($0.name, $0.shape) }
    leadingNodeNames = model.graph.nodes.prefix(8).map(\.name)
    operatorTypes = Set(model.graph.nodes.map(\.opType)).sorted()
  }
}
