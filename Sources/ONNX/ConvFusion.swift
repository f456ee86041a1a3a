/// What a convolution node absorbs from the nodes after it.
struct ConvFusion {
  /// The input name added to the result (an `Add` whose other operand was this).
  var residual: String?
  /// A `Relu` after the convolution (or after the fused `Add`).
  var relu = false
}

/// Folds `Conv → Relu`, `Conv → Add(·, r)` and `Conv → Add → Relu` chains into the convolution
/// (oneDNN's sum and ReLU post-ops), as onnxruntime's FusedConv does. Only when every
/// intermediate value has exactly one reader and is not a graph output, and the residual operand
/// is available before the convolution runs. The fused node takes the last node's output name.
enum ConvFusionPass {
  static func apply(_ nodes: [ONNXNodeProto], graphOutputs: Set<String>, available: Set<String>)
    -> (nodes: [ONNXNodeProto], fusions: [Int: ConvFusion])
  {
    var readers: [String: [Int]] = [:]
    for (i, n) in nodes.enumerated() {
      for input in n.inputs where !input.isEmpty { readers[input, default: []].append(i) }
    }
    var definedAt: [String: Int] = [:]
    for (i, n) in nodes.enumerated() { for o in n.outputs where !o.isEmpty { definedAt[o] = i } }
    func soleReader(_ name: String) -> Int? {
      guard !graphOutputs.contains(name), let r = readers[name], r.count == 1 else { return nil }
      return r[0]
    }
    func isDefault(_ n: ONNXNodeProto) -> Bool { n.domain.isEmpty || n.domain == "ai.onnx" }

    var removed = Set<Int>()
    var out = nodes
    var fusions: [Int: ConvFusion] = [:]
    for (i, node) in nodes.enumerated() where node.opType == "Conv" && isDefault(node) && node.outputs.count == 1 {
      var fusion = ConvFusion()
      var last = node.outputs[0]
      if let j = soleReader(last), !removed.contains(j), nodes[j].opType == "Add", isDefault(nodes[j]),
        nodes[j].inputs.count == 2, nodes[j].outputs.count == 1
      {
        let other = nodes[j].inputs[0] == last ? nodes[j].inputs[1] : nodes[j].inputs[0]
        let ready = available.contains(other) || (definedAt[other].map { $0 < i } ?? false)
        if other != last, !other.isEmpty, ready {
          fusion.residual = other
          removed.insert(j)
          last = nodes[j].outputs[0]
        }
      }
      if let j = soleReader(last), !removed.contains(j), nodes[j].opType == "Relu", isDefault(nodes[j]),
        nodes[j].inputs.count == 1, nodes[j].outputs.count == 1, nodes[j].attributes.isEmpty
      {
        fusion.relu = true
        removed.insert(j)
        last = nodes[j].outputs[0]
      }
      guard fusion.relu || fusion.residual != nil else { continue }
      out[i].outputs = [last]
      if let r = fusion.residual { out[i].inputs = padded(out[i].inputs) + [r] }
      fusions[i] = fusion
    }
    var kept: [ONNXNodeProto] = []
    var keptFusions: [Int: ConvFusion] = [:]
    for (i, n) in out.enumerated() where !removed.contains(i) {
      if let f = fusions[i] { keptFusions[kept.count] = f }
      kept.append(n)
    }
    return (kept, keptFusions)
  }

  /// Conv's inputs padded to three positions (X, W, B) so the residual is always the fourth.
  static func padded(_ inputs: [String]) -> [String] {
    inputs.count >= 3 ? Array(inputs.prefix(3)) : inputs + [String](repeating: "", count: 3 - inputs.count)
  }
}
