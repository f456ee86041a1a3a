import Foundation

/// Which file of which repo at which revision an error is about (`file` nil: the repo or its file list).
///
/// matches: the (repo_id, filename, revision) that huggingface_hub 2.4.0 puts in its error messages.
/// Limitations: the repo type is always "model".
public struct HubLocation: Equatable, Sendable, CustomStringConvertible {
  public var repoID: String
  public var file: String?
  public var revision: String

  public init(repoID: String, file: String? = nil, revision: String) {
    self.repoID = repoID
    self.file = file
    self.revision = revision
  }

  public var description: String {
    if let file { return "'\(file)' of \(repoID) at revision '\(revision)'" }
    return "\(repoID) at revision '\(revision)'"
  }
}

/// Every way a hub look-up or download can fail; each case names the repo, file and revision.
///
/// matches: huggingface_hub 2.4.0 error classes — `GatedRepoError`/401 (`accessDenied`), `RepositoryNotFoundError`,
/// `RevisionNotFoundError`, `RemoteEntryNotFoundError` (`notFound`), `LocalEntryNotFoundError` with offline mode
/// (`offlineNotCached`), the size "Consistency check failed" (`corrupt`), the `ValueError` of `_get_pointer_path`
/// ("Invalid pointer path", here `protocolViolation` when the name came from the server, `invalidReference` when it
/// came from the caller). Limitations: no separate case for 429 rate limiting (it is retried, then reported as
/// `server`); values quoted from a server are cut to 200 characters with control characters escaped.
public enum HubError: Error, Equatable, Sendable, CustomStringConvertible {
  /// What `notFound` could not find.
  public enum Missing: String, Sendable { case repo, revision, file }

  /// A `--model`/`--ip-adapter` text that is neither an existing path nor a valid hub reference, or a repo id, file
  /// path or revision given to the API that breaks ``HubName``'s rules (`reason` names the bad value).
  case invalidReference(String, reason: String)
  /// 401/403: the repo is gated or private (or does not exist and the hub will not say so); `gated` when the hub
  /// said `X-Error-Code: GatedRepo`; `tokenSent` whether a token was sent.
  case accessDenied(HubLocation, status: Int, gated: Bool, tokenSent: Bool)
  /// 404 for the repo, the revision or the file (`cached` when a `.no_exist` marker in the cache said so).
  case notFound(HubLocation, missing: Missing, cached: Bool)
  /// `HF_HUB_OFFLINE=1` (or `offline: true`) and the cache lacks what is needed; `missing` lists it.
  case offlineNotCached(HubLocation, missing: [String])
  /// The server kept answering 5xx / 429 (after retries), or answered something unexpected.
  case server(HubLocation, status: Int, detail: String)
  /// The connection failed, timed out, missed the metadata deadline or stalled below the minimum download rate
  /// (after retries).
  case network(HubLocation, detail: String)
  /// The server's answer lacks what the protocol promises or is hostile: no or a malformed X-Repo-Commit (not 40
  /// lowercase hex digits), ETag, size or Location; a file listing or `model_index.json` that is not JSON or names
  /// an unusable path or component (``HubName``); a body over its cap; a redirect that may not be followed. `detail`
  /// quotes the bad value. Not retried.
  case protocolViolation(HubLocation, detail: String)
  /// The downloaded bytes do not match the expected size or digest, or exceed the announced size (after retries).
  case corrupt(HubLocation, detail: String)
  /// The cache folder could not be written or read, or holds a symlink or file where a folder of the cache goes, or a
  /// folder where a file's symlink goes (refused, never followed or deleted: remove it).
  case cache(HubLocation?, path: String, detail: String)

  public var description: String {
    switch self {
    case .invalidReference(let text, let reason):
      return "'\(text)' is not a local path or a hub reference (org/name[/path/in/repo][@revision]): \(reason)"
    case .accessDenied(let loc, let status, let gated, let tokenSent):
      let what = gated ? "is gated" : "is gated, private or does not exist"
      let hint =
        tokenSent
        ? "the token in HF_TOKEN (or HF_HOME/token) was refused: check that it is valid and that access was granted"
        : "set HF_TOKEN to a token that has access (and accept the repo's terms on the hub)"
      return "gated/unauthorised (\(status)): \(loc) \(what); \(hint)"
    case .notFound(let loc, let missing, let cached):
      let note = cached ? " (remembered in the cache's .no_exist)" : ""
      switch missing {
      case .repo: return "not found: repo \(loc.repoID) does not exist on the hub\(note)"
      case .revision: return "not found: revision '\(loc.revision)' does not exist in \(loc.repoID)\(note)"
      case .file: return "not found: \(loc) does not exist\(note)"
      }
    case .offlineNotCached(let loc, let missing):
      let list = missing.isEmpty ? "" : "; missing: " + missing.joined(separator: ", ")
      return "offline (HF_HUB_OFFLINE=1) and \(loc) is not in the cache\(list)"
    case .server(let loc, let status, let detail):
      return "hub server error \(status) for \(loc): \(detail)"
    case .network(let loc, let detail):
      return "network error for \(loc): \(detail)"
    case .protocolViolation(let loc, let detail):
      return "unexpected hub answer for \(loc): \(detail)"
    case .corrupt(let loc, let detail):
      return "download of \(loc) is corrupt: \(detail)"
    case .cache(let loc, let path, let detail):
      return "hub cache error at \(path)" + (loc.map { " (\($0))" } ?? "") + ": \(detail)"
    }
  }
}
