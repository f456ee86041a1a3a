import TensorCore

/// Tensors derived from another archive's: a range of rows (first dimension) of one tensor, or
/// the transpose of a 2-D tensor. Used where a checkpoint layout fuses or transposes what the
/// model keeps apart (OpenCLIP's `in_proj_weight` = q, k, v stacked; its `text_projection`).
///
/// matches: the `weight[:d]`, `weight[d:2d]`, `weight[2d:]` slicing and `.T.contiguous()` of
/// diffusers single_file_utils `convert_open_clip_checkpoint` (0.42.1). Row ranges are views;
/// transposes are F32 copies made when the tensor is read.
public final class DerivedArchive: TensorArchive, @unchecked Sendable {
  /// Where one derived tensor comes from.
  public enum Source: Sendable, Equatable {
    /// The source tensor as it is.
    case same(key: String)
    case rows(key: String, range: Range<Int>)
    case transposed(key: String)
  }

  public let base: any TensorArchive
  private let sources: [String: (Source, TensorInfo)]
  public let keys: [String]

  /// - Throws: `ArchiveError.badDerivation` when a source is missing, a row range falls outside
  ///   the tensor or a transposed tensor is not 2-D; `.duplicateKey` for a repeated name.
  public init(_ base: any TensorArchive, tensors: [(String, Source)]) throws {
    var sources: [String: (Source, TensorInfo)] = [:]
    for (key, source) in tensors {
      let (name, shape): (String, [Int]?)
      switch source {
      case .same(let k):
        (name, shape) = (k, base.info(k)?.shape)
      case .rows(let k, let range):
        let s = base.info(k)?.shape
        let ok = s.map { !$0.isEmpty && range.lowerBound >= 0 && range.upperBound <= $0[0] && !range.isEmpty } ?? false
        (name, shape) = (k, ok ? [range.count] + s!.dropFirst() : nil)
      case .transposed(let k):
        let s = base.info(k)?.shape
        (name, shape) = (k, s?.count == 2 ? [s![1], s![0]] : nil)
      }
      guard let info = base.info(name), let shape else {
        throw ArchiveError.badDerivation(key: key, source: name, shape: base.info(name)?.shape)
      }
      if sources[key] != nil { throw ArchiveError.duplicateKey(key: key, first: name, second: name) }
      sources[key] = (source, TensorInfo(storedType: source == .transposed(key: name) ? "F32" : info.storedType, shape: shape))
    }
    self.base = base
    self.sources = sources
    keys = sources.keys.sorted()
  }

  public func info(_ key: String) -> TensorInfo? { sources[key]?.1 }

  public func tensor(_ key: String) throws -> Tensor {
    guard let (source, _) = sources[key] else { throw WeightsError.tensorNotFound(key: key, archive: "derived archive") }
    switch source {
    case .same(let k):
      return try base.tensor(k)
    case .rows(let k, let range):
      return try base.tensor(k).slice(rows: range)
    case .transposed(let k):
      let t = try base.tensor(k).toFloat32(pooled: false)
      let (rows, cols) = (t.shape[0], t.shape[1])
      var out = Tensor(uninitializedShape: [cols, rows], pooled: false)
      let src = t.floatPointer
      let dst = out.mutableFloatPointer
      for r in 0..<rows {
        for c in 0..<cols { dst[c * rows + r] = src[r * cols + c] }
      }
      return out
    }
  }
}
