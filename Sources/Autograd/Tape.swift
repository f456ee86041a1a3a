import Dispatch
import TensorCore

/// A tensor recorded on a ``Tape``: its value and, after ``Tape/backward(_:seed:)``, its
/// gradient (leaves only; intermediate gradients are released as soon as they are used).
///
/// matches: a `torch.Tensor` with `requires_grad` (leaves) or a `grad_fn` (results of recorded
/// operations). Values are float32, row-major; shapes as the operations document them.
public final class Variable {
  /// The value. A leaf's value may be replaced (an optimiser step); results are never changed.
  public internal(set) var value: Tensor
  /// Whether a gradient flows to this variable (a trainable leaf, or a result of one).
  public let requiresGrad: Bool
  /// True for variables made by ``Tape/leaf(_:requiresGrad:)``.
  public let isLeaf: Bool
  /// dLoss/dValue after `backward` (nil for frozen leaves and released intermediates).
  public internal(set) var grad: Tensor?

  init(_ value: Tensor, requiresGrad: Bool, isLeaf: Bool) {
    self.value = value.asFloat32()
    self.requiresGrad = requiresGrad
    self.isLeaf = isLeaf
  }

  /// A trainable leaf that outlives any one tape (a model parameter).
  public convenience init(parameter value: Tensor) { self.init(value, requiresGrad: true, isLeaf: true) }

  /// A frozen leaf (an input, or a weight that does not learn).
  public convenience init(constant value: Tensor) { self.init(value, requiresGrad: false, isLeaf: true) }

  public var shape: [Int] { value.shape }

  /// Adds `g` to the gradient (a variable read by several operations receives the sum).
  func accumulate(_ g: Tensor) throws {
    guard g.shape == value.shape else {
      throw AutogradError.shapeMismatch(operation: "gradient accumulation", expected: value.shape, actual: g.shape)
    }
    if let existing = grad {
      grad = try Ops.add(existing, g)
    } else {
      grad = g
    }
  }

  /// Forgets the gradient (before the next backward pass of an optimiser loop).
  public func zeroGrad() { grad = nil }

  /// Replaces a leaf's value (same shape), e.g. after an optimiser step.
  public func assign(_ newValue: Tensor) throws {
    guard isLeaf else { throw AutogradError.invalidArgument("only a leaf's value can be assigned") }
    guard newValue.shape == value.shape else {
      throw AutogradError.shapeMismatch(operation: "assign", expected: value.shape, actual: newValue.shape)
    }
    value = newValue.asFloat32()
  }
}

/// Errors of the autograd operations, naming the operation and the shapes involved.
public enum AutogradError: Error, Equatable, CustomStringConvertible {
  case shapeMismatch(operation: String, expected: [Int], actual: [Int])
  case invalidArgument(String)

  public var description: String {
    switch self {
    case .shapeMismatch(let op, let expected, let actual): "\(op): expected shape \(expected), got \(actual)"
    case .invalidArgument(let reason): reason
    }
  }
}

/// Records operations for reverse-mode differentiation: a tape of nodes, each with a
/// hand-written backward kernel, replayed in reverse by ``backward(_:seed:)``.
///
/// Only what adapter training needs: gradients flow to trainable leaves and through any
/// operation one of them feeds; an operation none of whose inputs needs a gradient is not
/// recorded, and a backward kernel computes only the input gradients that are needed (a frozen
/// weight's gradient is never computed or stored).
///
/// matches: `torch.autograd` for the operations of the `Tape+*.swift` files (each tested against
/// `torch.autograd.grad`, relative error ≤ 1e-5). Limitations: float32 only; one backward pass
/// per tape (it is emptied); saved activations are kept until `backward`, except inside
/// ``checkpoint(_:_:)``, which recomputes a block's activations during the backward pass instead.
public final class Tape {
  struct Node {
    let inputs: [Variable]
    let output: Variable
    /// Gradients of the inputs (nil where not needed) given the output's gradient and which
    /// inputs need one.
    let backward: (_ gradient: Tensor, _ needs: [Bool]) throws -> [Tensor?]
    /// The recording operation (its function name), for `profile`.
    var operation: String = "checkpoint"
  }

  /// Time per operation, when profiling (`profile` set): the forward pass of an operation is the
  /// time since the previous one was recorded (so it includes any untaped work between them).
  public struct OperationTime: Sendable {
    public var count = 0
    public var forwardSeconds = 0.0
    public var backwardSeconds = 0.0
  }

  private var nodes: [Node] = []
  /// Per-operation times of this tape's forward and backward passes; nil (the default) records
  /// nothing. Set it to `[:]` to start profiling.
  public var profile: [String: OperationTime]?
  private var lastRecord = DispatchTime.now().uptimeNanoseconds

  public init() {}

  /// The number of recorded operations.
  public var count: Int { nodes.count }

  /// A leaf: a trainable parameter (`requiresGrad`) or a frozen input/weight.
  public func leaf(_ value: Tensor, requiresGrad: Bool = true) -> Variable {
    Variable(value, requiresGrad: requiresGrad, isLeaf: true)
  }

  /// Appends a node whose output needs a gradient.
  func append(_ node: Node) { nodes.append(node) }

  /// Records `value` as the result of an operation on `inputs`.
  func record(
    _ value: Tensor, inputs: [Variable], operation: String = #function,
    backward: @escaping (_ gradient: Tensor, _ needs: [Bool]) throws -> [Tensor?]
  ) -> Variable {
    let needs = inputs.contains { $0.requiresGrad }
    let output = Variable(value, requiresGrad: needs, isLeaf: false)
    if profile != nil {
      let now = DispatchTime.now().uptimeNanoseconds
      profile![operation, default: OperationTime()].forwardSeconds += Double(now - lastRecord) / 1e9
      profile![operation, default: OperationTime()].count += 1
      lastRecord = now
    }
    if needs { nodes.append(Node(inputs: inputs, output: output, backward: backward, operation: operation)) }
    return output
  }

  /// Starts the forward clock of `profile` (the first operation's time is measured from here).
  public func startProfiling() {
    profile = [:]
    lastRecord = DispatchTime.now().uptimeNanoseconds
  }

  /// Back-propagates from `root` (a scalar loss unless `seed`, dLoss/dRoot, is given) through
  /// every recorded operation, newest first; leaves' gradients accumulate, intermediates'
  /// are released once used. The tape is emptied.
  public func backward(_ root: Variable, seed: Tensor? = nil) throws {
    guard root.requiresGrad else {
      throw AutogradError.invalidArgument("backward: the loss does not depend on any trainable variable")
    }
    if let seed {
      guard seed.shape == root.shape else {
        throw AutogradError.shapeMismatch(operation: "backward seed", expected: root.shape, actual: seed.shape)
      }
      root.grad = seed.asFloat32()
    } else {
      guard root.value.count == 1 else {
        throw AutogradError.invalidArgument("backward without a seed needs a scalar loss, got shape \(root.shape)")
      }
      root.grad = try Tensor(shape: root.shape, floats: [1])
    }
    defer { nodes.removeAll() }
    for node in nodes.reversed() {
      guard let g = node.output.grad else { continue }
      let needs = node.inputs.map(\.requiresGrad)
      let start = profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
      let grads = try node.backward(g, needs)
      if profile != nil {
        profile![node.operation, default: OperationTime()].backwardSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      }
      for (input, grad) in zip(node.inputs, grads) where input.requiresGrad {
        if let grad { try input.accumulate(grad) }
      }
      if !node.output.isLeaf { node.output.grad = nil }
    }
  }
}
