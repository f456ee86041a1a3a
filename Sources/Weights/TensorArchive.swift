import TensorCore

/// Shape and element type of one stored tensor, known without reading its data.
public struct TensorInfo: Sendable, Equatable {
  /// The stored element type as the file names it ("F16", "I64", …).
  public var storedType: String
  public var shape: [Int]

  public init(storedType: String, shape: [Int]) {
    self.storedType = storedType
    self.shape = shape
  }

  /// The float dtype TensorCore can compute with, or nil for integer/bool/other storage.
  public var dtype: DType? { DType(rawValue: storedType) }
}

/// A read-only collection of named tensors: a safetensors file, a PyTorch `.bin`/`.ckpt`, or an
/// in-memory dictionary. Float tensors come back as zero-copy views where the container allows it.
public protocol TensorArchive: AnyObject, Sendable {
  /// Every tensor name in the archive, sorted.
  var keys: [String] { get }
  /// Metadata of one tensor, or nil if the name is not present.
  func info(_ key: String) -> TensorInfo?
  /// The tensor as an F32/F16/BF16 `Tensor` (a view when possible). Throws for missing keys and
  /// for tensors whose element type is not a float type.
  func tensor(_ key: String) throws -> Tensor
}
