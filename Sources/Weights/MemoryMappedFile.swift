#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A whole regular file mapped read-only into memory (`mmap(PROT_READ, MAP_PRIVATE)`), unmapped
/// when the last reference goes away. Tensor views borrow its bytes and keep it alive as their
/// storage's owner.
///
/// The file is opened with `O_NONBLOCK` and must be a regular file, so FIFOs and devices fail
/// instead of hanging. Limitation: if another process truncates the file while it is mapped,
/// touching the vanished pages raises SIGBUS (inherent to mmap); replace files by rename instead,
/// as `SafeTensorsWriter` does.
/// `@unchecked Sendable`: a read-only mapping, unmapped only in deinit.
public final class MemoryMappedFile: @unchecked Sendable {
  /// The path the file was opened with.
  public let path: String
  /// First byte of the mapping (a valid, never-dereferenced address for an empty file).
  public let baseAddress: UnsafeRawPointer
  /// File size in bytes.
  public let byteCount: Int
  private let isMapped: Bool

  /// The mapped bytes.
  public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: baseAddress, count: byteCount) }

  /// Maps `path`; throws `SafeTensorsError.io` / `.notARegularFile` naming the path.
  public init(path: String) throws(SafeTensorsError) {
    self.path = path
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { throw Self.ioError(path, "open") }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw Self.ioError(path, "fstat") }
    guard (info.st_mode & S_IFMT) == S_IFREG else { throw .notARegularFile(path: path) }
    let size = Int(info.st_size)
    guard size > 0 else {
      // mmap rejects length 0; an empty file has no bytes to view.
      baseAddress = UnsafeRawPointer(bitPattern: 8)!
      byteCount = 0
      isMapped = false
      return
    }
    guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), address != MAP_FAILED else {
      throw Self.ioError(path, "mmap")
    }
    baseAddress = UnsafeRawPointer(address)
    byteCount = size
    isMapped = true
  }

  deinit {
    if isMapped { munmap(UnsafeMutableRawPointer(mutating: baseAddress), byteCount) }
  }

  static func ioError(_ path: String, _ operation: String) -> SafeTensorsError {
    .io(path: path, operation: operation, reason: String(cString: strerror(errno)))
  }
}
