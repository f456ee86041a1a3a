#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A contiguous block of bytes behind one or more tensors: either an aligned heap allocation owned
/// by this object, or a view into memory kept alive by `owner` (for example a memory-mapped
/// checkpoint file).
///
/// Large heap blocks are recycled through `StoragePool`: a denoising step allocates the same
/// activation sizes at every step, and reusing freed blocks avoids the page faults (and the
/// kernel's page clearing) of fresh allocations.
/// `@unchecked Sendable`: raw memory; tensors are values (copy on write), a storage is written only before it is shared.
public final class TensorStorage: @unchecked Sendable {
  /// Alignment of heap allocations: one AVX-512 register / cache line.
  public static let alignment = 64

  public let pointer: UnsafeMutableRawPointer
  public let byteCount: Int
  private let owner: AnyObject?
  private let ownsMemory: Bool
  /// Size of the underlying allocation (≥ `byteCount`; the pool's size class).
  private let capacity: Int
  private let pooled: Bool

  /// Allocates `byteCount` uninitialised bytes (64-byte aligned). `pooled: false` bypasses the
  /// recycling pool (one-off buffers such as weight conversions, so the pool does not keep them).
  public init(byteCount: Int, pooled: Bool = true) {
    let size = pooled ? StoragePool.sizeClass(max(byteCount, TensorStorage.alignment)) : max(byteCount, TensorStorage.alignment)
    self.pooled = pooled
    if pooled, let recycled = StoragePool.shared.take(size) {
      self.pointer = recycled
    } else {
      var raw: UnsafeMutableRawPointer? = nil
      let status = posix_memalign(&raw, TensorStorage.alignment, size)
      guard status == 0, let raw else {
        fatalError("TensorStorage: out of memory allocating \(byteCount) bytes")
      }
      self.pointer = raw
    }
    self.byteCount = byteCount
    self.capacity = size
    self.owner = nil
    self.ownsMemory = true
  }

  /// Wraps memory owned by someone else; `owner` is retained for the lifetime of this storage.
  public init(borrowing pointer: UnsafeMutableRawPointer, byteCount: Int, owner: AnyObject?) {
    self.pointer = pointer
    self.byteCount = byteCount
    self.capacity = byteCount
    self.pooled = false
    self.owner = owner
    self.ownsMemory = false
  }

  /// True when the bytes belong to a file mapping or another owner and must not be written.
  public var isBorrowed: Bool { !ownsMemory }

  /// For borrowed (memory-mapped) bytes: tells the kernel the pages of `range` are not needed any
  /// more, so they leave the resident set (a file mapping reloads them if they are read again).
  public func releaseResidentPages(byteOffset: Int, count: Int) {
    guard !ownsMemory, count > 0 else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = Int(bitPattern: pointer) + byteOffset
    let alignedStart = (start + page - 1) / page * page
    let end = (start + count) / page * page
    guard end > alignedStart else { return }
    _ = madvise(UnsafeMutableRawPointer(bitPattern: alignedStart), end - alignedStart, MADV_DONTNEED)
  }

  deinit {
    if ownsMemory, !(pooled && StoragePool.shared.give(pointer, size: capacity)) { free(pointer) }
  }
}

/// Recycles large freed tensor blocks by size class (bounded; least recently freed evicted first).
/// `@unchecked Sendable`: its free lists are guarded by its lock.
final class StoragePool: @unchecked Sendable {
  static let shared = StoragePool()
  /// Blocks below this size go straight back to malloc.
  static let minimumSize = 256 * 1024
  /// Upper bound on the bytes the pool keeps.
  static let limit = 512 * 1024 * 1024

  private var free: [Int: [UnsafeMutableRawPointer]] = [:]
  private var order: [(size: Int, pointer: UnsafeMutableRawPointer)] = []
  private var held = 0
  private let lock = KernelLock()

  /// Sizes are rounded up to 64 KiB so that near-identical requests share a class.
  static func sizeClass(_ bytes: Int) -> Int {
    bytes < minimumSize ? bytes : (bytes + 65_535) / 65_536 * 65_536
  }

  func take(_ size: Int) -> UnsafeMutableRawPointer? {
    guard size >= Self.minimumSize else { return nil }
    lock.lock()
    defer { lock.unlock() }
    guard var list = free[size], let p = list.popLast() else { return nil }
    free[size] = list
    held -= size
    if let i = order.lastIndex(where: { $0.pointer == p }) { order.remove(at: i) }
    return p
  }

  /// Frees every block the pool holds.
  func drain() {
    lock.lock()
    defer { lock.unlock() }
    for (_, p) in order { Glibc.free(p) }
    free = [:]
    order = []
    held = 0
  }

  /// Keeps `pointer` for reuse; false when the caller should free it.
  func give(_ pointer: UnsafeMutableRawPointer, size: Int) -> Bool {
    guard size >= Self.minimumSize, size <= Self.limit / 2 else { return false }
    lock.lock()
    defer { lock.unlock() }
    free[size, default: []].append(pointer)
    order.append((size, pointer))
    held += size
    while held > Self.limit, !order.isEmpty {
      let (s, p) = order.removeFirst()
      if var list = free[s], let i = list.firstIndex(of: p) {
        list.remove(at: i)
        free[s] = list
        held -= s
        Glibc.free(p)
      }
    }
    return true
  }
}
