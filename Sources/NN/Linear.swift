import TensorCore

/// A fully connected layer with keys `weight` `[out, in]` and optional `bias` `[out]`.
///
/// matches: `torch.nn.Linear`. The kernel (oneDNN matmul with packed weights) is built by
/// `prepare`; an optional activation and residual add are fused into it.
public final class Linear: Module {
  public let weight: Parameter
  public let bias: Parameter?
  public let activation: FusedActivation
  private var kernel: LinearKernel?
  private var options = PrepareOptions()

  public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, activation: FusedActivation = .none) {
    self.weight = Parameter([outFeatures, inFeatures])
    self.bias = bias ? Parameter([outFeatures]) : nil
    self.activation = activation
  }

  public var inFeatures: Int { weight.shape[1] }
  public var outFeatures: Int { weight.shape[0] }

  public var parameters: [(String, Parameter)] {
    [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
  }

  /// The arithmetic the last `prepare` chose for the product (fp32 before any).
  public var precision: ComputePrecision { options.precision }

  public func prepare(_ options: PrepareOptions) throws {
    self.options = options
    kernel = try LinearKernel(
      weight: weight.value, bias: bias?.value, activation: activation, precision: options.precision)
  }

  /// Drops the packed weights; the next call packs them again.
  public func release() { kernel = nil }

  /// `act(x·Wᵀ + b) (+ accumulate)` over the last dimension.
  public func callAsFunction(_ x: Tensor, accumulate: Tensor? = nil) throws -> Tensor {
    if kernel == nil {
      guard weight.storedValue != nil else { throw ModuleError.notPrepared("Linear \(inFeatures)→\(outFeatures)") }
      try prepare(options)
    }
    return try kernel!(x, accumulate: accumulate)
  }
}

/// Errors from using a module incorrectly.
public enum ModuleError: Error, CustomStringConvertible {
  case notPrepared(String)
  case invalidInput(String)

  public var description: String {
    switch self {
    case .notPrepared(let what): "\(what) was used before its weights were loaded"
    case .invalidInput(let message): message
    }
  }
}
