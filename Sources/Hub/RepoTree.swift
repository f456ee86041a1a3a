import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// One file of a repo at a commit, as the hub's file listings describe it.
///
/// matches: huggingface_hub 2.4.0 `TreeCacheEntry` (`_tree_cache.py`) and the `siblings` of
/// `GET /api/models/{repo}/revision/{rev}?blobs=true`. Limitations: `xetHash` is only carried, never used.
public struct RepoFileEntry: Equatable, Sendable {
  /// Path in the repo, `/`-separated.
  public var path: String
  /// Size of the content in bytes (for LFS files the real size, not the pointer's).
  public var size: Int64
  /// Git blob id (for LFS files: of the pointer file).
  public var blobID: String
  /// sha256 of the content, for files stored in LFS.
  public var lfsSHA256: String?
  public var lfsSize: Int64?
  public var xetHash: String?

  public init(
    path: String, size: Int64, blobID: String, lfsSHA256: String? = nil, lfsSize: Int64? = nil, xetHash: String? = nil
  ) {
    self.path = path
    self.size = size
    self.blobID = blobID
    self.lfsSHA256 = lfsSHA256
    self.lfsSize = lfsSize
    self.xetHash = xetHash
  }

  /// The etag the hub serves for this file (sha256 for LFS, else the git blob id): the blob's name in the cache.
  public var etag: String { lfsSHA256 ?? blobID }
}

/// `trees/<commit>.json`: the file list of a repo at a commit, written byte for byte as huggingface_hub writes it
/// (`json.dump(indent=1)`, files sorted by path), so either side can read the other's.
///
/// matches: huggingface_hub 2.4.0 `_tree_cache.py` (`format_version` 1). Limitations: unknown format versions
/// are treated as absent, as there; so is a file whose entries break ``HubName``'s rules (reading is
/// ``HubWireFormat/decodeTree(_:)``).
enum RepoTree {
  static func encode(_ entries: [RepoFileEntry]) -> Data {
    var out = "{\n \"format_version\": 1,\n \"files\": {"
    let sorted = entries.sorted { Array($0.path.unicodeScalars).lexicographicallyPrecedes(Array($1.path.unicodeScalars)) }
    for (i, e) in sorted.enumerated() {
      out += i == 0 ? "\n" : ",\n"
      var fields = ["\"size\": \(e.size)", "\"blob_id\": \(quote(e.blobID))"]
      if let sha = e.lfsSHA256 {
        fields.append("\"lfs_sha256\": \(quote(sha))")
        fields.append("\"lfs_size\": " + (e.lfsSize.map { String($0) } ?? "null"))
      }
      if let xet = e.xetHash { fields.append("\"xet_hash\": \(quote(xet))") }
      out += "  \(quote(e.path)): {\n" + fields.map { "   " + $0 }.joined(separator: ",\n") + "\n  }"
    }
    out += sorted.isEmpty ? "}\n}" : "\n }\n}"
    return Data(out.utf8)
  }

  /// A JSON string literal as Python's `json.dumps` (ensure_ascii) writes it.
  static func quote(_ s: String) -> String {
    var out = "\""
    for unit in s.utf16 {
      switch unit {
      case 0x22: out += "\\\""
      case 0x5C: out += "\\\\"
      case 0x0A: out += "\\n"
      case 0x0D: out += "\\r"
      case 0x09: out += "\\t"
      case 0x08: out += "\\b"
      case 0x0C: out += "\\f"
      case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(unit)!)
      default: out += String(format: "\\u%04x", unit)
      }
    }
    return out + "\""
  }
}

extension HubCache {
  /// The cached file list of a repo at a commit, if one was recorded, is at most `maxBytes` long and passes
  /// ``HubWireFormat/decodeTree(_:)``'s checks.
  public func tree(_ repoID: String, commit: String, maxBytes: Int = 32 << 20) -> [RepoFileEntry]? {
    guard let path = try? treePath(repoID, commit: commit), let data = Self.readFile(path.path, upTo: maxBytes),
      data.count <= maxBytes
    else { return nil }
    return HubWireFormat.decodeTree(data)
  }

  func writeTree(_ repoID: String, commit: String, entries: [RepoFileEntry]) throws(HubError) {
    let path = try treePath(repoID, commit: commit)
    let folder = try openFolder(repoFolder(repoID), ["trees"], HubLocation(repoID: repoID, revision: commit))
    defer { close(folder) }
    try writeAtomically(RepoTree.encode(entries), folder: folder, name: path.lastPathComponent, path: path.path, nil)
  }
}
