import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// An advisory exclusive `flock(2)` on a lock file, so that two processes (or two tasks: every acquisition opens
/// its own file description) never download the same blob at once.
///
/// matches: huggingface_hub 2.4.0 `WeakFileLock` (filelock's `UnixFileLock`): the file is created with mode 0o664 and
/// left in place after release (`.locks/models--org--name/<etag>.lock`). Limitations: on file systems where
/// `flock` silently succeeds for everyone (some NFS mounts) it protects nothing; waiting polls every 50 ms
/// rather than blocking a thread, and gives up only when the task is cancelled.
/// `@unchecked Sendable`: holds a file descriptor used by one task at a time (acquire/release pairs).
final class FileLock: @unchecked Sendable {
  private var fd: Int32 = -1
  let path: String

  private init(path: String) { self.path = path }

  /// Waits (asynchronously) until the lock is held.
  static func acquire(path: String) async throws -> FileLock {
    let lock = FileLock(path: path)
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o664)  // never a planted symlink's target
    guard fd >= 0 else {
      throw HubError.cache(nil, path: path, detail: "cannot open lock file: \(String(cString: strerror(errno)))")
    }
    _ = fchmod(fd, 0o664)  // like filelock: group-writable, whatever the umask
    lock.fd = fd
    while flock(fd, LOCK_EX | LOCK_NB) != 0 {
      let err = errno
      guard err == EWOULDBLOCK || err == EINTR else {
        close(fd)
        lock.fd = -1
        throw HubError.cache(nil, path: path, detail: "flock failed: \(String(cString: strerror(err)))")
      }
      do { try await Task.sleep(nanoseconds: 50_000_000) } catch {
        close(fd)
        lock.fd = -1
        throw error
      }
    }
    return lock
  }

  /// True if another holder has the lock right now (for tests and diagnostics).
  static func isHeld(path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    if flock(fd, LOCK_EX | LOCK_NB) == 0 {
      flock(fd, LOCK_UN)
      return false
    }
    return true
  }

  func release() {
    guard fd >= 0 else { return }
    flock(fd, LOCK_UN)
    close(fd)
    fd = -1
  }

  deinit { release() }
}
