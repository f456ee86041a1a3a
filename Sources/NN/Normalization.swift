import TensorCore

/// Group normalisation over NHWC activations, keys `weight` and `bias` `[C]`.
///
/// matches: `torch.nn.GroupNorm(numGroups, C, eps, affine=True)`; `silu: true` fuses the SiLU
/// that diffusers applies right after most of its group norms.
public final class GroupNorm: Module {
  public let groups: Int
  public let eps: Float
  public let weight: Parameter
  public let bias: Parameter
  private var gamma: Tensor?
  private var beta: Tensor?

  public init(groups: Int, channels: Int, eps: Float) {
    self.groups = groups
    self.eps = eps
    self.weight = Parameter([channels])
    self.bias = Parameter([channels])
  }

  public var parameters: [(String, Parameter)] { [("weight", weight), ("bias", bias)] }

  public func prepare(_ options: PrepareOptions) throws {
    gamma = weight.value.toFloat32()
    beta = bias.value.toFloat32()
  }

  public func callAsFunction(_ x: Tensor, silu: Bool = false) throws -> Tensor {
    guard let gamma, let beta else { throw ModuleError.notPrepared("GroupNorm") }
    return try Normalization.groupNorm(x, groups: groups, weight: gamma, bias: beta, eps: eps, silu: silu)
  }
}

/// Layer normalisation over the last dimension, keys `weight` and `bias` `[C]` (when affine).
///
/// matches: `torch.nn.LayerNorm(C, eps, elementwise_affine)`.
public final class LayerNorm: Module {
  public let eps: Float
  public let weight: Parameter?
  public let bias: Parameter?
  private var gamma: Tensor?
  private var beta: Tensor?

  public init(_ channels: Int, eps: Float = 1e-5, affine: Bool = true) {
    self.eps = eps
    self.weight = affine ? Parameter([channels]) : nil
    self.bias = affine ? Parameter([channels]) : nil
  }

  public var parameters: [(String, Parameter)] {
    guard let weight, let bias else { return [] }
    return [("weight", weight), ("bias", bias)]
  }

  public func prepare(_ options: PrepareOptions) throws {
    gamma = weight?.value.toFloat32()
    beta = bias?.value.toFloat32()
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    try Normalization.layerNorm(x, weight: gamma, bias: beta, eps: eps)
  }
}

/// A lookup table, key `weight` `[count, dim]`.
///
/// matches: `torch.nn.Embedding`.
public final class Embedding: Module {
  public let weight: Parameter
  private var table: Tensor?

  public init(_ count: Int, _ dimension: Int) { self.weight = Parameter([count, dimension]) }

  public var parameters: [(String, Parameter)] { [("weight", weight)] }

  public func prepare(_ options: PrepareOptions) throws { table = weight.value.toFloat32() }

  /// Rows for `ids` → `[ids.count, dim]`.
  public func callAsFunction(_ ids: [Int]) throws -> Tensor {
    guard let table else { throw ModuleError.notPrepared("Embedding") }
    return try Ops.gatherRows(table, ids)
  }

  /// The whole table as Float32.
  public var float32Table: Tensor? { table }
}
