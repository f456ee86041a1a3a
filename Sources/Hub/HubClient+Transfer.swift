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
  func resolveURL(_ loc: HubLocation) -> URL {
    let path = loc.file!.split(separator: "/").map { Self.quote(String($0)) }.joined(separator: "/")
    return URL(string: "\(configuration.endpoint)/\(loc.repoID)/resolve/\(Self.quote(loc.revision))/\(path)")!
  }

  static func quote(_ segment: String) -> String {
    var allowed = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0)..<Unicode.Scalar(128)))
    allowed.insert(charactersIn: "-._~")
    return segment.addingPercentEncoding(withAllowedCharacters: allowed) ?? segment
  }

  func hubRequest(_ url: URL, method: String, timeout: TimeInterval, auth: Bool = true) -> URLRequest {
    var request = URLRequest(url: url)
    request.httpMethod = method
    request.timeoutInterval = timeout
    request.setValue(configuration.userAgent, forHTTPHeaderField: "User-Agent")
    if auth, let token = configuration.token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
    return request
  }

  /// Same scheme, host and port (redirects within the hub keep the token; others lose it and are not followed
  /// by the metadata HEAD).
  static func sameOrigin(_ a: URL, _ b: URL) -> Bool {
    func port(_ u: URL) -> Int { u.port ?? (u.scheme == "https" ? 443 : 80) }
    return a.scheme?.lowercased() == b.scheme?.lowercased() && a.host?.lowercased() == b.host?.lowercased()
      && port(a) == port(b)
  }

  /// The typed error for a non-2xx/3xx answer, or nil if it is not an error.
  func classify(_ response: TransportResponse, _ loc: HubLocation) -> HubError? {
    let code = response.header("x-error-code")
    switch response.status {
    case 200..<400: return nil
    case 401, 403:
      return .accessDenied(loc, status: response.status, gated: code == "GatedRepo", tokenSent: configuration.token != nil)
    case 404:
      switch code {
      case "RepoNotFound": return .notFound(loc, missing: .repo, cached: false)
      case "RevisionNotFound": return .notFound(loc, missing: .revision, cached: false)
      default: return .notFound(loc, missing: loc.file == nil ? .repo : .file, cached: false)
      }
    default:
      let message = response.header("x-error-message") ?? String(decoding: response.body.prefix(200), as: UTF8.self)
      return .server(loc, status: response.status, detail: message.isEmpty ? "no details" : message)
    }
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
  /// answer, whatever its status, unless it is still a retryable failure after the last attempt (then throws).
  func send(
    _ request: URLRequest, _ loc: HubLocation, followRedirects: Bool, retry: Bool = true
  ) async throws(HubError) -> TransportResponse {
    var attempt = 0
    while true {
      attempt += 1
      let failure: HubError
      do {
        let response = try await transport.send(request, followRedirects: followRedirects)
        guard let typed = classify(response, loc), Self.isRetryable(typed) else { return response }
        failure = typed
      } catch {
        if Task.isCancelled { throw HubError.network(loc, detail: "cancelled") }
        failure = HubError.network(loc, detail: (error as NSError).localizedDescription)
      }
      if !retry || attempt >= configuration.maxAttempts { throw failure }
      await backoff(attempt)
    }
  }

  /// HEAD `/resolve/`: commit, etag, size and download URL (redirects followed while on the same host).
  func fileMetadata(_ loc: HubLocation, retry: Bool) async throws(HubError) -> FileMetadata {
    var url = resolveURL(loc)
    var response: TransportResponse?
    for _ in 0..<10 {
      var request = hubRequest(url, method: "HEAD", timeout: configuration.metadataTimeout)
      request.setValue("identity", forHTTPHeaderField: "Accept-Encoding")
      let answer = try await send(request, loc, followRedirects: false, retry: retry)
      if let error = classify(answer, loc) {
        if case .notFound(_, .file, _) = error, let commit = answer.header("x-repo-commit"), !commit.isEmpty {
          // Remember the 404 as huggingface_hub does (and the commit the revision points to).
          cache.markMissing(loc.repoID, file: loc.file!, commit: commit)
          try? cache.writeRef(loc.repoID, revision: loc.revision, commit: commit)
        }
        throw error
      }
      response = answer
      guard answer.isRedirect, let location = answer.header("location"),
        let target = URL(string: location, relativeTo: url)?.absoluteURL, Self.sameOrigin(url, target)
      else { break }
      url = target
    }
    guard let response else { throw HubError.protocolViolation(loc, detail: "no answer") }
    guard let commit = response.header("x-repo-commit"), !commit.isEmpty else {
      throw HubError.protocolViolation(
        loc, detail: "no X-Repo-Commit header: is HF_ENDPOINT (\(configuration.endpoint)) a Hugging Face hub?")
    }
    guard let rawEtag = response.header("x-linked-etag") ?? response.header("etag") else {
      throw HubError.protocolViolation(loc, detail: "no ETag header")
    }
    let etag = Self.normalizeEtag(rawEtag)
    guard !etag.isEmpty, !etag.contains("/"), etag != ".", etag != ".." else {
      throw HubError.protocolViolation(loc, detail: "unusable ETag '\(rawEtag)'")
    }
    let sizeText = response.header("x-linked-size") ?? (response.isRedirect ? nil : response.header("content-length"))
    var downloadURL = url
    if response.isRedirect, let location = response.header("location"),
      let target = URL(string: location, relativeTo: url)?.absoluteURL
    {
      downloadURL = target
    }
    return FileMetadata(commit: commit, etag: etag, size: sizeText.flatMap { Int64($0) }, downloadURL: downloadURL)
  }

  /// `W/"abc"` → `abc` (huggingface_hub's `_normalize_etag`).
  static func normalizeEtag(_ etag: String) -> String {
    var s = Substring(etag)
    if s.hasPrefix("W/") { s = s.dropFirst(2) }
    return s.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
  }
}
