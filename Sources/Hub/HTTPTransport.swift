import Foundation

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// A response: status, headers (keys lower-cased) and the body when it was not streamed to a sink.
struct TransportResponse: Sendable {
  var status: Int
  var headers: [String: String]
  var body: Data
  var url: URL?

  func header(_ name: String) -> String? { headers[name.lowercased()] }
  var isRedirect: Bool { (300..<400).contains(status) && header("location") != nil }
}

/// What a streaming request reports: the response head once, then body chunks (only for 2xx answers).
enum HTTPStreamEvent {
  case response(status: Int, headers: [String: String])
  case data(Data)
}

/// Why the transport stopped a request on its own.
enum TransportFailure: Error, Equatable {
  /// A body kept in memory passed its limit (the transfer was cancelled right there).
  case bodyTooLarge(status: Int, limit: Int)
  /// The request's overall deadline passed (however steadily bytes were arriving).
  case deadlineExceeded(seconds: TimeInterval)
  /// A redirect that may not be followed (not http(s), or too many).
  case redirectRefused(String)
}

/// Per-request limits.
struct RequestOptions: Sendable {
  /// Follow redirects (GET) or return a 3xx as the answer (the metadata HEAD).
  var followRedirects: Bool
  /// The largest 2xx body kept in memory (ignored for a 2xx body streamed to a sink).
  var maxBodyBytes: Int
  /// The largest non-2xx body kept in memory.
  var maxErrorBodyBytes: Int
  /// Seconds the whole request may take, or nil for no limit beyond the idle timeout.
  var deadline: TimeInterval?
}

/// URLSession (FoundationNetworking on Linux) driven through its delegate, so that redirects can be refused
/// (HEAD) and bodies streamed to a file as they arrive (GET), with async/await on top.
///
/// Against a hostile server: bodies kept in memory are capped (checked against `Content-Length` up front, then as
/// bytes arrive; the task is cancelled as soon as a cap is passed); a request can have an overall deadline; redirects
/// go only to http(s) URLs, at most 10; `Authorization` survives a redirect only to the token's origin (the hub
/// endpoint's scheme, host and port) and never from https to http. Response headers are bounded by libcurl (7.88:
/// a header line over 100 KiB fails the transfer as "Out of memory", more than 300 KiB of headers as "Too large
/// response headers"; both reach the caller as a ``HubError/network(_:detail:)``, no crash, no hang).
/// `@unchecked Sendable`: URLSession delegate; its per-task state is guarded by its lock.
final class HTTPTransport: NSObject, URLSessionDataDelegate, @unchecked Sendable {
  /// The state of one task, written by the delegate callbacks and the deadline timer, read when it completes.
  /// `@unchecked Sendable`: its mutable fields are only touched under the transport's lock.
  private final class TaskState: @unchecked Sendable {
    let options: RequestOptions
    let isHead: Bool
    let sink: ((HTTPStreamEvent) throws -> Void)?
    var status = 0
    var headers: [String: String] = [:]
    var body = Data()
    var redirects = 0
    var failure: Error?
    /// Set by `didCompleteWithError` before it resumes `continuation`.
    var outcome: Result<TransportResponse, Error>?
    var continuation: CheckedContinuation<Void, Never>?

    init(options: RequestOptions, isHead: Bool, sink: ((HTTPStreamEvent) throws -> Void)?) {
      self.options = options
      self.isHead = isHead
      self.sink = sink
    }

    /// The cap on the body kept in memory for the current status (nil: streamed to the sink).
    var bodyLimit: Int? {
      let ok = (200..<300).contains(status)
      if ok && sink != nil { return nil }
      return ok ? options.maxBodyBytes : options.maxErrorBodyBytes
    }
  }

  private let lock = NSLock()
  private var states: [Int: TaskState] = [:]
  private var session: URLSession!
  /// The only origin `Authorization` may be carried to across a redirect.
  let tokenOrigin: URL?

  init(idleTimeout: TimeInterval, tokenOrigin: URL?) {
    self.tokenOrigin = tokenOrigin
    super.init()
    let configuration = URLSessionConfiguration.ephemeral
    configuration.timeoutIntervalForRequest = idleTimeout
    configuration.timeoutIntervalForResource = 7 * 24 * 3600
    configuration.httpMaximumConnectionsPerHost = 8
    configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
    configuration.urlCache = nil
    configuration.httpCookieStorage = nil
    let queue = OperationQueue()
    queue.maxConcurrentOperationCount = 1
    session = URLSession(configuration: configuration, delegate: self, delegateQueue: queue)
  }

  func invalidate() { session.finishTasksAndInvalidate() }

  /// Sends `request`; with a `sink`, a 2xx body goes to the sink chunk by chunk instead of into the response.
  /// Throws ``TransportFailure``, the sink's error, or URLSession's.
  func send(
    _ request: URLRequest, options: RequestOptions, sink: ((HTTPStreamEvent) throws -> Void)? = nil
  ) async throws -> TransportResponse {
    let state = TaskState(options: options, isHead: request.httpMethod == "HEAD", sink: sink)
    let task = session.dataTask(with: request)
    await withTaskCancellationHandler {
      await withCheckedContinuation { continuation in
        lock.withLock {
          state.continuation = continuation
          states[task.taskIdentifier] = state
        }
        if let deadline = options.deadline {
          DispatchQueue.global().asyncAfter(deadline: .now() + deadline) { [weak self, weak task] in
            guard let self, let task else { return }
            self.fail(task, state, TransportFailure.deadlineExceeded(seconds: deadline), fromDelegateQueue: false)
          }
        }
        task.resume()
      }
    } onCancel: {
      fail(task, state, CancellationError(), fromDelegateQueue: false)
    }
    // The outcome is taken under the lock rather than passed through the continuation: a continuation
    // resumed before its task has suspended hands its value over through the concurrency runtime's
    // atomics, an order ThreadSanitizer cannot see (it then reports the delegate's writes of the
    // headers as racing with the caller's reads).
    switch lock.withLock({ state.outcome }) {
    case .success(let response)?: return response
    case .failure(let error)?: throw error
    case nil: throw CancellationError()  // (never: the continuation is resumed only after the outcome is set)
    }
  }

  private func state(_ task: URLSessionTask) -> TaskState? {
    lock.withLock { states[task.taskIdentifier] }
  }

  /// Records the first failure of a task and (unless `cancel` is false) cancels it. Always on the delegate queue:
  /// FoundationNetworking traps ("Received callback for HTTP redirection, but we're not waiting for it") when a task
  /// is cancelled while it waits for the redirect delegate's answer, so a cancellation and a redirect decision must
  /// never interleave; the redirect delegate does not answer for a task that has failed.
  private func fail(
    _ task: URLSessionTask, _ state: TaskState, _ error: Error, cancel: Bool = true, fromDelegateQueue: Bool = true
  ) {
    let record: @Sendable () -> Void = { [self] in
      let first = lock.withLock { () -> Bool in
        guard state.failure == nil else { return false }
        state.failure = error
        return true
      }
      if first && cancel { task.cancel() }
    }
    if fromDelegateQueue { record() } else { session.delegateQueue.addOperation(record) }
  }

  func urlSession(
    _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void
  ) {
    guard let state = state(dataTask), let http = response as? HTTPURLResponse else {
      completionHandler(.allow)
      return
    }
    var headers: [String: String] = [:]
    for (key, value) in http.allHeaderFields {
      headers[String(describing: key).lowercased()] = String(describing: value)
    }
    let limit = lock.withLock { () -> Int? in
      state.status = http.statusCode
      state.headers = headers
      return state.isHead ? nil : state.bodyLimit
    }
    if let limit, http.expectedContentLength > Int64(limit) {
      fail(dataTask, state, TransportFailure.bodyTooLarge(status: http.statusCode, limit: limit))
      completionHandler(.cancel)  // (FoundationNetworking's .cancel alone keeps reading the whole body)
      return
    }
    if let sink = state.sink, (200..<300).contains(http.statusCode) {
      do { try deliver(.response(status: http.statusCode, headers: headers), to: sink) } catch {
        fail(dataTask, state, error)
        completionHandler(.cancel)
        return
      }
    }
    completionHandler(.allow)
  }

  /// What a body chunk is for.
  private enum ChunkFate {
    case dropped, kept, streamed
    case overflow(status: Int, limit: Int)
  }

  func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
    guard let state = state(dataTask) else { return }
    let fate = lock.withLock { () -> ChunkFate in
      guard state.failure == nil else { return .dropped }
      guard let limit = state.bodyLimit else { return state.sink == nil ? .dropped : .streamed }
      guard state.body.count + data.count <= limit else { return .overflow(status: state.status, limit: limit) }
      state.body.append(data)
      return .kept
    }
    switch fate {
    case .dropped, .kept: break
    case .overflow(let status, let limit):
      fail(dataTask, state, TransportFailure.bodyTooLarge(status: status, limit: limit))
    case .streamed:
      do { try deliver(.data(data), to: state.sink!) } catch { fail(dataTask, state, error) }
    }
  }

  /// Calls the sink, then passes through the lock: everything the sink wrote (the caller's file, its counters)
  /// happens-before `didCompleteWithError`, which takes the lock before resuming the caller — an order
  /// ThreadSanitizer could not otherwise see (the delegate queue is an `OperationQueue` of uninstrumented
  /// corelibs Foundation, whose one-at-a-time order it does not know about).
  private func deliver(_ event: HTTPStreamEvent, to sink: (HTTPStreamEvent) throws -> Void) throws {
    defer { lock.withLock {} }
    try sink(event)
  }

  func urlSession(
    _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void
  ) {
    guard let state = state(task) else {
      completionHandler(nil)
      return
    }
    let (failed, redirects) = lock.withLock { (state.failure != nil, state.redirects) }
    if failed { return }  // being cancelled: answering now would trap (see `fail`)
    guard state.options.followRedirects else {
      completionHandler(nil)  // the 3xx itself is the answer
      return
    }
    do {
      let next = try Self.redirectedRequest(
        request, from: response.url ?? task.currentRequest?.url, tokenOrigin: tokenOrigin, redirects: redirects)
      lock.withLock { state.redirects += 1 }
      completionHandler(next)
    } catch {
      fail(task, state, error, cancel: false)  // the 3xx ends the task; its failure is this refusal
      completionHandler(nil)
    }
  }

  /// The request to send for a redirect from `previous` (the answer's URL): only to http(s), at most 10 in a row,
  /// and without `Authorization` unless it stays on `tokenOrigin` and does not go from https to http.
  static func redirectedRequest(_ request: URLRequest, from previous: URL?, tokenOrigin: URL?, redirects: Int)
    throws(TransportFailure) -> URLRequest
  {
    guard redirects < 10 else { throw TransportFailure.redirectRefused("more than 10 redirects") }
    guard let url = request.url, let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
      url.host?.isEmpty == false
    else {
      throw TransportFailure.redirectRefused(
        "a redirect to '\(HubName.printable(request.url?.absoluteString ?? ""))', not an http(s) URL")
    }
    var next = request
    let downgrade = previous?.scheme?.lowercased() == "https" && scheme == "http"
    if downgrade || !(tokenOrigin.map { HubWireFormat.sameOrigin(url, $0) } ?? false) {
      next.setValue(nil, forHTTPHeaderField: "Authorization")
    }
    return next
  }

  func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
    let url = task.currentRequest?.url
    let continuation = lock.withLock { () -> CheckedContinuation<Void, Never>? in
      guard let state = states.removeValue(forKey: task.taskIdentifier) else { return nil }
      if let failure = state.failure {
        state.outcome = .failure(failure)
      } else if let error {
        state.outcome = .failure(error)
      } else {
        state.outcome = .success(
          TransportResponse(status: state.status, headers: state.headers, body: state.body, url: url))
      }
      return state.continuation
    }
    continuation?.resume()
  }
}
