import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The on-disk hub cache, laid out exactly as Python's huggingface_hub lays it out, so that models downloaded by
/// diffusers/transformers are reused and ours are usable by them:
///
/// ```
/// <root>/CACHEDIR.TAG
/// <root>/.locks/models--org--name/<etag>.lock
/// <root>/models--org--name/blobs/<etag>                 the content (etag: sha256 for LFS, git blob sha1 otherwise)
/// <root>/models--org--name/blobs/<etag>.incomplete      a download in progress (resumable)
/// <root>/models--org--name/refs/<revision>              the commit hash a branch/tag pointed to, no newline
/// <root>/models--org--name/snapshots/<commit>/<path>    relative symlink ../../blobs/<etag> (one ../ per level)
/// <root>/models--org--name/.no_exist/<commit>/<path>    empty marker: the hub said 404 for this file
/// <root>/models--org--name/trees/<commit>.json          the repo's file list at that commit
/// ```
///
/// matches: huggingface_hub 2.4.0 (layout unchanged since 0.x/1.x) `file_download.py` (`repo_folder_name`, `_create_symlink`,
/// `_cache_commit_hash_for_specific_revision`, `.no_exist`), `_tree_cache.py` and `_local_folder.py`
/// (`CACHEDIR.TAG`). Limitations: model repos only; where symlinks are impossible huggingface_hub copies files,
/// we fail instead; huggingface_hub 2.x downloads into a per-process `<etag>.<random>.incomplete` and never
/// resumes across runs, we keep one `<etag>.incomplete` under the lock and resume it (the older, 0.x layout).
public struct HubCache: Sendable {
  /// The cache root (what `HF_HUB_CACHE` names).
  public let root: URL

  public init(root: URL) { self.root = root.standardizedFileURL }

  /// The cache the environment names (see ``HubConfiguration/fromEnvironment(_:)``).
  public static func fromEnvironment() -> HubCache {
    HubCache(root: HubConfiguration.fromEnvironment().cacheDirectory)
  }

  static let cacheDirTag =
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    + "# This file is a cache directory tag created by huggingface_hub.\n"
    + "# For information about cache directory tags, see:\n" + "#\thttps://bford.info/cachedir/\n"

  /// `models--org--name`.
  public static func folderName(repoID: String) -> String {
    (["models"] + repoID.split(separator: "/").map(String.init)).joined(separator: "--")
  }

  /// True for a full 40-hex-digit commit hash (huggingface_hub's `REGEX_COMMIT_HASH`).
  public static func isCommitHash(_ revision: String) -> Bool {
    revision.utf8.count == 40 && revision.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
  }

  public func repoFolder(_ repoID: String) -> URL { root.appendingPathComponent(Self.folderName(repoID: repoID)) }
  public func blobPath(_ repoID: String, etag: String) -> URL {
    repoFolder(repoID).appendingPathComponent("blobs").appendingPathComponent(etag)
  }
  public func incompletePath(_ repoID: String, etag: String) -> URL {
    repoFolder(repoID).appendingPathComponent("blobs").appendingPathComponent(etag + ".incomplete")
  }
  public func lockPath(_ repoID: String, etag: String) -> URL {
    root.appendingPathComponent(".locks").appendingPathComponent(Self.folderName(repoID: repoID))
      .appendingPathComponent(etag + ".lock")
  }
  public func snapshotFolder(_ repoID: String, commit: String) -> URL {
    repoFolder(repoID).appendingPathComponent("snapshots").appendingPathComponent(commit)
  }
  public func pointerPath(_ repoID: String, commit: String, file: String) -> URL {
    snapshotFolder(repoID, commit: commit).appendingPathComponent(file)
  }
  public func refPath(_ repoID: String, revision: String) -> URL {
    repoFolder(repoID).appendingPathComponent("refs").appendingPathComponent(revision)
  }
  func noExistPath(_ repoID: String, commit: String, file: String) -> URL {
    repoFolder(repoID).appendingPathComponent(".no_exist").appendingPathComponent(commit)
      .appendingPathComponent(file)
  }
  func treePath(_ repoID: String, commit: String) -> URL {
    repoFolder(repoID).appendingPathComponent("trees").appendingPathComponent(commit + ".json")
  }

  /// The commit a revision names: itself if it is a commit hash, else the content of `refs/<revision>`.
  public func commit(_ repoID: String, revision: String) -> String? {
    if Self.isCommitHash(revision) { return revision }
    guard let text = try? String(contentsOf: refPath(repoID, revision: revision), encoding: .utf8) else { return nil }
    let commit = text.trimmingCharacters(in: .whitespacesAndNewlines)
    return commit.isEmpty ? nil : commit
  }

  /// The snapshot path of a cached file (following `refs/` for branches and tags), or nil.
  public func cachedFile(_ repoID: String, file: String, revision: String = "main") -> URL? {
    guard let commit = commit(repoID, revision: revision) else { return nil }
    let pointer = pointerPath(repoID, commit: commit, file: file)
    return FileManager.default.fileExists(atPath: pointer.path) ? pointer : nil
  }

  /// True if a `.no_exist` marker says the hub answered 404 for this file at this commit.
  public func isMarkedMissing(_ repoID: String, file: String, commit: String) -> Bool {
    FileManager.default.fileExists(atPath: noExistPath(repoID, commit: commit, file: file).path)
  }

  // MARK: writing

  /// Records `refs/<revision>` = commit (atomically, only when it changed; nothing for a commit hash).
  func writeRef(_ repoID: String, revision: String, commit: String) throws(HubError) {
    guard revision != commit else { return }
    let path = refPath(repoID, revision: revision)
    if let old = try? String(contentsOf: path, encoding: .utf8), old == commit { return }
    try createDirectory(path.deletingLastPathComponent())
    try atomicWrite(Data(commit.utf8), to: path)
  }

  func markMissing(_ repoID: String, file: String, commit: String) {
    let path = noExistPath(repoID, commit: commit, file: file)
    guard !FileManager.default.fileExists(atPath: path.path) else { return }
    try? createDirectory(path.deletingLastPathComponent())
    _ = FileManager.default.createFile(atPath: path.path, contents: Data())
  }

  /// Writes `CACHEDIR.TAG` once (best effort, as huggingface_hub does).
  func writeCacheDirTag() {
    let path = root.appendingPathComponent("CACHEDIR.TAG")
    guard !FileManager.default.fileExists(atPath: path.path) else { return }
    try? createDirectory(root)
    try? Data(Self.cacheDirTag.utf8).write(to: path)
  }

  /// Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative symlink, replacing what was there.
  func linkPointer(_ repoID: String, commit: String, file: String, etag: String) throws(HubError) {
    let pointer = pointerPath(repoID, commit: commit, file: file)
    try createDirectory(pointer.deletingLastPathComponent())
    let depth = file.split(separator: "/").count + 1
    let target = String(repeating: "../", count: depth) + "blobs/" + etag
    let fm = FileManager.default
    if let existing = try? fm.destinationOfSymbolicLink(atPath: pointer.path), existing == target { return }
    try? fm.removeItem(atPath: pointer.path)
    do {
      try fm.createSymbolicLink(atPath: pointer.path, withDestinationPath: target)
    } catch {
      if (try? fm.destinationOfSymbolicLink(atPath: pointer.path)) == target { return }  // a concurrent writer
      throw HubError.cache(nil, path: pointer.path, detail: "cannot create symlink: \(error.localizedDescription)")
    }
  }

  func createDirectory(_ url: URL) throws(HubError) {
    do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
      throw HubError.cache(nil, path: url.path, detail: "cannot create folder: \(error.localizedDescription)")
    }
  }

  /// Writes to a unique temporary name beside `url`, then renames it over `url`.
  func atomicWrite(_ data: Data, to url: URL) throws(HubError) {
    let tmp = url.deletingLastPathComponent().appendingPathComponent(
      "\(url.lastPathComponent).\(UUID().uuidString.prefix(8).lowercased()).tmp")
    do {
      try data.write(to: tmp)
      if rename(tmp.path, url.path) != 0 { throw CocoaError(.fileWriteUnknown) }
    } catch {
      try? FileManager.default.removeItem(at: tmp)
      throw HubError.cache(nil, path: url.path, detail: "cannot write: \(error.localizedDescription)")
    }
  }
}
