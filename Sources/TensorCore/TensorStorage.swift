#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A contiguous block of bytes behind one or more tensors: either an aligned heap allocation owned
/// by this object, or a view into memory kept alive by `owner` (for example a memory-mapped
/// checkpoint file).
public final class TensorStorage: @unchecked Sendable {
  /// Alignment of heap allocations: one AVX-512 register / cache line.
  public static let alignment = 64

  public let pointer: UnsafeMutableRawPointer
  public let byteCount: Int
  private let owner: AnyObject?
  private let ownsMemory: Bool

  /// Allocates `byteCount` uninitialised bytes (64-byte aligned).
  public init(byteCount: Int) {
    var raw: UnsafeMutableRawPointer? = nil
    let size = max(byteCount, TensorStorage.alignment)
    let status = posix_memalign(&raw, TensorStorage.alignment, size)
    guard status == 0, let raw else {
      fatalError("TensorStorage: out of memory allocating \(byteCount) bytes")
    }
    self.pointer = raw
    self.byteCount = byteCount
    self.owner = nil
    self.ownsMemory = true
  }

  /// Wraps memory owned by someone else; `owner` is retained for the lifetime of this storage.
  public init(borrowing pointer: UnsafeMutableRawPointer, byteCount: Int, owner: AnyObject?) {
    self.pointer = pointer
    self.byteCount = byteCount
    self.owner = owner
    self.ownsMemory = false
  }

  /// True when the bytes belong to a file mapping or another owner and must not be written.
  public var isBorrowed: Bool { !ownsMemory }

  deinit {
    if ownsMemory { free(pointer) }
  }
}
