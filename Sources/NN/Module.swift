import TensorCore

/// One learnable tensor of a module, named by its checkpoint key relative to the module.
///
/// Until loading, only the expected shape is known; `load(from:)` fills `value` with the
/// checkpoint's tensor (a zero-copy view in its stored dtype — conversion and packing happen when
/// the owning layer prepares its kernel).
public final class Parameter {
  public let shape: [Int]
  public internal(set) var storedValue: Tensor?
  /// The value as loaded, kept while a fused value (`fuse(_:)`) replaces it.
  public private(set) var unfusedValue: Tensor?

  public init(_ shape: [Int]) { self.shape = shape }

  /// The loaded tensor. Calling it before loading is a programming error.
  public var value: Tensor {
    guard let storedValue else { preconditionFailure("parameter of shape \(shape) used before loading") }
    return storedValue
  }

  /// Sets the value directly (tests, synthetic weights, training). The shape must match.
  public func assign(_ tensor: Tensor) throws {
    guard tensor.shape == shape else {
      throw TensorError.shapeMismatch(operation: "assign parameter", expected: shape, actual: tensor.shape)
    }
    storedValue = tensor
  }

  /// The value before any fusion: what was loaded (a view of the file).
  public var loadedValue: Tensor { unfusedValue ?? value }

  /// Replaces the value by `fused` (e.g. the weight with LoRA products added), keeping the loaded
  /// tensor so that `unfuse()` (or another `fuse`) can start from it again without re-reading the
  /// file. The owning layer must drop its packed kernel (`Module.releaseKernels`).
  public func fuse(_ fused: Tensor) throws {
    guard fused.shape == shape else {
      throw TensorError.shapeMismatch(operation: "fuse parameter", expected: shape, actual: fused.shape)
    }
    if unfusedValue == nil { unfusedValue = value }
    storedValue = fused
  }

  /// Restores the loaded value (no effect when nothing was fused).
  public func unfuse() {
    guard let unfusedValue else { return }
    storedValue = unfusedValue
    self.unfusedValue = nil
  }
}

/// How a layer computes once loaded.
public struct PrepareOptions: Sendable {
  public var precision: ComputePrecision
  /// Accept weights holding NaN or infinity (by default loading samples every tensor and refuses
  /// such files with `WeightLoadingError.nonFinite`, since they can only give black images).
  public var allowNonFiniteWeights: Bool
  public init(precision: ComputePrecision = .float32, allowNonFiniteWeights: Bool = false) {
    self.precision = precision
    self.allowNonFiniteWeights = allowNonFiniteWeights
  }
}

/// A node of a model: its own parameters and its child modules, each under the name the
/// checkpoint uses, so that a parameter's full key is the dotted path from the root
/// (`down_blocks.0.resnets.1.conv1.weight`). Loading is therefore a lookup, not a translation.
public protocol Module: AnyObject {
  /// This module's own parameters, by key (e.g. `weight`, `bias`).
  var parameters: [(String, Parameter)] { get }
  /// Child modules, by key path segment(s) (e.g. `to_q`, `down_blocks.0`).
  var children: [(String, any Module)] { get }
  /// Builds kernels from the loaded parameters; called once after loading, children first.
  func prepare(_ options: PrepareOptions) throws
}

extension Module {
  public var parameters: [(String, Parameter)] { [] }
  public var children: [(String, any Module)] { [] }
  public func prepare(_ options: PrepareOptions) throws {}

  /// Every parameter of the tree with its full dotted key, in declaration order.
  public func namedParameters(prefix: String = "") -> [(String, Parameter)] {
    var out: [(String, Parameter)] = []
    for (name, p) in parameters { out.append((prefix + name, p)) }
    for (name, child) in children {
      out += child.namedParameters(prefix: prefix + name + ".")
    }
    return out
  }

  /// Calls `prepare` on every module of the tree, children before parents.
  public func prepareTree(_ options: PrepareOptions) throws {
    for (_, child) in children { try child.prepareTree(options) }
    try prepare(options)
  }

  /// Drops the packed weights of every convolution and linear layer of the tree (they are packed
  /// again on the next call), freeing their memory — for models a run no longer needs.
  public func releaseKernels() {
    if let l = self as? Linear { l.release() }
    if let c = self as? Conv2d { c.release() }
    for (_, child) in children { child.releaseKernels() }
  }

  /// Every module of the tree with its dotted key path (the root as `prefix` without its dot),
  /// parents before children.
  public func namedModules(prefix: String = "") -> [(String, any Module)] {
    var out: [(String, any Module)] = [(prefix, self)]
    for (name, child) in children {
      out += child.namedModules(prefix: prefix.isEmpty ? name : prefix + "." + name)
    }
    return out
  }

  /// Total number of scalar parameters.
  public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.1.shape.reduce(1, *) } }
}
