/// Turns an unpickled checkpoint object into dotted keys: nested dicts are joined with "."
/// (`image_proj.latents`, `state_dict.model.diffusion_model…`), lists and tuples that hold
/// tensors or dicts by index (`layers.0`); tensors go to one table, every other leaf (numbers,
/// strings, None, bytes, lists of plain values, inert objects) to the metadata table.
///
/// Bounded: nesting deeper than `maxDepth` throws `nestingTooDeep`; the number of visited nodes is
/// capped by a budget derived from the number of pickle opcodes, so a graph that shares
/// sub-objects exponentially often throws `pickleTooComplex` instead of running forever; a
/// container reached again through itself (a cycle) is skipped.
///
/// matches: the key naming of `torch.nn.Module.state_dict()` nesting, as diffusers/IP-Adapter
/// loaders flatten `{"image_proj": …, "ip_adapter": …}` and LDM `.ckpt` files (`state_dict.` prefix).
/// Limitations: dict keys other than str/int/bool/None/allowlisted classes are skipped with
/// their subtree.
struct StateDictFlattener {
  static let maxDepth = 64

  let path: String
  private var budget: Int
  private(set) var tensors: [String: TensorReference] = [:]
  private(set) var metadata: [String: TorchCheckpoint.MetadataValue] = [:]
  private var onPath: Set<ObjectIdentifier> = []

  /// `opcodeCount` is the number of opcodes the unpickler executed.
  init(path: String, opcodeCount: Int) {
    self.path = path
    budget = 1_000_000 + 8 * opcodeCount
  }

  private mutating func spend() throws(TorchCheckpointError) {
    budget -= 1
    guard budget >= 0 else {
      throw .pickleTooComplex(path: path, reason: "more nodes to visit than the pickle has opcodes to justify (shared sub-objects?)")
    }
  }

  private static func join(_ prefix: String, _ name: String) -> String {
    prefix.isEmpty ? name : prefix + "." + name
  }

  private static func keyName(_ key: PickleValue) -> String? {
    switch key {
    case .string(let s): s
    case .int(let i): String(i)
    case .bool(let b): b ? "True" : "False"
    case .none: "None"
    case .global(let g): g.dottedName
    case .object(let name): name
    default: nil
    }
  }

  /// Visits `value` reached under `key`.
  mutating func visit(_ value: PickleValue, key: String, depth: Int = 0) throws(TorchCheckpointError) {
    try spend()
    guard depth <= Self.maxDepth else { throw .nestingTooDeep(path: path, limit: Self.maxDepth) }
    switch value {
    case .tensor(let t):
      guard tensors[key] == nil else { throw .duplicateKey(path: path, key: key) }
      tensors[key] = t
    case .dict(let dict):
      let id = ObjectIdentifier(dict)
      guard !onPath.contains(id) else { return }
      onPath.insert(id)
      defer { onPath.remove(id) }
      for (k, v) in dict.entries {
        guard let name = Self.keyName(k) else { continue }
        try visit(v, key: Self.join(key, name), depth: depth + 1)
      }
    case .list(let list):
      let id = ObjectIdentifier(list)
      guard !onPath.contains(id) else { return }
      if let leaf = try plainValue(value, depth: 0) {
        metadata[key] = leaf
        return
      }
      onPath.insert(id)
      defer { onPath.remove(id) }
      for (i, item) in list.items.enumerated() {
        try visit(item, key: Self.join(key, String(i)), depth: depth + 1)
      }
    case .tuple(let tuple):
      if let leaf = try plainValue(value, depth: 0) {
        metadata[key] = leaf
        return
      }
      for (i, item) in tuple.items.enumerated() {
        try visit(item, key: Self.join(key, String(i)), depth: depth + 1)
      }
    default:
      if let leaf = try plainValue(value, depth: 0) { metadata[key] = leaf }
    }
  }

  /// `value` as metadata if it holds no tensor and no dict (nil otherwise).
  private mutating func plainValue(_ value: PickleValue, depth: Int) throws(TorchCheckpointError) -> TorchCheckpoint.MetadataValue? {
    try spend()
    guard depth <= Self.maxDepth else { return nil }
    switch value {
    case .none: return TorchCheckpoint.MetadataValue.none
    case .bool(let b): return .bool(b)
    case .int(let i): return .int(i)
    case .bigInt(let n): return .object("int of \(n) bytes")
    case .float(let d): return .float(d)
    case .string(let s): return .string(s)
    case .bytes(let b): return .bytes(b)
    case .global(let g): return .object(g.dottedName)
    case .storage(let s): return .object("torch storage \(s.key)")
    case .numpyDType(let d): return .object("numpy.dtype(\(d.code))")
    case .object(let name): return .object(name)
    case .tensor, .dict: return nil
    case .tuple(let t):
      var out: [TorchCheckpoint.MetadataValue] = []
      for item in t.items {
        guard let v = try plainValue(item, depth: depth + 1) else { return nil }
        out.append(v)
      }
      return .list(out)
    case .list(let l):
      let id = ObjectIdentifier(l)
      guard !onPath.contains(id) else { return nil }
      onPath.insert(id)
      defer { onPath.remove(id) }
      var out: [TorchCheckpoint.MetadataValue] = []
      for item in l.items {
        guard let v = try plainValue(item, depth: depth + 1) else { return nil }
        out.append(v)
      }
      return .list(out)
    }
  }
}
