import Foundation

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif
#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

extension HubClient {
  /// `{endpoint}/{repo}/resolve/{revision}/{path}` with each segment percent-encoded as huggingface_hub's `quote`.
  func resolveURL(_ loc: HubLocation) throws(HubError) -> URL {
    let path = loc.file!.split(separator: "/").map { Self.quote(String($0)) }.joined(separator: "/")
    return try endpointURL("\(loc.repoID)/resolve/\(Self.quote(loc.revision))/\(path)", loc)
  }

  /// `{endpoint}/{relative}`, or a typed error when `HF_ENDPOINT` does not make an http(s) URL.
  func endpointURL(_ relative: String, _ loc: HubLocation) throws(HubError) -> URL {
    guard let url = URL(string: "\(configuration.endpoint)/\(relative)"),
      ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host?.isEmpty == false
    else {
      throw HubError.network(
        loc, detail: "HF_ENDPOINT '\(HubName.printable(configuration.endpoint))' is not an http(s) URL")
    }
    return url
  }

  static func quote(_ segment: String) -> String {
    var allowed = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0)..<Unicode.Scalar(128)))
    allowed.insert(charactersIn: "-._~")
    return segment.addingPercentEncoding(withAllowedCharacters: allowed) ?? segment
  }

  /// The endpoint as a URL (the token's only origin).
  var endpointOrigin: URL? { URL(string: configuration.endpoint) }

  /// True when the token may go to `url`: same scheme, host and port as `HF_ENDPOINT`.
  func tokenAllowed(for url: URL) -> Bool {
    guard configuration.token != nil, let origin = endpointOrigin else { return false }
    return HubWireFormat.sameOrigin(url, origin)
  }

  /// A request with the user agent, and `Authorization: Bearer` when the URL has the endpoint's origin.
  func hubRequest(_ url: URL, method: String, timeout: TimeInterval) -> URLRequest {
    var request = URLRequest(url: url)
    request.httpMethod = method
    request.timeoutInterval = timeout
    request.setValue(configuration.userAgent, forHTTPHeaderField: "User-Agent")
    if tokenAllowed(for: url), let token = configuration.token {
      request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
    }
    return request
  }

  /// Limits of a metadata request (HEAD, listing): an overall deadline, the listing cap for a 2xx body when
  /// `listing`, else the metadata cap.
  func metadataOptions(followRedirects: Bool, listing: Bool = false) -> RequestOptions {
    RequestOptions(
      followRedirects: followRedirects,
      maxBodyBytes: listing ? configuration.maxListingBytes : configuration.maxMetadataBodyBytes,
      maxErrorBodyBytes: configuration.maxMetadataBodyBytes, deadline: configuration.metadataDeadline)
  }

  /// The typed error for a non-2xx/3xx answer, or nil if it is not an error.
  func classify(_ response: TransportResponse, _ loc: HubLocation) -> HubError? {
    HubWireFormat.statusError(
      status: response.status, headers: response.headers, body: response.body, location: loc,
      tokenSent: response.url.map { tokenAllowed(for: $0) } ?? (configuration.token != nil))
  }

  /// The ``HubError`` for what the transport threw.
  func transportError(_ error: Error, _ loc: HubLocation) -> HubError {
    if Task.isCancelled { return .network(loc, detail: "cancelled") }
    switch error {
    case let failure as TransportFailure:
      switch failure {
      case .bodyTooLarge(let status, let limit):
        return .protocolViolation(
          loc, detail: "the answer (status \(status)) is larger than the \(Self.formatLimit(limit)) accepted for it")
      case .deadlineExceeded(let seconds):
        return .network(
          loc, detail: "no complete answer within \(Self.formatSeconds(seconds)) (a stalled or very slow server)")
      case .redirectRefused(let reason):
        return .protocolViolation(loc, detail: "redirect not followed: \(reason)")
      }
    case let hub as HubError:
      return hub
    default:
      return .network(loc, detail: (error as NSError).localizedDescription)
    }
  }

  static func formatLimit(_ bytes: Int) -> String {
    if bytes >= 1 << 20, bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
    if bytes >= 1 << 10, bytes % (1 << 10) == 0 { return "\(bytes >> 10) KiB" }
    return "\(bytes) bytes"
  }

  static func formatSeconds(_ seconds: TimeInterval) -> String {
    seconds == seconds.rounded() ? "\(Int(seconds)) s" : String(format: "%.1f s", seconds)
  }

  static func isRetryable(_ error: HubError) -> Bool {
    switch error {
    case .network: return true
    case .server(_, let status, _): return status >= 500 || status == 429 || status == 408
    default: return false
    }
  }

  func backoff(_ attempt: Int) async {
    let seconds = configuration.retryBackoff * pow(2, Double(max(0, attempt - 1)))
    try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
  }

  /// One request with retries on network errors, 5xx and 429 (`retry: false`: a single attempt). Returns the
  /// answer, whatever its status, unless it is still a retryable failure after the last attempt (then throws);
  /// the transport's own refusals (a body over its cap, a refused redirect) are thrown at once.
  func send(
    _ request: URLRequest, _ loc: HubLocation, options: RequestOptions, retry: Bool = true
  ) async throws(HubError) -> TransportResponse {
    var attempt = 0
    while true {
      attempt += 1
      let failure: HubError
      do {
        let response = try await transport.send(request, options: options)
        guard let typed = classify(response, loc), Self.isRetryable(typed) else { return response }
        failure = typed
      } catch {
        failure = transportError(error, loc)
        if Task.isCancelled || !Self.isRetryable(failure) { throw failure }
      }
      if !retry || attempt >= configuration.maxAttempts { throw failure }
      await backoff(attempt)
    }
  }

  /// HEAD `/resolve/`: commit, etag, size and download URL (redirects followed while on the same origin), as
  /// ``HubWireFormat/parseResolveHead(status:headers:requestURL:location:tokenSent:)`` reads them. A 404 for the file
  /// is remembered in `.no_exist` (with the revision's ref), as huggingface_hub does.
  func fileMetadata(_ loc: HubLocation, retry: Bool) async throws(HubError) -> FileMetadata {
    var url = try resolveURL(loc)
    for _ in 0..<10 {
      var request = hubRequest(url, method: "HEAD", timeout: configuration.metadataTimeout)
      request.setValue("identity", forHTTPHeaderField: "Accept-Encoding")
      let answer = try await send(request, loc, options: metadataOptions(followRedirects: false), retry: retry)
      switch try HubWireFormat.parseResolveHead(
        status: answer.status, headers: answer.headers, requestURL: url, location: loc,
        tokenSent: tokenAllowed(for: url))
      {
      case .redirect(let next):
        url = next
      case .file(let metadata):
        return metadata
      case .missing(let commit):
        if let commit {
          cache.markMissing(loc.repoID, file: loc.file!, commit: commit)
          try? cache.writeRef(loc.repoID, revision: loc.revision, commit: commit)
        }
        throw HubError.notFound(loc, missing: .file, cached: false)
      }
    }
    throw HubError.protocolViolation(loc, detail: "more than 10 redirects within \(HubWireFormat.origin(url))")
  }
}
