import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A cancellation flag for long synchronous work (encoders, the denoising loop, VAE decoding) that
/// runs on a compute thread rather than inside a Swift task, where `Task.isCancelled` is not
/// visible. The async API sets it from `withTaskCancellationHandler`; the work installs it as the
/// thread's *current* token and calls `CancellationToken.checkCurrent()` at its checkpoints (every
/// denoising step, every encoder layer, every VAE block), which throws `CancellationError`.
///
/// matches: Swift's `CancellationError`, which is what a cancelled generation throws.
/// Limitations: a checkpoint is reached every few hundred milliseconds at real sizes; a single
/// convolution is never interrupted.
public final class CancellationToken: Sendable {
  private let flag = Atomic<Bool>(false)

  public init() {}

  /// Requests cancellation (thread-safe, idempotent).
  public func cancel() { flag.store(true, ordering: .relaxed) }

  /// Whether cancellation was requested.
  public var isCancelled: Bool { flag.load(ordering: .relaxed) }

  /// Throws `CancellationError` when cancellation was requested.
  public func check() throws(CancellationError) {
    if isCancelled { throw CancellationError() }
  }

  /// Runs `body` with this token as the calling thread's current token (restoring the previous
  /// one afterwards).
  public func installed<T>(_ body: () throws -> T) rethrows -> T {
    let previous = Self.current
    Self.setCurrent(self)
    defer { Self.setCurrent(previous) }
    return try body()
  }

  /// The calling thread's current token, if any.
  public static var current: CancellationToken? {
    guard let raw = pthread_getspecific(key) else { return nil }
    return Unmanaged<CancellationToken>.fromOpaque(raw).takeUnretainedValue()
  }

  /// Throws `CancellationError` when the calling thread's current token was cancelled; free when
  /// there is none.
  public static func checkCurrent() throws(CancellationError) {
    try current?.check()
  }

  private static func setCurrent(_ token: CancellationToken?) {
    if let old = pthread_getspecific(key) { Unmanaged<CancellationToken>.fromOpaque(old).release() }
    pthread_setspecific(key, token.map { Unmanaged.passRetained($0).toOpaque() })
  }

  private static let key: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { raw in
      if let raw { Unmanaged<CancellationToken>.fromOpaque(raw).release() }
    }
    return key
  }()
}
