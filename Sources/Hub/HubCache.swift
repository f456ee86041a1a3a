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
/// (`CACHEDIR.TAG`), and `_get_pointer_path`'s confinement, made stricter: every name in a path obeys ``HubName``
/// (a commit id is 40 lowercase hex digits, a file path has no `.`/`..`/empty component, no backslash or control
/// character) and the joined path must stay inside the repo folder (a snapshot path inside its `snapshots/<commit>`).
/// Writes open folders component by component without following symlinks, so a symlink planted below a repo folder
/// is refused, never followed, and a folder is never deleted. Limitations: model repos only; where symlinks are
/// impossible huggingface_hub copies files, we fail instead; huggingface_hub 2.x downloads into a per-process
/// `<etag>.<random>.incomplete` and never resumes across runs, we keep one `<etag>.incomplete` under the lock and
/// resume it (the older, 0.x layout); the cache root and repo folders themselves may be symlinks (followed), and a
/// local user who can write into the cache can still replace what it holds (no defence against that is attempted).
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
  public static func isCommitHash(_ revision: String) -> Bool { HubName.isCommitHash(revision) }

  // MARK: paths
  //
  // Every path into a repo folder is built by `path(_:_:)`, which checks each name by ``HubName``'s rules and then
  // checks, as huggingface_hub's `_get_pointer_path` does, that the joined path (normalised without following
  // symlinks) stays inside the folder it belongs to: the repo folder, and for snapshot and `.no_exist` paths their
  // `<commit>` folder.

  /// `<root>/models--org--name`.
  public func repoFolder(_ repoID: String) throws(HubError) -> URL {
    try path(repoID, [])
  }
  /// `blobs/<etag>`.
  public func blobPath(_ repoID: String, etag: String) throws(HubError) -> URL {
    try path(repoID, [("blobs", nil), (etag, .etag)])
  }
  /// `blobs/<etag>.incomplete`, a download in progress.
  public func incompletePath(_ repoID: String, etag: String) throws(HubError) -> URL {
    try Self.check(etag, .etag, repoID: repoID, root: root)
    return try path(repoID, [("blobs", nil), (etag + ".incomplete", nil)])
  }
  /// `<root>/.locks/models--org--name/<etag>.lock`.
  public func lockPath(_ repoID: String, etag: String) throws(HubError) -> URL {
    try Self.check(etag, .etag, repoID: repoID, root: root)
    let folder = try repoFolder(repoID)
    let url = root.appendingPathComponent(".locks").appendingPathComponent(folder.lastPathComponent)
      .appendingPathComponent(etag + ".lock")
    return try Self.confined(url, in: root.appendingPathComponent(".locks"), repoID: repoID)
  }
  /// `snapshots/<commit>`.
  public func snapshotFolder(_ repoID: String, commit: String) throws(HubError) -> URL {
    try path(repoID, [("snapshots", nil), (commit, .commit)])
  }
  /// `snapshots/<commit>/<file>` (a symlink to the blob once downloaded).
  public func pointerPath(_ repoID: String, commit: String, file: String) throws(HubError) -> URL {
    let url = try path(repoID, [("snapshots", nil), (commit, .commit), (file, .file)])
    return try Self.confined(url, in: snapshotFolder(repoID, commit: commit), repoID: repoID)
  }
  /// `refs/<revision>` (holding the commit a branch or tag pointed to).
  public func refPath(_ repoID: String, revision: String) throws(HubError) -> URL {
    let url = try path(repoID, [("refs", nil), (revision, .revision)])
    return try Self.confined(url, in: repoFolder(repoID).appendingPathComponent("refs"), repoID: repoID)
  }
  func noExistPath(_ repoID: String, commit: String, file: String) throws(HubError) -> URL {
    let url = try path(repoID, [(".no_exist", nil), (commit, .commit), (file, .file)])
    return try Self.confined(
      url, in: repoFolder(repoID).appendingPathComponent(".no_exist").appendingPathComponent(commit), repoID: repoID)
  }
  func treePath(_ repoID: String, commit: String) throws(HubError) -> URL {
    try Self.check(commit, .commit, repoID: repoID, root: root)
    return try path(repoID, [("trees", nil), (commit + ".json", nil)])
  }

  /// The one place cache paths are made: the repo folder, then `parts` (each checked as its kind; nil: a fixed name),
  /// the result checked to stay inside the repo folder.
  private func path(_ repoID: String, _ parts: [(String, HubName.Kind?)]) throws(HubError) -> URL {
    try Self.check(repoID, .repoID, repoID: repoID, root: root)
    let folder = root.appendingPathComponent(Self.folderName(repoID: repoID))
    var url = folder
    for (value, kind) in parts {
      if let kind { try Self.check(value, kind, repoID: repoID, root: root) }
      url.appendPathComponent(value)
    }
    return try Self.confined(url, in: parts.isEmpty ? root : folder, repoID: repoID)
  }

  private static func check(_ value: String, _ kind: HubName.Kind, repoID: String, root: URL) throws(HubError) {
    guard let problem = HubName.problem(value, as: kind) else { return }
    throw HubError.cache(
      nil, path: root.path,
      detail: "refusing to make a cache path for \(HubName.printable(repoID)) from the \(kind.rawValue) "
        + "'\(HubName.printable(value))': \(problem)")
  }

  /// `url` if, normalised without following symlinks (`os.path.abspath`), it lies strictly inside `base`.
  /// Compared as UTF-8 bytes, never as characters (see ``HubName``).
  static func confined(_ url: URL, in base: URL, repoID: String) throws(HubError) -> URL {
    let path = Array(lexicallyNormalized(url.path).utf8)
    let basePath = Array(lexicallyNormalized(base.path).utf8)
    let prefix = basePath == [UInt8(ascii: "/")] ? basePath : basePath + [UInt8(ascii: "/")]
    guard path.starts(with: prefix), path != basePath else {
      throw HubError.cache(
        nil, path: url.path, detail: "refusing a path for \(HubName.printable(repoID)) outside \(base.path)")
    }
    return url
  }

  /// `a/./b/../c` → `a/c`, `//` → `/`, as `os.path.normpath` (no symlink is followed), on the
  /// UTF-8 bytes.
  static func lexicallyNormalized(_ path: String) -> String {
    let slash = UInt8(ascii: "/")
    var out: [ArraySlice<UInt8>] = []
    let bytes = Array(path.utf8)
    for part in bytes.split(separator: slash, omittingEmptySubsequences: true) {
      if part.elementsEqual([0x2E]) { continue }
      if part.elementsEqual([0x2E, 0x2E]) {
        if !out.isEmpty { out.removeLast() }
        continue
      }
      out.append(part)
    }
    let joined = out.map { Array($0) }.joined(separator: [slash])
    return String(decoding: (bytes.first == slash ? [slash] : []) + joined, as: UTF8.self)
  }

  // MARK: reading

  /// The commit a revision names: itself if it is a commit hash, else the content of `refs/<revision>` when that is a
  /// commit hash (anything else in a ref file, or an unusable revision, counts as not cached).
  public func commit(_ repoID: String, revision: String) -> String? {
    if Self.isCommitHash(revision) { return revision }
    guard let path = try? refPath(repoID, revision: revision), let data = Self.readFile(path.path, upTo: 1024),
      data.count <= 1024
    else { return nil }
    let commit = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    return Self.isCommitHash(commit) ? commit : nil
  }

  /// The snapshot path of a cached file (following `refs/` for branches and tags), or nil.
  public func cachedFile(_ repoID: String, file: String, revision: String = "main") -> URL? {
    guard let commit = commit(repoID, revision: revision),
      let pointer = try? pointerPath(repoID, commit: commit, file: file)
    else { return nil }
    return FileManager.default.fileExists(atPath: pointer.path) ? pointer : nil
  }

  /// True if a `.no_exist` marker says the hub answered 404 for this file at this commit.
  public func isMarkedMissing(_ repoID: String, file: String, commit: String) -> Bool {
    guard let path = try? noExistPath(repoID, commit: commit, file: file) else { return false }
    return FileManager.default.fileExists(atPath: path.path)
  }

  /// At most `limit + 1` bytes of a file (so a caller sees that it is larger than `limit`), or nil if unreadable.
  static func readFile(_ path: String, upTo limit: Int) -> Data? {
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    var data = Data()
    while data.count <= limit, let chunk = try? handle.read(upToCount: min(limit + 1 - data.count, 4 << 20)),
      !chunk.isEmpty
    {
      data.append(chunk)
    }
    return data
  }

  // MARK: writing
  //
  // Writes go through folder descriptors opened component by component below the repo folder (or the cache root for
  // `.locks`) with O_NOFOLLOW: a symlink or a file where a folder should be is refused, never followed, so nothing is
  // created outside the cache even if the cache already holds a planted symlink. Existing entries are only replaced
  // when they are files or symlinks (`unlinkat` without AT_REMOVEDIR, which cannot remove a folder).

  /// Records `refs/<revision>` = commit (atomically, only when it changed; nothing for a commit hash).
  func writeRef(_ repoID: String, revision: String, commit: String) throws(HubError) {
    guard revision != commit else { return }
    let path = try refPath(repoID, revision: revision)
    try Self.check(commit, .commit, repoID: repoID, root: root)
    if let old = Self.readFile(path.path, upTo: 1024), old == Data(commit.utf8) { return }
    let loc = HubLocation(repoID: repoID, revision: revision)
    let parts = revision.split(separator: "/").map(String.init)
    let folder = try openFolder(repoFolder(repoID), ["refs"] + parts.dropLast(), loc)
    defer { close(folder) }
    try writeAtomically(Data(commit.utf8), folder: folder, name: parts.last!, path: path.path, loc)
  }

  /// Creates the empty `.no_exist/<commit>/<file>` marker (best effort, as huggingface_hub does).
  func markMissing(_ repoID: String, file: String, commit: String) {
    guard let path = try? noExistPath(repoID, commit: commit, file: file),
      !FileManager.default.fileExists(atPath: path.path), let base = try? repoFolder(repoID)
    else { return }
    let parts = file.split(separator: "/").map(String.init)
    guard let folder = try? openFolder(base, [".no_exist", commit] + parts.dropLast(), nil) else { return }
    defer { close(folder) }
    let fd = openat(folder, parts.last!, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o666)
    if fd >= 0 { close(fd) }
  }

  /// Writes `CACHEDIR.TAG` once (best effort, as huggingface_hub does).
  func writeCacheDirTag() {
    let path = root.appendingPathComponent("CACHEDIR.TAG")
    guard !FileManager.default.fileExists(atPath: path.path) else { return }
    try? createDirectory(root)
    let fd = open(path.path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o666)
    guard fd >= 0 else { return }
    defer { close(fd) }
    _ = Self.writeAll(fd, Data(Self.cacheDirTag.utf8))
  }

  /// Creates `blobs/` (refusing a symlink there) so that blobs and `.incomplete` files can be opened in it.
  func prepareBlobFolder(_ repoID: String) throws(HubError) {
    close(try openFolder(repoFolder(repoID), ["blobs"], nil))
  }

  /// Creates `.locks/models--org--name/` (refusing symlinks there).
  func prepareLockFolder(_ repoID: String) throws(HubError) {
    close(try openFolder(root, [".locks", repoFolder(repoID).lastPathComponent], nil))
  }

  /// Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative symlink, replacing a symlink or file that
  /// was there; a folder there, or a symlink or file in place of one of the file's parent folders, is an error.
  func linkPointer(_ repoID: String, commit: String, file: String, etag: String) throws(HubError) {
    let pointer = try pointerPath(repoID, commit: commit, file: file)
    _ = try blobPath(repoID, etag: etag)
    let loc = HubLocation(repoID: repoID, file: file, revision: commit)
    let parts = file.split(separator: "/").map(String.init)
    let folder = try openFolder(repoFolder(repoID), ["snapshots", commit] + parts.dropLast(), loc)
    defer { close(folder) }
    let name = parts.last!
    let target = Self.pointerTarget(file: file, etag: etag)
    var info = stat()
    if fstatat(folder, name, &info, AT_SYMLINK_NOFOLLOW) == 0 {
      switch info.st_mode & S_IFMT {
      case S_IFLNK:
        if Self.readLink(folder, name) == target { return }
      case S_IFREG:
        break
      default:
        throw HubError.cache(
          loc, path: pointer.path, detail: "a folder (or other non-file) is where the file's symlink goes; remove it")
      }
      if unlinkat(folder, name, 0) != 0, errno != ENOENT {
        throw HubError.cache(loc, path: pointer.path, detail: "cannot replace: \(Self.lastError())")
      }
    }
    if symlinkat(target, folder, name) != 0 {
      let error = Self.lastError()
      if Self.readLink(folder, name) == target { return }  // a concurrent writer
      throw HubError.cache(loc, path: pointer.path, detail: "cannot create symlink: \(error)")
    }
  }

  /// `../../blobs/<etag>` with one `../` per level of `file` (the relative target huggingface_hub writes).
  static func pointerTarget(file: String, etag: String) -> String {
    String(repeating: "../", count: file.split(separator: "/").count + 1) + "blobs/" + etag
  }

  /// True when `snapshots/<commit>/<file>` is the symlink ``linkPointer(_:commit:file:etag:)`` makes for `etag`.
  func isLinked(_ repoID: String, commit: String, file: String, etag: String) -> Bool {
    guard let pointer = try? pointerPath(repoID, commit: commit, file: file) else { return false }
    return (try? FileManager.default.destinationOfSymbolicLink(atPath: pointer.path))
      == Self.pointerTarget(file: file, etag: etag)
  }

  /// Removes a file or symlink (never a folder; nothing if absent).
  static func removeFile(_ path: String) {
    _ = unlink(path)
  }

  /// Opens a cache file for writing without following a symlink at `path` (created when `create`), or -1.
  static func openForWriting(_ path: String, create: Bool) -> Int32 {
    open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | (create ? O_CREAT : 0), 0o666)
  }

  func createDirectory(_ url: URL) throws(HubError) {
    do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
      throw HubError.cache(nil, path: url.path, detail: "cannot create folder: \(error.localizedDescription)")
    }
  }

  /// Opens `base/components…` as a folder, creating what is missing. `base` (the cache root or a repo folder, which
  /// a user may have made a symlink) is created and followed; below it, each component must be a real folder:
  /// a symlink (even to a folder inside the cache) or a file is refused with a ``HubError/cache(_:path:detail:)``.
  func openFolder(_ base: URL, _ components: [String], _ loc: HubLocation?) throws(HubError) -> Int32 {
    try createDirectory(base)
    var fd = open(base.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw HubError.cache(loc, path: base.path, detail: "cannot open: \(Self.lastError())") }
    var path = base.path
    for name in components {
      path += "/" + name
      if mkdirat(fd, name, 0o777) != 0, errno != EEXIST {
        let error = Self.lastError()
        close(fd)
        throw HubError.cache(loc, path: path, detail: "cannot create folder: \(error)")
      }
      let next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
      let code = errno
      close(fd)
      guard next >= 0 else {
        let detail =
          code == ELOOP || code == ENOTDIR
          ? "a symlink or a file is where a folder of the cache goes; refusing to follow or replace it (remove it)"
          : "cannot open folder: \(String(cString: strerror(code)))"
        throw HubError.cache(loc, path: path, detail: detail)
      }
      fd = next
    }
    return fd
  }

  /// Writes `data` to a unique temporary name in `folder`, then renames it over `name`.
  func writeAtomically(_ data: Data, folder: Int32, name: String, path: String, _ loc: HubLocation?)
    throws(HubError)
  {
    let tmp = "\(name).\(UUID().uuidString.prefix(8).lowercased()).tmp"
    let fd = openat(folder, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o666)
    guard fd >= 0 else { throw HubError.cache(loc, path: path, detail: "cannot write: \(Self.lastError())") }
    let written = Self.writeAll(fd, data)
    close(fd)
    guard written, renameat(folder, tmp, folder, name) == 0 else {
      let error = Self.lastError()
      _ = unlinkat(folder, tmp, 0)
      throw HubError.cache(loc, path: path, detail: "cannot write: \(error)")
    }
  }

  static func writeAll(_ fd: Int32, _ data: Data) -> Bool {
    data.withUnsafeBytes { raw in
      var offset = 0
      while offset < raw.count {
        let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
        if n < 0, errno == EINTR { continue }
        guard n > 0 else { return false }
        offset += n
      }
      return true
    }
  }

  static func readLink(_ folder: Int32, _ name: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlinkat(folder, name, &buffer, buffer.count - 1)
    guard n >= 0 else { return nil }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  static func lastError() -> String { String(cString: strerror(errno)) }
}
