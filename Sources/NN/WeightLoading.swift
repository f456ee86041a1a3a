import TensorCore
import Weights

/// Why a module tree could not be loaded from a checkpoint. All problems are collected and
/// reported together, each key named.
public struct WeightLoadingError: Error, CustomStringConvertible, Equatable {
  public var source: String
  public var missing: [String]
  public var unexpected: [String]
  public var shapeMismatches: [ShapeMismatch]
  public var unsupported: [String]
  /// Tensors in which the (sampled) check found NaN or infinity, with the element index.
  public var nonFinite: [String] = []

  public struct ShapeMismatch: Equatable, Sendable {
    public var key: String
    public var expected: [Int]
    public var actual: [Int]
  }

  public var isEmpty: Bool {
    missing.isEmpty && unexpected.isEmpty && shapeMismatches.isEmpty && unsupported.isEmpty && nonFinite.isEmpty
  }

  public var description: String {
    var lines = ["cannot load weights from \(source):"]
    func list(_ title: String, _ items: [String]) {
      guard !items.isEmpty else { return }
      let shown = items.prefix(20).joined(separator: ", ")
      lines.append("  \(title) (\(items.count)): \(shown)\(items.count > 20 ? ", …" : "")")
    }
    list("missing keys", missing)
    list("unexpected keys", unexpected)
    list(
      "shape mismatches",
      shapeMismatches.map { "\($0.key) expected \($0.expected) but the file has \($0.actual)" })
    list("tensors not stored as F32/F16/BF16", unsupported)
    list("tensors holding NaN or infinity (the file is damaged; allowNonFiniteWeights accepts it)", nonFinite)
    return lines.joined(separator: "\n")
  }
}

/// Options for `loadWeights`.
public struct LoadOptions: Sendable {
  /// Reject checkpoint keys that no parameter consumes (default true).
  public var strict: Bool = true
  /// Key prefix in the archive under which the module's keys live (e.g. `text_model.`).
  public var prefix: String = ""
  /// Archive keys (full names) that may be present without a parameter (e.g. int buffers).
  public var ignore: @Sendable (String) -> Bool = { _ in false }
  /// How to prepare the kernels after loading.
  public var prepare: PrepareOptions = PrepareOptions()

  public init(
    strict: Bool = true, prefix: String = "", ignore: @escaping @Sendable (String) -> Bool = { _ in false },
    prepare: PrepareOptions = PrepareOptions()
  ) {
    self.strict = strict
    self.prefix = prefix
    self.ignore = ignore
    self.prepare = prepare
  }
}

extension Module {
  /// Fills every parameter of the tree from `archive` by key path, validates, then prepares the
  /// kernels. Strict by default: missing keys, unexpected keys (under `prefix`) and shape
  /// mismatches are all reported in one `WeightLoadingError`.
  public func loadWeights(
    from archive: any TensorArchive, source: String, options: LoadOptions = LoadOptions()
  ) throws {
    var error = WeightLoadingError(
      source: source, missing: [], unexpected: [], shapeMismatches: [], unsupported: [])
    var consumed = Set<String>()
    var pending: [(Parameter, Tensor)] = []
    for (key, parameter) in namedParameters() {
      let full = options.prefix + key
      guard let info = archive.info(full) else {
        error.missing.append(full)
        continue
      }
      consumed.insert(full)
      guard info.dtype != nil else {
        error.unsupported.append("\(full) (\(info.storedType))")
        continue
      }
      guard info.shape == parameter.shape else {
        error.shapeMismatches.append(.init(key: full, expected: parameter.shape, actual: info.shape))
        continue
      }
      let tensor = try archive.tensor(full)
      if !options.prepare.allowNonFiniteWeights, let index = NonFinite.sampledNonFiniteIndex(tensor) {
        error.nonFinite.append("\(full) (element \(index))")
        continue
      }
      pending.append((parameter, tensor))
    }
    if options.strict {
      for key in archive.keys where key.hasPrefix(options.prefix) && !consumed.contains(key) {
        if !options.ignore(key) { error.unexpected.append(key) }
      }
    }
    guard error.isEmpty else { throw error }
    for (parameter, tensor) in pending { parameter.storedValue = tensor }
    try prepareTree(options.prepare)
  }
}
