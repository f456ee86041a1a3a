import FlyingFox
import FlyingSocks
import Foundation

@testable import Hub

/// A hub imitation on 127.0.0.1 (FlyingFox), serving tiny repos with the hub's public file protocol, the same
/// way tools/reference/gen_hub_fixtures.py does for huggingface_hub: `/resolve/` answers 302 to a "CDN" URL on
/// the host name `localhost` for LFS files (with X-Linked-Etag/X-Linked-Size), 200 with ETag = git blob id for
/// others, X-Repo-Commit always; Range; 401 + X-Error-Code: GatedRepo without the token; 404 with
/// X-Error-Code; `/api/models/{repo}/revision/{rev}`. It logs every request and can misbehave on demand (``Fault``):
/// wrong statuses, cut, corrupt, slow or endless bodies, extra or false headers, redirects anywhere. A repo's commit,
/// file names and `model_index.json` are served as given, so a test can make them hostile.
final class FakeHub: @unchecked Sendable {
  struct File: Sendable {
    var path: String
    var data: Data
    var lfs: Bool
    var sha256: String { Digest.hex(.sha256, data) }
    var pointer: Data {
      Data("version https://git-lfs.github.com/spec/v1\noid sha256:\(sha256)\nsize \(data.count)\n".utf8)
    }
    var blobID: String {
      let content = lfs ? pointer : data
      return Digest.hex(.sha1, Data("blob \(content.count)\0".utf8) + content)
    }
  }

  struct Repo: Sendable {
    var id: String
    var commit: String
    var refs: [String: String]
    var token: String?
    var files: [File]
  }

  /// One request as the server saw it.
  struct Logged: Sendable {
    var method: String
    var path: String
    var range: String?
    var authorization: String?
    var acceptEncoding: String?
  }

  /// Ways to misbehave for requests whose path contains `match`, `times` times.
  enum Fault: Sendable {
    case status(Int)  // answer this status instead
    case cut(afterBytes: Int)  // send Content-Length of the whole body, then close after this many bytes
    case corrupt  // flip the bytes of the body (same size)
    case ignoreRange  // answer 200 with the whole body to a Range request
    case slow(chunk: Int, delayMs: Int)  // stream the body in chunks with pauses (not consumed: times ignored)
    case headers([String: String])  // add (or replace) these headers in the answer (HEAD or GET)
    /// Answer 302 to `to`; a /resolve/ answer keeps the file's X-Repo-Commit, X-Linked-Etag and X-Linked-Size.
    case redirect(to: String)
    case body(status: Int, data: Data)  // answer this status and body instead (GET)
    /// Answer `status` with an endless body (GET), chunked or with this Content-Length; bytes sent are counted in
    /// `endlessBytesSent`.
    case endless(status: Int, declaredLength: Int?)
    /// Answer (HEAD or GET) as `/resolve/` would for this file of this repo at its commit, whatever the path asked
    /// (a hostile hub answering the dot-segment-normalised path a client sends for `a/../../x`).
    case serveAs(repoID: String, file: String)

    /// Faults that replace the whole answer (checked first).
    var replacesAnswer: Bool {
      switch self {
      case .status, .redirect, .body, .endless, .serveAs: true
      default: false
      }
    }
    var isHeaders: Bool {
      if case .headers = self { return true }
      return false
    }
  }

  private let lock = NSLock()
  private var repos: [String: Repo] = [:]
  private var faults: [(match: String, fault: Fault, remaining: Int, method: String?)] = []
  let endlessCounter = ByteCounter()
  var endlessBytesSent: Int { endlessCounter.value }
  private var requestLog: [Logged] = []
  private var server: HTTPServer!
  private var task: Task<Void, Error>?
  private(set) var port: UInt16 = 0

  var endpoint: String { "http://127.0.0.1:\(port)" }

  static func start(repos: [Repo]) async throws -> FakeHub {
    let hub = FakeHub()
    for repo in repos { hub.repos[repo.id] = repo }
    let server = HTTPServer(
      address: try sockaddr_in.inet(ip4: "127.0.0.1", port: 0), timeout: 60, logger: .disabled,
      handler: Handler(hub: hub))
    hub.server = server
    hub.task = Task { try await server.run() }
    try await server.waitUntilListening()
    guard case .ip4(_, let port) = await server.listeningAddress else { throw CocoaError(.fileNoSuchFile) }
    hub.port = port
    return hub
  }

  func stop() async {
    await server.stop(timeout: 1)
    task?.cancel()
  }

  var log: [Logged] { lock.withLock { requestLog } }
  func resetLog() { lock.withLock { requestLog.removeAll() } }
  func count(_ method: String, containing text: String = "") -> Int {
    log.filter { $0.method == method && (text.isEmpty || $0.path.contains(text)) }.count
  }

  /// Adds a fault for requests whose path contains `match` (and whose method is `method`, when given).
  func inject(_ fault: Fault, matching match: String, times: Int = 1, method: String? = nil) {
    lock.withLock { faults.append((match, fault, times, method)) }
  }

  /// The next fault of a kind for this request: answer-replacing faults (`.status`, `.redirect` for HEADs and GETs,
  /// `.body`, `.endless` for GETs) are checked first; `.headers` apply to any answer; body faults only to GETs.
  private enum Phase { case answer, headers, body }
  private func takeFault(for path: String, method: String, phase: Phase) -> Fault? {
    lock.withLock {
      guard
        let i = faults.firstIndex(where: { entry in
          guard path.contains(entry.match), entry.remaining > 0, entry.method.map({ $0 == method }) ?? true else {
            return false
          }
          switch phase {
          case .answer:
            switch entry.fault {
            case .status, .redirect, .serveAs: return true
            case .body, .endless: return method == "GET"
            default: return false
            }
          case .headers: return entry.fault.isHeaders
          case .body: return !entry.fault.replacesAnswer && !entry.fault.isHeaders && method == "GET"
          }
        })
      else { return nil }
      let fault = faults[i].fault
      if case .slow = fault { return fault }
      faults[i].remaining -= 1
      return fault
    }
  }

  private struct Handler: HTTPHandler {
    let hub: FakeHub
    func handleRequest(_ request: HTTPRequest) async throws -> HTTPResponse {
      var response = hub.handle(request)
      if case .headers(let extra)? = hub.takeFault(for: request.path, method: request.method.rawValue, phase: .headers) {
        for (name, value) in extra { response.headers[HTTPHeader(name)] = value }
      }
      return response
    }
  }

  // MARK: routing

  private func handle(_ request: HTTPRequest) -> HTTPResponse {
    let path = request.path
    let query = request.query.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
    let method = request.method.rawValue
    lock.withLock {
      requestLog.append(
        Logged(
          method: method, path: query.isEmpty ? path : path + "?" + query, range: request.headers[.range],
          authorization: request.headers[.authorization], acceptEncoding: request.headers[HTTPHeader("Accept-Encoding")]))
    }
    let head = method == "HEAD"
    let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    switch takeFault(for: path, method: method, phase: .answer) {
    case .status(let status)?:
      return error(status, "ServerError", head: head)
    case .redirect(let target)?:
      var headers: HTTPHeaders = [.location: target, .contentLength: "0"]
      if parts.count >= 6, parts[3] == "resolve",
        case .success(let (repo, commit)) = access(parts[1] + "/" + parts[2], parts[4], request, head: head),
        let file = repo.files.first(where: { $0.path == parts[5...].joined(separator: "/") })
      {
        headers[HTTPHeader("X-Repo-Commit")] = commit
        headers[HTTPHeader("X-Linked-Etag")] = "\"\(file.lfs ? file.sha256 : file.blobID)\""
        headers[HTTPHeader("X-Linked-Size")] = String(file.data.count)
      }
      return HTTPResponse(statusCode: .found, headers: headers)
    case .body(let status, let data)?:
      return HTTPResponse(statusCode: HTTPStatusCode(status, phrase: "Fault"), headers: [.contentType: "application/json"], body: data)
    case .serveAs(let repoID, let file)?:
      return resolve(repoID: repoID, revision: repos[repoID]?.commit ?? "", file: file, request: request, head: head)
    case .endless(let status, let declared)?:
      let body = EndlessBody(counter: endlessCounter)
      return HTTPResponse(
        statusCode: HTTPStatusCode(status, phrase: "Fault"), headers: [.contentType: "application/json"],
        body: declared.map { HTTPBodySequence(from: body, count: $0) } ?? HTTPBodySequence(from: body))
    default:
      break
    }
    if parts.count == 3, parts[1] == "cdn" {
      let sha = parts[2]
      guard let file = repos.values.flatMap(\.files).first(where: { $0.lfs && $0.sha256 == sha }) else {
        return error(404, "EntryNotFound", head: head)
      }
      return body(file.data, request: request, head: head, headers: [.eTag: "\"\(sha)\""])
    }
    if parts.count >= 6, parts[1] == "api", parts[2] == "models", parts[5] == "revision" {
      let revision = parts[6...].joined(separator: "/")
      return api(repoID: parts[3] + "/" + parts[4], revision: revision, request: request)
    }
    if parts.count >= 6, parts[3] == "resolve" {
      return resolve(
        repoID: parts[1] + "/" + parts[2], revision: parts[4], file: parts[5...].joined(separator: "/"),
        request: request, head: head)
    }
    return error(404, "RepoNotFound", head: head)
  }

  private func access(_ repoID: String, _ revision: String, _ request: HTTPRequest, head: Bool) -> Result<
    (Repo, String), Failure
  > {
    guard let repo = repos[repoID] else { return .failure(Failure(error(404, "RepoNotFound", head: head))) }
    if let token = repo.token, request.headers[.authorization] != "Bearer \(token)" {
      return .failure(Failure(error(401, "GatedRepo", head: head)))
    }
    guard let commit = repo.refs[revision] ?? (revision == repo.commit ? revision : nil) else {
      return .failure(Failure(error(404, "RevisionNotFound", head: head)))
    }
    return .success((repo, commit))
  }

  struct Failure: Error, @unchecked Sendable {
    var response: HTTPResponse
    init(_ response: HTTPResponse) { self.response = response }
  }

  private func resolve(repoID: String, revision: String, file path: String, request: HTTPRequest, head: Bool)
    -> HTTPResponse
  {
    let (repo, commit): (Repo, String)
    switch access(repoID, revision, request, head: head) {
    case .failure(let failure): return failure.response
    case .success(let found): (repo, commit) = found
    }
    guard let file = repo.files.first(where: { $0.path == path }) else {
      return error(404, "EntryNotFound", head: head, extra: [HTTPHeader("X-Repo-Commit"): commit])
    }
    if file.lfs {
      var headers: HTTPHeaders = [
        .location: "http://localhost:\(port)/cdn/\(file.sha256)",
        HTTPHeader("X-Repo-Commit"): commit,
        HTTPHeader("X-Linked-Etag"): "\"\(file.sha256)\"",
        HTTPHeader("X-Linked-Size"): String(file.data.count),
        .eTag: "\"\(file.blobID)\"",
      ]
      headers[.contentLength] = "0"
      return HTTPResponse(statusCode: .found, headers: headers)
    }
    return body(
      file.data, request: request, head: head,
      headers: [HTTPHeader("X-Repo-Commit"): commit, .eTag: "\"\(file.blobID)\""])
  }

  private func api(repoID: String, revision: String, request: HTTPRequest) -> HTTPResponse {
    let (repo, commit): (Repo, String)
    switch access(repoID, revision, request, head: false) {
    case .failure(let failure): return failure.response
    case .success(let found): (repo, commit) = found
    }
    let blobs = request.query.contains { $0.name == "blobs" && $0.value.lowercased() == "true" }
    let siblings: [[String: Any]] = repo.files.map { f in
      var s: [String: Any] = ["rfilename": f.path]
      if blobs {
        s["size"] = f.data.count
        s["blobId"] = f.blobID
        if f.lfs { s["lfs"] = ["sha256": f.sha256, "size": f.data.count, "pointerSize": f.pointer.count] }
      }
      return s
    }
    let object: [String: Any] = ["id": repo.id, "modelId": repo.id, "sha": commit, "siblings": siblings]
    let data = try! JSONSerialization.data(withJSONObject: object)
    return body(data, request: request, head: false, headers: [:], contentType: "application/json")
  }

  private func error(_ status: Int, _ code: String, head: Bool, extra: HTTPHeaders = [:]) -> HTTPResponse {
    var headers = extra
    headers[HTTPHeader("X-Error-Code")] = code
    headers[.contentType] = "application/json"
    let data = Data("{\"error\": \"\(code)\"}".utf8)
    if head { headers[.contentLength] = String(data.count) }
    return HTTPResponse(statusCode: HTTPStatusCode(status, phrase: "Error"), headers: headers, body: head ? Data() : data)
  }

  /// 200 or 206 (for `Range: bytes=N-`), with the injected body fault if any.
  private func body(
    _ data: Data, request: HTTPRequest, head: Bool, headers: HTTPHeaders, contentType: String = "application/octet-stream"
  ) -> HTTPResponse {
    var headers = headers
    headers[.acceptRanges] = "bytes"
    headers[.contentType] = contentType
    var content = data
    var status = HTTPStatusCode.ok
    let fault = takeFault(for: request.path, method: request.method.rawValue, phase: .body)
    if let range = request.headers[.range], fault.map({ if case .ignoreRange = $0 { false } else { true } }) ?? true,
      range.hasPrefix("bytes="), range.hasSuffix("-"), let start = Int(range.dropFirst(6).dropLast()),
      start < data.count
    {
      content = data.subdata(in: start..<data.count)
      status = .partialContent
      headers[.contentRange] = "bytes \(start)-\(data.count - 1)/\(data.count)"
    }
    if head {
      headers[.contentLength] = String(content.count)
      return HTTPResponse(statusCode: status, headers: headers)
    }
    switch fault {
    case .cut(let after)?:
      return HTTPResponse(
        statusCode: status, headers: headers,
        body: HTTPBodySequence(from: ChunkedBody(data: content, chunk: 512, delayMs: 0, cutAfter: after), count: content.count))
    case .corrupt?:
      content = Data(content.map { $0 ^ 0x5A })
    case .slow(let chunk, let delayMs)?:
      return HTTPResponse(
        statusCode: status, headers: headers,
        body: HTTPBodySequence(from: ChunkedBody(data: content, chunk: chunk, delayMs: delayMs, cutAfter: nil), count: content.count))
    default: break
    }
    return HTTPResponse(statusCode: status, headers: headers, body: content)
  }
}

/// A body delivered in chunks, optionally with pauses, optionally failing (the connection closes) after N bytes.
struct ChunkedBody: AsyncBufferedSequence, Sendable {
  typealias Element = UInt8
  let data: Data
  let chunk: Int
  let delayMs: Int
  let cutAfter: Int?

  struct Cut: Error {}

  func makeAsyncIterator() -> Iterator { Iterator(body: self) }

  struct Iterator: AsyncBufferedIteratorProtocol {
    let body: ChunkedBody
    var index = 0

    mutating func next() async throws -> UInt8? {
      guard let buffer = try await nextBuffer(suggested: 1) else { return nil }
      return buffer.first
    }

    mutating func nextBuffer(suggested count: Int) async throws -> Data? {
      if let cut = body.cutAfter, index >= cut { throw Cut() }
      guard index < body.data.count else { return nil }
      if body.delayMs > 0 { try await Task.sleep(nanoseconds: UInt64(body.delayMs) * 1_000_000) }
      var end = Swift.min(body.data.count, index + Swift.min(count, body.chunk))
      if let cut = body.cutAfter { end = Swift.min(end, cut) }
      defer { index = end }
      return body.data.subdata(in: index..<end)
    }
  }
}

/// A thread-safe byte count.
final class ByteCounter: @unchecked Sendable {
  private let lock = NSLock()
  private var count = 0
  var value: Int { lock.withLock { count } }
  func add(_ n: Int) { lock.withLock { count += n } }
}

/// A body that never ends: 64 KiB chunks of spaces (valid JSON whitespace), counted as they are sent.
struct EndlessBody: AsyncBufferedSequence, Sendable {
  typealias Element = UInt8
  let counter: ByteCounter

  func makeAsyncIterator() -> Iterator { Iterator(counter: counter) }

  struct Iterator: AsyncBufferedIteratorProtocol {
    let counter: ByteCounter
    static let chunk = Data(repeating: UInt8(ascii: " "), count: 64 << 10)

    mutating func next() async throws -> UInt8? { UInt8(ascii: " ") }

    mutating func nextBuffer(suggested count: Int) async throws -> Data? {
      try Task.checkCancellation()
      let chunk = Self.chunk.prefix(Swift.max(1, Swift.min(count, Self.chunk.count)))
      counter.add(chunk.count)
      return Data(chunk)
    }
  }
}
