import TensorCore

/// Several archives seen as one (the shards of a checkpoint listed by a
/// `*.safetensors.index.json`, or parts loaded from different files). A key must not appear in
/// two parts.
///
/// matches: the sharded-checkpoint convention of transformers/diffusers (`weight_map`).
/// `@unchecked Sendable`: immutable after init (its member archives are read-only).
public final class CompositeArchive: TensorArchive, @unchecked Sendable {
  public let parts: [any TensorArchive]
  private let owner: [String: Int]
  public let keys: [String]

  /// - Throws: `ArchiveError.duplicateKey` when two parts hold the same key.
  public init(_ parts: [any TensorArchive], names: [String]) throws {
    var owner: [String: Int] = [:]
    for (i, part) in parts.enumerated() {
      for key in part.keys {
        if let first = owner[key] {
          throw ArchiveError.duplicateKey(key: key, first: names[first], second: names[i])
        }
        owner[key] = i
      }
    }
    self.parts = parts
    self.owner = owner
    self.keys = owner.keys.sorted()
  }

  public func info(_ key: String) -> TensorInfo? { owner[key].flatMap { parts[$0].info(key) } }

  public func tensor(_ key: String) throws -> Tensor {
    guard let i = owner[key] else { throw WeightsError.tensorNotFound(key: key, archive: "composite archive") }
    return try parts[i].tensor(key)
  }
}

/// An archive whose keys are renamed by a declarative table: the way one model is read from a
/// checkpoint that uses another naming (legacy diffusers attention names, LDM single files).
/// Tensors may also be reshaped when the two layouts store the same numbers with different
/// shapes (a 1×1 convolution kernel `[o, i, 1, 1]` read as a linear weight `[o, i]`).
/// `@unchecked Sendable`: immutable after init.
public final class RenamedArchive: TensorArchive, @unchecked Sendable {
  public let base: any TensorArchive
  /// new key → (original key, optional new shape)
  private let mapping: [String: (String, [Int]?)]
  public let keys: [String]

  /// - Parameter rename: returns the new name for an original key (or nil to hide it), and
  ///   optionally a shape to view the tensor with.
  public init(_ base: any TensorArchive, rename: (String, TensorInfo) -> (String, [Int]?)?) throws {
    var mapping: [String: (String, [Int]?)] = [:]
    for key in base.keys {
      guard let info = base.info(key), let (newKey, shape) = rename(key, info) else { continue }
      if let existing = mapping[newKey] {
        throw ArchiveError.duplicateKey(key: newKey, first: existing.0, second: key)
      }
      if let shape, shape.reduce(1, *) != info.shape.reduce(1, *) {
        throw ArchiveError.badReshape(key: key, from: info.shape, to: shape)
      }
      mapping[newKey] = (key, shape)
    }
    self.base = base
    self.mapping = mapping
    self.keys = mapping.keys.sorted()
  }

  public func info(_ key: String) -> TensorInfo? {
    guard let (original, shape) = mapping[key], var info = base.info(original) else { return nil }
    if let shape { info.shape = shape }
    return info
  }

  public func tensor(_ key: String) throws -> Tensor {
    guard let (original, shape) = mapping[key] else { throw WeightsError.tensorNotFound(key: key, archive: "renamed archive") }
    let t = try base.tensor(original)
    return shape.map { t.reshaped($0) } ?? t
  }
}

/// Errors of the archive combinators.
public enum ArchiveError: Error, CustomStringConvertible, Equatable {
  case duplicateKey(key: String, first: String, second: String)
  case badReshape(key: String, from: [Int], to: [Int])
  /// A `DerivedArchive` tensor whose source is missing or has a shape it cannot be derived from.
  case badDerivation(key: String, source: String, shape: [Int]?)

  public var description: String {
    switch self {
    case .duplicateKey(let key, let first, let second):
      "tensor '\(key)' appears twice (in \(first) and in \(second))"
    case .badReshape(let key, let from, let to): "cannot view '\(key)' of shape \(from) as \(to)"
    case .badDerivation(let key, let source, let shape):
      shape.map { "cannot derive '\(key)' from '\(source)' of shape \($0)" } ?? "cannot derive '\(key)': '\(source)' is missing"
    }
  }
}
