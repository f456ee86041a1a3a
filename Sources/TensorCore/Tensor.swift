/// Errors raised by tensor construction and shape checks.
public enum TensorError: Error, CustomStringConvertible, Equatable {
  case shapeMismatch(operation: String, expected: [Int], actual: [Int])
  case countMismatch(shape: [Int], elements: Int)
  case dtypeMismatch(operation: String, expected: DType, actual: DType)
  case invalidArgument(String)

  public var description: String {
    switch self {
    case .shapeMismatch(let op, let expected, let actual):
      "\(op): expected shape \(expected), got \(actual)"
    case .countMismatch(let shape, let elements):
      "shape \(shape) needs \(shape.reduce(1, *)) elements, got \(elements)"
    case .dtypeMismatch(let op, let expected, let actual):
      "\(op): expected dtype \(expected), got \(actual)"
    case .invalidArgument(let message): message
    }
  }
}

/// An n-dimensional array with contiguous row-major storage.
///
/// Activations are NHWC (`[batch, height, width, channels]`) or `[batch, tokens, channels]`;
/// weights keep the layout of their checkpoint until a layer packs them for its kernel.
/// `Tensor` is a value type over reference-counted storage: copies share bytes until one of them
/// is mutated through a `withUnsafeMutable…` accessor, which copies first (copy-on-write).
/// `@unchecked Sendable`: a value over `TensorStorage` (copy on write).
public struct Tensor: @unchecked Sendable, CustomStringConvertible {
  public private(set) var shape: [Int]
  public let dtype: DType
  @usableFromInline var storage: TensorStorage
  /// Byte offset of element 0 inside `storage` (views into a checkpoint or a batch slice).
  @usableFromInline let byteOffset: Int

  /// An uninitialised tensor. `pooled: false` keeps a one-off buffer out of the recycling pool.
  public init(uninitializedShape shape: [Int], dtype: DType = .float32, pooled: Bool = true) {
    precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
    self.shape = shape
    self.dtype = dtype
    self.storage = TensorStorage(byteCount: shape.reduce(1, *) * dtype.byteSize, pooled: pooled)
    self.byteOffset = 0
  }

  /// A tensor viewing `storage` starting at `byteOffset`.
  public init(shape: [Int], dtype: DType, storage: TensorStorage, byteOffset: Int = 0) {
    precondition(byteOffset + shape.reduce(1, *) * dtype.byteSize <= storage.byteCount)
    self.shape = shape
    self.dtype = dtype
    self.storage = storage
    self.byteOffset = byteOffset
  }

  /// A Float32 tensor filled with zeros.
  public static func zeros(_ shape: [Int]) -> Tensor {
    var t = Tensor(uninitializedShape: shape)
    t.withUnsafeMutableFloats { $0.update(repeating: 0) }
    return t
  }

  /// A Float32 tensor filled with `value`.
  public static func full(_ shape: [Int], _ value: Float) -> Tensor {
    var t = Tensor(uninitializedShape: shape)
    t.withUnsafeMutableFloats { $0.update(repeating: value) }
    return t
  }

  /// A Float32 tensor holding `values` in row-major order.
  public init(shape: [Int], floats values: [Float]) throws {
    guard values.count == shape.reduce(1, *) else {
      throw TensorError.countMismatch(shape: shape, elements: values.count)
    }
    self.init(uninitializedShape: shape)
    values.withUnsafeBufferPointer { src in
      withUnsafeMutableFloats { dst in _ = dst.initialize(from: src) }
    }
  }

  public var count: Int { shape.reduce(1, *) }
  public var rank: Int { shape.count }
  public var byteCount: Int { count * dtype.byteSize }

  public var description: String { "Tensor(\(dtype) \(shape))" }

  /// Raw bytes of the elements (read-only).
  public var rawPointer: UnsafeRawPointer { UnsafeRawPointer(storage.pointer + byteOffset) }

  /// Read access to Float32 elements. Precondition: `dtype == .float32`.
  @inlinable
  public func withUnsafeFloats<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
    precondition(dtype == .float32, "withUnsafeFloats on a \(dtype) tensor")
    let p = (storage.pointer + byteOffset).assumingMemoryBound(to: Float.self)
    return try body(UnsafeBufferPointer(start: p, count: count))
  }

  /// Write access to Float32 elements; copies the storage first if it is shared or borrowed.
  @inlinable
  public mutating func withUnsafeMutableFloats<R>(
    _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
  ) rethrows -> R {
    precondition(dtype == .float32, "withUnsafeMutableFloats on a \(dtype) tensor")
    makeUnique()
    let p = (storage.pointer + byteOffset).assumingMemoryBound(to: Float.self)
    return try body(UnsafeMutableBufferPointer(start: p, count: count))
  }

  /// Write access to the raw bytes; copies the storage first if it is shared or borrowed.
  public mutating func withUnsafeMutableRawPointer<R>(
    _ body: (UnsafeMutableRawPointer) throws -> R
  ) rethrows -> R {
    makeUnique()
    return try body(storage.pointer + byteOffset)
  }

  /// Pointer to Float32 elements for kernels that write into a tensor they just allocated.
  /// The caller guarantees nobody else observes the storage while writing.
  @inlinable
  public var mutableFloatPointer: UnsafeMutablePointer<Float> {
    precondition(dtype == .float32)
    return (storage.pointer + byteOffset).assumingMemoryBound(to: Float.self)
  }

  /// Pointer to Float32 elements (read-only use).
  @inlinable
  public var floatPointer: UnsafePointer<Float> {
    precondition(dtype == .float32, "floatPointer on a \(dtype) tensor")
    return UnsafePointer((storage.pointer + byteOffset).assumingMemoryBound(to: Float.self))
  }

  @usableFromInline
  mutating func makeUnique() {
    if isKnownUniquelyReferenced(&storage) && !storage.isBorrowed { return }
    let copy = TensorStorage(byteCount: byteCount)
    copy.pointer.copyMemory(from: storage.pointer + byteOffset, byteCount: byteCount)
    self = Tensor(shape: shape, dtype: dtype, storage: copy)
  }

  /// The same elements with another shape of equal element count (no copy).
  public func reshaped(_ newShape: [Int]) -> Tensor {
    var resolved = newShape
    if let inferred = newShape.firstIndex(of: -1) {
      let known = newShape.enumerated().filter { $0.offset != inferred }.map(\.element).reduce(1, *)
      resolved[inferred] = known == 0 ? 0 : count / known
    }
    precondition(
      resolved.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
    return Tensor(shape: resolved, dtype: dtype, storage: storage, byteOffset: byteOffset)
  }

  /// Rows `range` along the first dimension, as a view (no copy).
  public func slice(rows range: Range<Int>) -> Tensor {
    precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0])
    let rowBytes = shape.dropFirst().reduce(1, *) * dtype.byteSize
    var s = shape
    s[0] = range.count
    return Tensor(
      shape: s, dtype: dtype, storage: storage, byteOffset: byteOffset + range.lowerBound * rowBytes)
  }

  /// All elements converted to Float32 (a copy for every dtype, so the result may be mutated).
  public func toFloat32(pooled: Bool = true) -> Tensor {
    var out = Tensor(uninitializedShape: shape, pooled: pooled)
    let n = count
    let dst = out.mutableFloatPointer
    switch dtype {
    case .float32:
      dst.update(from: rawPointer.assumingMemoryBound(to: Float.self), count: n)
    case .float16:
      Convert.halfToFloat(rawPointer.assumingMemoryBound(to: UInt16.self), dst, count: n)
    case .bfloat16:
      Convert.bfloat16ToFloat(rawPointer.assumingMemoryBound(to: UInt16.self), dst, count: n)
    }
    out.shape = shape
    return out
  }

  /// Float32 view if the tensor already is Float32, else a converted copy.
  public func asFloat32(pooled: Bool = true) -> Tensor { dtype == .float32 ? self : toFloat32(pooled: pooled) }

  /// The elements converted to `target` (a new tensor; Float32 sources round to nearest even).
  public func converted(to target: DType) -> Tensor {
    if target == dtype { return self }
    let f = asFloat32()
    var out = Tensor(uninitializedShape: shape, dtype: target)
    let n = count
    out.withUnsafeMutableRawPointer { raw in
      let dst = raw.assumingMemoryBound(to: UInt16.self)
      switch target {
      case .float16: Convert.floatToHalf(f.floatPointer, dst, count: n)
      case .bfloat16: Convert.floatToBFloat16(f.floatPointer, dst, count: n)
      case .float32: break
      }
    }
    return out
  }

  /// For a view into a memory-mapped file: drops its pages from the resident set (they are read
  /// again from the file if needed). No effect on heap tensors.
  public func releaseResidentPages() {
    storage.releaseResidentPages(byteOffset: byteOffset, count: byteCount)
  }

  /// The elements as a Swift array of Float (converted from any dtype).
  public func scalars() -> [Float] {
    asFloat32().withUnsafeFloats { Array($0) }
  }
}
