import Dispatch
import Foundation
import Synchronization
import TensorCore

/// The serial queue a pipeline computes on: one generation (or encoding, or decoding) at a time,
/// in the order the calls arrive, off Swift's cooperative thread pool (the work is long and
/// blocking; the kernels use their own threads).
///
/// Async calls suspend until their turn and honour `Task` cancellation: cancelling the task sets
/// a `CancellationToken` that the work checks at every denoising step, encoder layer and VAE block
/// (`CancellationToken.checkCurrent()`), which then throws `CancellationError`. Synchronous calls
/// wait for their turn on the calling thread; a synchronous call made from work already running on
/// the queue (a progress callback calling `decode`, say) runs inline instead of deadlocking.
///
/// matches: no reference (diffusers pipelines are not thread-safe and say so; this makes the rule
/// enforced rather than documented).
struct ComputeQueue: Sendable {
  private let queue: DispatchQueue
  /// This queue's number, set as the queue's specific value under `Self.key`.
  private let id: Int

  /// Marks the threads running a queue's work (written once per queue, before it runs anything).
  private static let key = DispatchSpecificKey<Int>()
  private static let counter = Atomic<Int>(0)

  init(label: String) {
    queue = DispatchQueue(label: label, qos: .userInitiated)
    id = Self.counter.add(1, ordering: .relaxed).newValue
    queue.setSpecific(key: Self.key, value: id)
  }

  /// Runs `body` on the queue and waits for it on the calling thread (inline when the caller is
  /// already running on this queue).
  func sync<T>(_ body: () throws -> T) rethrows -> T {
    if DispatchQueue.getSpecific(key: Self.key) == id { return try body() }
    return try queue.sync(execute: body)
  }

  /// Runs `body` on the queue, suspending the calling task until it is done; cancelling the task
  /// cancels the work at its next checkpoint (or before it starts).
  func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    let token = CancellationToken()
    let outcome = Outcome<T>()
    await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        queue.async {
          outcome.set(token.isCancelled ? .failure(CancellationError()) : Result { try token.installed(body) })
          continuation.resume()
        }
      }
    } onCancel: {
      token.cancel()
    }
    return try outcome.take().get()
  }

  /// The result of a `run`, handed over under a lock rather than through the continuation: a
  /// continuation resumed before its task has suspended passes its value through the concurrency
  /// runtime's atomics, an order ThreadSanitizer cannot see (it would report the work's writes to
  /// the result's storage as racing with the caller's reads).
  private final class Outcome<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<T, Error>?

    func set(_ value: Result<T, Error>) { lock.withLock { result = value } }

    func take() -> Result<T, Error> {
      lock.withLock { result ?? .failure(CancellationError()) }  // (always set before the resumption)
    }
  }

  /// Runs `body` on a new private queue (work not tied to a pipeline, such as loading one).
  static func detached<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await ComputeQueue(label: "ipadapter.load").run(body)
  }
}
