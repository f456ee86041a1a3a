import Foundation

/// Progress of one file's download (reported as bytes arrive, from a background thread).
///
/// matches: the byte counts of huggingface_hub 2.4.0's per-file tqdm bar in `http_get` (a resumed download
/// starts at the bytes already on disk). Limitations: nothing is reported for files found in the cache.
public struct HubProgress: Sendable {
  public var repoID: String
  public var file: String
  /// Bytes of this file on disk so far (a resumed download starts above zero).
  public var completedBytes: Int64
  /// The file's size, when the hub said it.
  public var totalBytes: Int64?
  /// For pipeline downloads: which file this is (1-based) of how many; 1 of 1 for a single file.
  public var fileIndex: Int
  public var fileCount: Int
}

/// Called with download progress; must be quick and thread-safe.
public typealias HubProgressHandler = @Sendable (HubProgress) -> Void

/// A client for the Hugging Face hub's public file protocol that fills the shared hub cache.
///
/// - ``resolve(_:verify:progress:)`` turns a ``HubReference`` into a local URL: a local path as is, a file into its
///   `snapshots/<commit>/<path>` symlink, a repo into its snapshot folder (see ``downloadPipeline(repoID:revision:verify:progress:)``).
/// - A file: `HEAD {endpoint}/{repo}/resolve/{revision}/{path}` (`Accept-Encoding: identity`; redirects followed
///   only while they stay on the same origin) gives `X-Repo-Commit`, the etag (`X-Linked-Etag`, else `ETag`), the
///   size (`X-Linked-Size`, else `Content-Length` of a non-redirect) and the download URL (`Location`); then a GET
///   into `blobs/<etag>.incomplete` under `.locks/…/<etag>.lock`, resumed with `Range: bytes=N-`, checked for size
///   and digest (sha256 for an LFS etag of 64 hex digits, git blob sha1 for 40), renamed to `blobs/<etag>`, linked
///   from `snapshots/<commit>/<path>`, `refs/<revision>` written.
/// - A hostile hub (or `HF_ENDPOINT` mirror) cannot write outside the cache: every name it sends is checked by
///   ``HubWireFormat`` and again by ``HubCache`` (``HubName``'s rules). The token (`Authorization: Bearer`) goes only to
///   URLs with the endpoint's scheme, host and port, never across a redirect to another origin or from https to
///   http. Bodies kept in memory are capped (``HubConfiguration/maxListingBytes``,
///   ``HubConfiguration/maxMetadataBodyBytes``), a metadata request has an overall deadline
///   (``HubConfiguration/metadataDeadline``), a download a minimum average rate
///   (``HubConfiguration/downloadMinimumRate``) and never grows past the size the hub announced.
/// - Offline (`HF_HUB_OFFLINE=1`): no network at all; the cache answers or ``HubError/offlineNotCached(_:missing:)``.
/// - When the hub cannot be reached (or refuses with 401/403) and the file is cached for that revision, the cached
///   file is used, as huggingface_hub does.
///
/// matches: huggingface_hub 2.4.0 `hf_hub_download` (`_hf_hub_download_to_cache_dir`, `get_hf_file_metadata`,
/// `http_get`). Limitations: no Xet protocol (plain HTTP from the `Location`, which the hub still serves), no
/// `local_dir` mode, no datasets/spaces, no proxies beyond what libcurl reads from the environment; huggingface_hub
/// verifies sizes only, we also verify digests (a mirror whose etags are not content digests fails as corrupt).
public final class HubClient: Sendable {
  public let configuration: HubConfiguration
  public let cache: HubCache
  let transport: HTTPTransport

  public init(configuration: HubConfiguration = .fromEnvironment()) {
    self.configuration = configuration
    self.cache = HubCache(root: configuration.cacheDirectory)
    self.transport = HTTPTransport(
      idleTimeout: max(configuration.downloadTimeout, configuration.metadataTimeout),
      tokenOrigin: URL(string: configuration.endpoint))
  }

  deinit { transport.invalidate() }

  /// Parses `text` (see ``HubReference``) and resolves it.
  public func resolve(_ text: String, verify: Bool = false, progress: HubProgressHandler? = nil) async throws(HubError)
    -> URL
  {
    try await resolve(HubReference.parse(text), verify: verify, progress: progress)
  }

  /// The local URL of what `reference` names, downloading into the cache what is missing.
  /// `variant` (e.g. `fp16`) chooses a pipeline's weight files (see ``PipelineFiles``).
  public func resolve(
    _ reference: HubReference, variant: String? = nil, verify: Bool = false, progress: HubProgressHandler? = nil
  ) async throws(HubError) -> URL {
    switch reference {
    case .local(let path):
      return URL(fileURLWithPath: HubConfiguration.expandTilde(path))
    case .file(let repoID, let path, let revision):
      return try await downloadFile(repoID: repoID, path: path, revision: revision, verify: verify, progress: progress)
    case .repo(let repoID, let revision):
      return try await downloadPipeline(
        repoID: repoID, revision: revision, variant: variant, verify: verify, progress: progress)
    }
  }

  /// One file of a repo: its `snapshots/<commit>/<path>` symlink in the cache (downloaded if needed).
  /// `verify` re-checks the digest of an already cached blob (a mismatch is fetched again). A repo id, path or
  /// revision that breaks ``HubName``'s rules is a ``HubError/invalidReference(_:reason:)``.
  public func downloadFile(
    repoID: String, path: String, revision: String? = nil, verify: Bool = false, progress: HubProgressHandler? = nil
  ) async throws(HubError) -> URL {
    let loc = HubLocation(repoID: repoID, file: path, revision: revision ?? "main")
    try Self.checkUserInput(loc)
    let job = FileJob(loc: loc, index: 1, count: 1, verify: verify, progress: progress)
    return try await fetchFile(job, metadata: nil)
  }

  /// The user's repo id, file path and revision must obey ``HubName``'s rules before anything is asked or built.
  static func checkUserInput(_ loc: HubLocation) throws(HubError) {
    let text = HubReference.file(repoID: loc.repoID, path: loc.file ?? "", revision: loc.revision).description
    try HubName.check(loc.repoID, as: .repoID, reference: text)
    if let file = loc.file { try HubName.check(file, as: .file, reference: text) }
    try HubName.check(loc.revision, as: .revision, reference: text)
  }

  /// Runs async work to completion from synchronous code (a command's `run()`), blocking the calling thread.
  public static func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task.detached {
      do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
      done.signal()
    }
    done.wait()
    return try box.result!.get()
  }

  // @unchecked Sendable: written once by the detached task before the semaphore is signalled, read after.

  private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, Error>?
  }

  // MARK: - one file

  struct FileJob: Sendable {
    var loc: HubLocation
    var index: Int
    var count: Int
    var verify: Bool
    var progress: HubProgressHandler?
  }

  /// What a HEAD on `/resolve/` told.
  typealias FileMetadata = HubWireFormat.FileMetadata

  func fetchFile(_ job: FileJob, metadata known: FileMetadata?) async throws(HubError) -> URL {
    let loc = job.loc
    let file = loc.file!
    if configuration.offline { return try cachedFileOffline(loc) }

    // A commit hash and a pointer on disk: nothing to ask the hub (huggingface_hub's shortcut).
    if known == nil, HubCache.isCommitHash(loc.revision), !job.verify,
      let pointer = cache.cachedFile(loc.repoID, file: file, revision: loc.revision)
    {
      return pointer
    }

    let metadata: FileMetadata
    if let known {
      metadata = known
    } else {
      let cachedPointer = cache.cachedFile(loc.repoID, file: file, revision: loc.revision)
      do throws(HubError) {
        metadata = try await fileMetadata(loc, retry: cachedPointer == nil)
      } catch {
        switch error {
        case .network, .server, .accessDenied, .protocolViolation:
          if let cachedPointer { return cachedPointer }  // hub unreachable or refusing: use the cache
          throw error
        default: throw error
        }
      }
    }

    let blob = try cache.blobPath(loc.repoID, etag: metadata.etag)
    let pointer = try cache.pointerPath(loc.repoID, commit: metadata.commit, file: file)
    let fm = FileManager.default
    if cache.isLinked(loc.repoID, commit: metadata.commit, file: file, etag: metadata.etag),
      blobIsValid(blob.path, etag: metadata.etag, size: metadata.size, digest: job.verify)
    {
      try? cache.writeRef(loc.repoID, revision: loc.revision, commit: metadata.commit)
      return pointer
    }

    try cache.prepareBlobFolder(loc.repoID)
    cache.writeCacheDirTag()
    try cache.writeRef(loc.repoID, revision: loc.revision, commit: metadata.commit)

    let lockPath = try cache.lockPath(loc.repoID, etag: metadata.etag)
    try cache.prepareLockFolder(loc.repoID)
    let lock: FileLock
    do { lock = try await FileLock.acquire(path: lockPath.path) } catch let error as HubError { throw error } catch {
      throw HubError.network(loc, detail: "cancelled while waiting for \(lockPath.path)")
    }
    defer { lock.release() }

    // Another process may have finished it while we waited; a corrupt or short blob is replaced.
    if fm.fileExists(atPath: blob.path) {
      if blobIsValid(blob.path, etag: metadata.etag, size: metadata.size, digest: job.verify) {
        try cache.linkPointer(loc.repoID, commit: metadata.commit, file: file, etag: metadata.etag)
        return pointer
      }
      HubCache.removeFile(blob.path)
    }
    try await downloadBlob(job, metadata: metadata)
    try cache.linkPointer(loc.repoID, commit: metadata.commit, file: file, etag: metadata.etag)
    return pointer
  }

  /// The cached file for an offline look-up, or the typed reason it is not there.
  func cachedFileOffline(_ loc: HubLocation) throws(HubError) -> URL {
    let file = loc.file!
    guard let commit = cache.commit(loc.repoID, revision: loc.revision) else {
      throw HubError.offlineNotCached(loc, missing: ["\(loc.repoID)@\(loc.revision) (no refs/\(loc.revision))"])
    }
    if cache.isMarkedMissing(loc.repoID, file: file, commit: commit) {
      throw HubError.notFound(loc, missing: .file, cached: true)
    }
    let pointer = try cache.pointerPath(loc.repoID, commit: commit, file: file)
    guard FileManager.default.fileExists(atPath: pointer.path) else {
      throw HubError.offlineNotCached(loc, missing: ["\(loc.repoID)/\(file)@\(commit)"])
    }
    return pointer
  }

  /// Size check always; digest check (named by the etag) when `digest` is set.
  func blobIsValid(_ path: String, etag: String, size: Int64?, digest: Bool) -> Bool {
    guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
      let actual = (attributes[.size] as? NSNumber)?.int64Value
    else { return false }
    if let size, size != actual { return false }
    return !digest || digestMatches(path, etag: etag)
  }

  /// True when the file's content hashes to its etag (sha256 for 64 hex digits, git blob sha1 for 40); other
  /// etags cannot be checked and pass.
  func digestMatches(_ path: String, etag: String) -> Bool {
    let isHex = etag.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    guard isHex else { return true }
    switch etag.utf8.count {
    case 64: return (try? Digest.sha256(ofFile: path)) == etag
    case 40: return (try? Digest.gitBlobSHA1(ofFile: path)) == etag
    default: return true
    }
  }
}
