import TensorCore

/// An in-memory `TensorArchive` over a `[String: Tensor]` dictionary: for tests, for weights
/// computed at run time, and for composing archives (renaming, merging, subsetting keys).
///
/// Tensors are returned as stored (no copies; `Tensor` is copy-on-write). Every entry is an
/// F32/F16/BF16 tensor, so `info(_:)?.dtype` is never nil. No reference implementation: it plays
/// the role of a Python `state_dict` held in memory.
public final class TensorDictionary: TensorArchive {
  /// The tensors by name.
  public let tensors: [String: Tensor]
  /// A label used in error messages (e.g. "test weights").
  public let name: String
  /// Every tensor name, sorted.
  public let keys: [String]

  /// An archive holding `tensors`.
  public init(_ tensors: [String: Tensor], name: String = "in-memory tensors") {
    self.tensors = tensors
    self.name = name
    self.keys = tensors.keys.sorted()
  }

  /// The float tensors of `archive` whose keys pass `include` (views, no copies), renamed by
  /// `rename` (e.g. to strip or add a prefix). Non-float entries are skipped. Later renamed
  /// duplicates replace earlier ones in sorted-key order.
  public convenience init(
    loading archive: any TensorArchive, name: String = "in-memory tensors",
    include: (String) -> Bool = { _ in true }, rename: (String) -> String = { $0 }
  ) throws {
    var tensors: [String: Tensor] = [:]
    for key in archive.keys where include(key) && archive.info(key)?.dtype != nil {
      tensors[rename(key)] = try archive.tensor(key)
    }
    self.init(tensors, name: name)
  }

  /// A new archive with the tensors of both; entries of `other` win on equal names.
  public func merging(_ other: [String: Tensor]) -> TensorDictionary {
    TensorDictionary(tensors.merging(other) { _, new in new }, name: name)
  }

  public func info(_ key: String) -> TensorInfo? {
    tensors[key].map { TensorInfo(storedType: $0.dtype.rawValue, shape: $0.shape) }
  }

  public func tensor(_ key: String) throws(WeightsError) -> Tensor {
    guard let t = tensors[key] else { throw .tensorNotFound(key: key, archive: name) }
    return t
  }
}
