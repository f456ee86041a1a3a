import Foundation

/// One file of a cached revision.
///
/// matches: huggingface_hub 2.4.0 `CachedFileInfo` (`file_name` → `path` relative to the snapshot, `blob_path`,
/// `size_on_disk`). Limitations: no access/modification times.
public struct CachedFile: Sendable, Equatable {
  /// Path in the repo.
  public var path: String
  /// The blob it points to.
  public var blobPath: String
  public var size: Int64
}

/// One snapshot (a commit) of a cached repo.
///
/// matches: huggingface_hub 2.4.0 `CachedRevisionInfo` (`commit_hash`, `refs`, `files`, `size_on_disk` over
/// distinct blobs). Limitations: no modification time.
public struct CachedRevision: Sendable, Equatable {
  public var commit: String
  /// The branches/tags in `refs/` that point to it.
  public var refs: [String]
  public var files: [CachedFile]
  /// Bytes of the distinct blobs its files point to.
  public var sizeOnDisk: Int64
}

/// A repo in the cache, as `huggingface-cli scan-cache` (`hf cache ls`) describes it.
///
/// matches: huggingface_hub 2.4.0 `scan_cache_dir` (`CachedRepoInfo`): `sizeOnDisk` sums every blob of the repo,
/// `blobCount` counts them; `.incomplete` downloads are not counted. Limitations: model repos only; symlinks whose
/// blob is missing are reported with size 0 instead of as a corrupted-cache warning.
public struct CachedRepo: Sendable, Equatable {
  public var repoID: String
  public var path: String
  public var revisions: [CachedRevision]
  public var sizeOnDisk: Int64
  public var blobCount: Int
  /// The latest modification time of any blob (nil if none).
  public var lastModified: Date?
}

extension HubCache {
  /// Every `models--*` repo in the cache, sorted by repo id.
  public func listCachedRepos() -> [CachedRepo] {
    let fm = FileManager.default
    guard let names = try? fm.contentsOfDirectory(atPath: root.path) else { return [] }
    return names.filter { $0.hasPrefix("models--") }.sorted().compactMap { scanRepo(folderName: $0) }
  }

  func scanRepo(folderName: String) -> CachedRepo? {
    let fm = FileManager.default
    let folder = root.appendingPathComponent(folderName)
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: folder.path, isDirectory: &isDir), isDir.boolValue else { return nil }
    let repoID = folderName.dropFirst("models--".count).replacingOccurrences(of: "--", with: "/")

    var blobSizes: [String: Int64] = [:]
    var lastModified: Date?
    let blobs = folder.appendingPathComponent("blobs")
    for name in (try? fm.contentsOfDirectory(atPath: blobs.path)) ?? [] where !name.hasSuffix(".incomplete") {
      let path = blobs.appendingPathComponent(name).path
      guard let attributes = try? fm.attributesOfItem(atPath: path) else { continue }
      blobSizes[path] = (attributes[.size] as? NSNumber)?.int64Value ?? 0
      if let date = attributes[.modificationDate] as? Date, lastModified.map({ date > $0 }) ?? true {
        lastModified = date
      }
    }

    var refsByCommit: [String: [String]] = [:]
    let refsFolder = folder.appendingPathComponent("refs")
    if let enumerator = fm.enumerator(atPath: refsFolder.path) {
      for case let ref as String in enumerator {
        let path = refsFolder.appendingPathComponent(ref).path
        _ = fm.fileExists(atPath: path, isDirectory: &isDir)
        guard !isDir.boolValue, let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
        refsByCommit[text.trimmingCharacters(in: .whitespacesAndNewlines), default: []].append(ref)
      }
    }

    var revisions: [CachedRevision] = []
    let snapshots = folder.appendingPathComponent("snapshots")
    for commit in ((try? fm.contentsOfDirectory(atPath: snapshots.path)) ?? []).sorted() {
      let snapshot = snapshots.appendingPathComponent(commit)
      var files: [CachedFile] = []
      var seen = Set<String>()
      var size: Int64 = 0
      for relative in (fm.enumerator(atPath: snapshot.path)?.allObjects as? [String] ?? []).sorted() {
        let path = snapshot.appendingPathComponent(relative).path
        guard fm.fileExists(atPath: path, isDirectory: &isDir) ? !isDir.boolValue : true else { continue }
        let blob = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let blobSize = blobSizes[blob] ?? Self.sizeOf(blob)
        files.append(CachedFile(path: relative, blobPath: blob, size: blobSize))
        if seen.insert(blob).inserted { size += blobSize }
      }
      revisions.append(
        CachedRevision(commit: commit, refs: (refsByCommit[commit] ?? []).sorted(), files: files, sizeOnDisk: size))
    }
    return CachedRepo(
      repoID: repoID, path: folder.path, revisions: revisions, sizeOnDisk: blobSizes.values.reduce(0, +),
      blobCount: blobSizes.count, lastModified: lastModified)
  }

  static func sizeOf(_ path: String) -> Int64 {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
  }
}

extension HubCache {
  /// "1.2K", "3.4G", "512.0": decimal units, one decimal (huggingface_hub's `_format_size`).
  public static func formatSize(_ bytes: Int64) -> String {
    var value = Double(bytes)
    for unit in ["", "K", "M", "G", "T", "P", "E", "Z"] {
      if abs(value) < 1000 { return String(format: "%3.1f%@", value, unit) }
      value /= 1000
    }
    return String(format: "%.1fY", value)
  }
}
