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

/// URLSession (FoundationNetworking on Linux) driven through its delegate, so that redirects can be refused
/// (HEAD) and bodies streamed to a file as they arrive (GET), with async/await on top.
final class HTTPTransport: NSObject, URLSessionDataDelegate, @unchecked Sendable {
  private final class TaskState {
    let followRedirects: Bool
    let sink: ((HTTPStreamEvent) throws -> Void)?
    var status = 0
    var headers: [String: String] = [:]
    var body = Data()
    var sinkError: Error?
    var continuation: CheckedContinuation<TransportResponse, Error>?

    init(followRedirects: Bool, sink: ((HTTPStreamEvent) throws -> Void)?) {
      self.followRedirects = followRedirects
      self.sink = sink
    }
  }

  private let lock = NSLock()
  private var states: [Int: TaskState] = [:]
  private var session: URLSession!

  init(idleTimeout: TimeInterval) {
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
  func send(
    _ request: URLRequest, followRedirects: Bool, sink: ((HTTPStreamEvent) throws -> Void)? = nil
  ) async throws -> TransportResponse {
    let state = TaskState(followRedirects: followRedirects, sink: sink)
    let task = session.dataTask(with: request)
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { continuation in
        lock.withLock {
          state.continuation = continuation
          states[task.taskIdentifier] = state
        }
        task.resume()
      }
    } onCancel: {
      task.cancel()
    }
  }

  private func state(_ task: URLSessionTask) -> TaskState? {
    lock.withLock { states[task.taskIdentifier] }
  }

  func urlSession(
    _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void
  ) {
    guard let state = state(dataTask), let http = response as? HTTPURLResponse else {
      completionHandler(.allow)
      return
    }
    state.status = http.statusCode
    var headers: [String: String] = [:]
    for (key, value) in http.allHeaderFields {
      headers[String(describing: key).lowercased()] = String(describing: value)
    }
    state.headers = headers
    if let sink = state.sink, (200..<300).contains(http.statusCode) {
      do { try sink(.response(status: http.statusCode, headers: headers)) } catch {
        state.sinkError = error
        completionHandler(.cancel)
        return
      }
    }
    completionHandler(.allow)
  }

  func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
    guard let state = state(dataTask), state.sinkError == nil else { return }
    if let sink = state.sink, (200..<300).contains(state.status) {
      do { try sink(.data(data)) } catch {
        state.sinkError = error
        dataTask.cancel()
      }
    } else {
      state.body.append(data)
    }
  }

  func urlSession(
    _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void
  ) {
    guard let state = state(task), state.followRedirects else {
      completionHandler(nil)
      return
    }
    // Never carry the hub token to another host (a CDN's signed URL needs none).
    var next = request
    if request.url?.host != task.originalRequest?.url?.host || request.url?.port != task.originalRequest?.url?.port {
      next.setValue(nil, forHTTPHeaderField: "Authorization")
    }
    completionHandler(next)
  }

  func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
    let state = lock.withLock { states.removeValue(forKey: task.taskIdentifier) }
    guard let state, let continuation = state.continuation else { return }
    if let sinkError = state.sinkError {
      continuation.resume(throwing: sinkError)
    } else if let error {
      continuation.resume(throwing: error)
    } else {
      continuation.resume(
        returning: TransportResponse(
          status: state.status, headers: state.headers, body: state.body, url: task.currentRequest?.url))
    }
  }
}
