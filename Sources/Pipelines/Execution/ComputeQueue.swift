import Dispatch
import TensorCore

/// The serial queue a pipeline computes on: one generation (or encoding, or decoding) at a time,
/// in the order the calls arrive, off Swift's cooperative thread pool (the work is long and
/// blocking; the kernels use their own threads).
///
/// Async calls suspend until their turn and honour `Task` cancellation: cancelling the task sets
/// a `CancellationToken` that the work checks at every denoising step, encoder layer and VAE block
/// (`CancellationToken.checkCurrent()`), which then throws `CancellationError`. Synchronous calls
/// wait for their turn on the calling thread.
///
/// matches: no reference (diffusers pipelines are not thread-safe and say so; this makes the rule
/// enforced rather than documented).
struct ComputeQueue: Sendable {
  private let queue: DispatchQueue

  init(label: String) {
    queue = DispatchQueue(label: label, qos: .userInitiated)
  }

  /// Runs `body` on the queue and waits for it on the calling thread.
  func sync<T>(_ body: () throws -> T) rethrows -> T {
    try queue.sync(execute: body)
  }

  /// Runs `body` on the queue, suspending the calling task until it is done; cancelling the task
  /// cancels the work at its next checkpoint (or before it starts).
  func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    let token = CancellationToken()
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
        queue.async {
          guard !token.isCancelled else {
            continuation.resume(throwing: CancellationError())
            return
          }
          continuation.resume(with: Result { try token.installed(body) })
        }
      }
    } onCancel: {
      token.cancel()
    }
  }

  /// Runs `body` on a new private queue (work not tied to a pipeline, such as loading one).
  static func detached<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await ComputeQueue(label: "ipadapter.load").run(body)
  }
}
