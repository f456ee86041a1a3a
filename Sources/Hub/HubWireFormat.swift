import Foundation

/// The parsing of everything the client reads from a hub server or from the cache's `trees/` files, as pure functions
/// of bytes and headers (no network, no disk), so that they can be tested and fuzzed alone. The client calls these
/// and nothing else to interpret an answer; every name they return has passed ``HubName``'s rules, so a hostile
/// server (or `HF_ENDPOINT` mirror) is reported as a ``HubError/protocolViolation(_:detail:)`` naming the repo, the
/// file and the bad value instead of reaching a cache path.
///
/// matches: huggingface_hub 2.4.0 `get_hf_file_metadata` / `_normalize_etag` / `_int_or_none` (the HEAD answer),
/// `HfApi.model_info(files_metadata=True)` siblings (the file listing), `_tree_cache.py` (`trees/<commit>.json`,
/// format 1) and diffusers 0.42.1 `DiffusionPipeline.download`'s reading of `model_index.json`'s component keys.
/// Limitations: stricter than huggingface_hub, which takes commit ids, sizes and file names as the server sends
/// them: a commit id must be 40 lowercase hex digits, a size a non-negative decimal integer, a download URL http(s),
/// and a listing with one unusable name is refused whole. The caps on how much is read are the transport's job
/// (``HubConfiguration/maxListingBytes``, ``HubConfiguration/maxMetadataBodyBytes``); these functions take any size.
public enum HubWireFormat {
  /// What a `/resolve/` HEAD answer says about one file.
  ///
  /// matches: huggingface_hub 2.4.0 `HfFileMetadata` (`commit_hash`, `etag`, `size`, `location`). Limitations: no
  /// `xet_file_data` (the Xet protocol is not used).
  public struct FileMetadata: Equatable, Sendable {
    /// The commit the requested revision points to (`X-Repo-Commit`), 40 lowercase hex digits.
    public var commit: String
    /// The blob's name in the cache (`X-Linked-Etag`, else `ETag`, without `W/` and quotes): sha256 for LFS files,
    /// the git blob sha1 for others.
    public var etag: String
    /// The content's size (`X-Linked-Size`, else the `Content-Length` of a non-redirect answer), when given.
    public var size: Int64?
    /// Where to GET the content: the redirect's `Location` (a CDN), else the resolve URL itself.
    public var downloadURL: URL

    public init(commit: String, etag: String, size: Int64?, downloadURL: URL) {
      self.commit = commit
      self.etag = etag
      self.size = size
      self.downloadURL = downloadURL
    }
  }

  /// How to go on after one `/resolve/` HEAD answer.
  ///
  /// matches: huggingface_hub 2.4.0 `_httpx_follow_relative_redirects` + `get_hf_file_metadata` + the `.no_exist`
  /// branch of `_hf_hub_download_to_cache_dir`. Limitations: a redirect is followed when it stays on the same
  /// origin (huggingface_hub: when it is relative), so an absolute same-origin redirect is followed here too.
  public enum ResolveAnswer: Equatable, Sendable {
    /// A redirect within the hub's own origin (a renamed repo): HEAD that URL instead.
    case redirect(URL)
    /// The file's metadata.
    case file(FileMetadata)
    /// A 404 for the file itself (not the repo or the revision); `commit` is the revision's commit when the hub said
    /// it (`X-Repo-Commit`), to be remembered in `.no_exist/<commit>/<file>`.
    case missing(commit: String?)
  }

  /// Interprets one answer to `HEAD {endpoint}/{repo}/resolve/{revision}/{file}` sent to `requestURL`; `headers` keys
  /// are lower-cased. Errors (401/403, 404 for the repo or revision, 5xx, a missing or unusable `X-Repo-Commit`,
  /// `ETag`, size or `Location`) are thrown as the ``HubError`` for `location`; `tokenSent` only shapes the
  /// 401/403 message.
  public static func parseResolveHead(
    status: Int, headers: [String: String], requestURL: URL, location: HubLocation, tokenSent: Bool = false
  ) throws(HubError) -> ResolveAnswer {
    let error = statusError(status: status, headers: headers, body: Data(), location: location, tokenSent: tokenSent)
    if let error {
      if case .notFound(_, .file, false) = error {
        guard let commit = headers["x-repo-commit"], !commit.isEmpty else { return .missing(commit: nil) }
        return .missing(commit: try checkedCommit(commit, location))
      }
      throw error
    }
    let locationHeader = headers["location"]
    let isRedirect = (300..<400).contains(status) && locationHeader != nil
    var downloadURL = requestURL
    if isRedirect, let text = locationHeader {
      guard let target = URL(string: text, relativeTo: requestURL)?.absoluteURL, target.host?.isEmpty == false,
        ["http", "https"].contains(target.scheme?.lowercased() ?? "")
      else {
        throw HubError.protocolViolation(
          location, detail: "the redirect's Location '\(HubName.printable(text))' is not an http(s) URL")
      }
      if sameOrigin(requestURL, target) { return .redirect(target) }
      downloadURL = target
    }
    guard let commitText = headers["x-repo-commit"], !commitText.isEmpty else {
      throw HubError.protocolViolation(
        location, detail: "no X-Repo-Commit header: is HF_ENDPOINT (\(origin(requestURL))) a Hugging Face hub?")
    }
    let commit = try checkedCommit(commitText, location)
    guard let rawEtag = headers["x-linked-etag"] ?? headers["etag"] else {
      throw HubError.protocolViolation(location, detail: "no ETag header")
    }
    let etag = normalizeEtag(rawEtag)
    if let problem = HubName.problem(etag, as: .etag) {
      throw HubError.protocolViolation(
        location, detail: "the ETag '\(HubName.printable(rawEtag))' cannot name a blob in the cache: \(problem)")
    }
    var size: Int64?
    if let (name, text) = headers["x-linked-size"].map({ ("X-Linked-Size", $0) })
      ?? (isRedirect ? nil : headers["content-length"].map { ("Content-Length", $0) })
    {
      guard let value = parseSize(text) else {
        throw HubError.protocolViolation(
          location, detail: "\(name) '\(HubName.printable(text))' is not a non-negative integer")
      }
      size = value
    }
    return .file(FileMetadata(commit: commit, etag: etag, size: size, downloadURL: downloadURL))
  }

  /// The typed error an answer's status means for `location`, or nil for 2xx/3xx. 401/403 →
  /// ``HubError/accessDenied(_:status:gated:tokenSent:)``; 404 → ``HubError/notFound(_:missing:cached:)`` (repo,
  /// revision or file by `X-Error-Code`); anything else → ``HubError/server(_:status:detail:)`` with
  /// `X-Error-Message` or the start of `body`.
  public static func statusError(
    status: Int, headers: [String: String], body: Data, location: HubLocation, tokenSent: Bool
  ) -> HubError? {
    let code = headers["x-error-code"]
    switch status {
    case 200..<400: return nil
    case 401, 403:
      return .accessDenied(location, status: status, gated: code == "GatedRepo", tokenSent: tokenSent)
    case 404:
      switch code {
      case "RepoNotFound": return .notFound(location, missing: .repo, cached: false)
      case "RevisionNotFound": return .notFound(location, missing: .revision, cached: false)
      default: return .notFound(location, missing: location.file == nil ? .repo : .file, cached: false)
      }
    default:
      let message = headers["x-error-message"] ?? String(decoding: body.prefix(200), as: UTF8.self)
      return .server(location, status: status, detail: message.isEmpty ? "no details" : HubName.printable(message))
    }
  }

  /// The files of `GET {endpoint}/api/models/{repo}/revision/{commit}?blobs=true` (`siblings`: `rfilename`, and
  /// with `blobs=true` `size`, `blobId`, `lfs.sha256`, `lfs.size`). The listing is refused whole
  /// (``HubError/protocolViolation(_:detail:)``) when it is not such JSON, or when an entry lacks `rfilename`, has an
  /// unusable path (``HubName``) or a size that is not a non-negative integer, or when a path repeats or names a file
  /// that another path uses as a folder. `blobId` and `lfs.sha256` are carried as they are (they only go into
  /// `trees/<commit>.json`, never into a path: blob names come from the HEAD answer's etag).
  public static func parseFileList(_ body: Data, location: HubLocation) throws(HubError) -> [RepoFileEntry] {
    guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
      let siblings = object["siblings"] as? [Any]
    else { throw HubError.protocolViolation(location, detail: "the file list is not JSON with 'siblings'") }
    var entries: [RepoFileEntry] = []
    entries.reserveCapacity(siblings.count)
    for (i, item) in siblings.enumerated() {
      guard let s = item as? [String: Any], let path = s["rfilename"] as? String else {
        throw HubError.protocolViolation(location, detail: "entry \(i) of the file list has no 'rfilename'")
      }
      let lfs = s["lfs"] as? [String: Any]
      let size = try optionalInt(s["size"], "size", path, location)
      let lfsSize = try optionalInt(lfs?["size"], "lfs.size", path, location)
      entries.append(
        RepoFileEntry(
          path: path, size: size ?? 0, blobID: s["blobId"] as? String ?? "", lfsSHA256: lfs?["sha256"] as? String,
          lfsSize: lfsSize))
    }
    if let problem = entriesProblem(entries) {
      throw HubError.protocolViolation(location, detail: "the file list is refused: \(problem)")
    }
    return entries
  }

  /// The entries of a cached `trees/<commit>.json` (sorted by path), or nil when it is not format 1 or breaks any rule
  /// ``parseFileList(_:location:)`` enforces (a cache file that cannot be trusted counts as absent).
  public static func decodeTree(_ data: Data) -> [RepoFileEntry]? {
    guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      (object["format_version"] as? NSNumber)?.intValue == 1, let files = object["files"] as? [String: Any]
    else { return nil }
    var entries: [RepoFileEntry] = []
    for (path, value) in files {
      guard let info = value as? [String: Any], let size = (info["size"] as? NSNumber)?.int64Value,
        let blob = info["blob_id"] as? String
      else { return nil }
      entries.append(
        RepoFileEntry(
          path: path, size: size, blobID: blob, lfsSHA256: info["lfs_sha256"] as? String,
          lfsSize: (info["lfs_size"] as? NSNumber)?.int64Value, xetHash: info["xet_hash"] as? String))
    }
    guard entriesProblem(entries) == nil else { return nil }
    return entries.sorted { $0.path < $1.path }
  }

  /// One component of `model_index.json`.
  ///
  /// matches: a `name: [library, class]` entry as diffusers 0.42.1 `DiffusionPipeline.download` reads it. Limitations:
  /// the class name is not kept.
  public struct PipelineComponent: Equatable, Sendable {
    /// The component's folder in the repo (`unet`, `text_encoder`, …).
    public var name: String
    /// The library that loads it (`diffusers`, `transformers`), nil for `[null, null]` (a component left out).
    public var library: String?

    public init(name: String, library: String?) {
      self.name = name
      self.library = library
    }
  }

  /// The components `model_index.json` names: its keys not starting with `_` whose value is a list, sorted by name.
  /// Not a JSON object → ``HubError/protocolViolation(_:detail:)``; so is a component name that is not a usable
  /// folder name (``HubName``, kind `component`).
  public static func pipelineComponents(modelIndex: Data, location: HubLocation) throws(HubError)
    -> [PipelineComponent]
  {
    guard let object = try? JSONSerialization.jsonObject(with: modelIndex) as? [String: Any] else {
      throw HubError.protocolViolation(location, detail: "model_index.json is not a JSON object")
    }
    var components: [PipelineComponent] = []
    for (key, value) in object where !key.hasPrefix("_") {
      guard let list = value as? [Any] else { continue }
      if let problem = HubName.problem(key, as: .component) {
        throw HubError.protocolViolation(
          location, detail: "model_index.json names the component '\(HubName.printable(key))': \(problem)")
      }
      components.append(PipelineComponent(name: key, library: list.first as? String))
    }
    return components.sorted { $0.name < $1.name }
  }

  /// `W/"abc"` → `abc` (huggingface_hub's `_normalize_etag`).
  public static func normalizeEtag(_ etag: String) -> String {
    var s = Substring(etag)
    if s.hasPrefix("W/") { s = s.dropFirst(2) }
    return s.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
  }

  /// Same scheme, host and port (default ports filled in): the only URLs the hub token is sent to are those with the
  /// endpoint's origin.
  public static func sameOrigin(_ a: URL, _ b: URL) -> Bool {
    func port(_ u: URL) -> Int? {
      if let port = u.port { return port }
      switch u.scheme?.lowercased() {
      case "https": return 443
      case "http": return 80
      default: return nil
      }
    }
    guard let schemeA = a.scheme?.lowercased(), let hostA = a.host?.lowercased(), let portA = port(a) else {
      return false
    }
    return schemeA == b.scheme?.lowercased() && hostA == b.host?.lowercased() && portA == port(b)
  }

  // MARK: helpers

  static func checkedCommit(_ text: String, _ location: HubLocation) throws(HubError) -> String {
    guard HubName.isCommitHash(text) else {
      throw HubError.protocolViolation(
        location, detail: "the commit id '\(HubName.printable(text))' (X-Repo-Commit) is not 40 lowercase hex digits")
    }
    return text
  }

  /// A decimal, non-negative Int64 (`_int_or_none`, without its leniency).
  static func parseSize(_ text: String) -> Int64? {
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    guard !trimmed.isEmpty, trimmed.utf8.count <= 19, trimmed.utf8.allSatisfy({ (48...57).contains($0) }) else {
      return nil
    }
    return Int64(trimmed)
  }

  static func origin(_ url: URL) -> String {
    "\(url.scheme ?? "?")://\(url.host ?? "?")" + (url.port.map { ":\($0)" } ?? "")
  }

  private static func optionalInt(_ value: Any?, _ field: String, _ path: String, _ location: HubLocation)
    throws(HubError) -> Int64?
  {
    guard let value, !(value is NSNull) else { return nil }
    guard let number = value as? NSNumber, number.int64Value >= 0, Double(number.int64Value) == number.doubleValue
    else {
      throw HubError.protocolViolation(
        location, detail: "the file list gives '\(HubName.printable(path))' the \(field) \(value), not a size")
    }
    return number.int64Value
  }

  /// Why a list of repo files cannot be used, or nil.
  static func entriesProblem(_ entries: [RepoFileEntry]) -> String? {
    var paths = Set<String>()
    for e in entries {
      if let problem = HubName.problem(e.path, as: .file) {
        return "the path '\(HubName.printable(e.path))' is unusable: \(problem)"
      }
      if !paths.insert(e.path).inserted { return "the path '\(HubName.printable(e.path))' is listed twice" }
      if e.size < 0 || (e.lfsSize ?? 0) < 0 { return "'\(HubName.printable(e.path))' has a negative size" }
    }
    for path in paths {
      var folder = Substring(path)
      while let slash = folder.lastIndex(of: "/") {
        folder = folder[..<slash]
        if paths.contains(String(folder)) {
          return
            "'\(HubName.printable(String(folder)))' is listed as a file and as the folder of '\(HubName.printable(path))'"
        }
      }
    }
    return nil
  }
}
