import Foundation

@testable import Hub

/// Tests/Fixtures/hub: the repos tools/reference/gen_hub_fixtures.py made and the cache layout huggingface_hub
/// produced from them.
enum HubFixtures {
  static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/hub")

  /// The served repos (files read from repos/<org>/<name>/…; LFS as repos.json says).
  static func repos() throws -> [FakeHub.Repo] {
    let data = try Data(contentsOf: folder.appendingPathComponent("repos.json"))
    let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
    return try (object["repos"] as! [[String: Any]]).map { r in
      let id = r["id"] as! String
      let files = try (r["files"] as! [[String: Any]]).map { f -> FakeHub.File in
        let path = f["path"] as! String
        let content = try Data(contentsOf: folder.appendingPathComponent("repos/\(id)/\(path)"))
        return FakeHub.File(path: path, data: content, lfs: f["lfs"] as! Bool)
      }
      return FakeHub.Repo(
        id: id, commit: r["commit"] as! String, refs: r["refs"] as! [String: String],
        token: r["token"] as? String, files: files)
    }
  }

  struct Layout {
    var token: String
    var scenario: [[String: Any]]
    var entries: [Entry]
  }

  /// One cache entry: a path relative to the cache root and what is there.
  struct Entry: Equatable, CustomStringConvertible {
    var path: String
    var kind: String
    var target: String?
    var size: Int64?
    var sha256: String?
    var description: String {
      "\(kind) \(path)" + (target.map { " -> \($0)" } ?? "") + (size.map { " \($0)B" } ?? "")
        + (sha256.map { " \($0.prefix(12))" } ?? "")
    }
  }

  static func expectedLayout() throws -> Layout {
    let data = try Data(contentsOf: folder.appendingPathComponent("expected-layout.json"))
    let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
    let entries = (object["entries"] as! [[String: Any]]).map { e in
      Entry(
        path: e["path"] as! String, kind: e["kind"] as! String, target: e["target"] as? String,
        size: (e["size"] as? NSNumber)?.int64Value, sha256: e["sha256"] as? String)
    }
    return Layout(token: object["token"] as! String, scenario: object["scenario"] as! [[String: Any]], entries: entries)
  }

  /// The cache tree as gen_hub_fixtures.py's `walk_cache` records it.
  static func walk(_ root: URL) throws -> [Entry] {
    let fm = FileManager.default
    var entries: [Entry] = []
    let relatives = fm.enumerator(atPath: root.path)?.allObjects as? [String] ?? []
    for rel in relatives {
      let path = root.appendingPathComponent(rel).path
      if let target = try? fm.destinationOfSymbolicLink(atPath: path) {
        entries.append(Entry(path: rel, kind: "symlink", target: target))
        continue
      }
      var isDir: ObjCBool = false
      _ = fm.fileExists(atPath: path, isDirectory: &isDir)
      if isDir.boolValue {
        entries.append(Entry(path: rel, kind: "dir"))
      } else {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        entries.append(
          Entry(path: rel, kind: "file", size: Int64(data.count), sha256: Digest.hex(.sha256, data)))
      }
    }
    return entries.sorted { $0.path.unicodeScalars.lexicographicallyPrecedes($1.path.unicodeScalars) }
  }
}

/// A fresh temporary folder, removed when the value is released... by the test that made it (call `remove()`).
struct TempFolder {
  let url: URL
  init() throws {
    url = FileManager.default.temporaryDirectory.appendingPathComponent("hubtests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  }
  func remove() { try? FileManager.default.removeItem(at: url) }
}

/// A client for `hub` with its own cache, fast retries and short timeouts.
func makeClient(_ hub: FakeHub?, cache: URL, token: String? = nil, offline: Bool = false, attempts: Int = 3)
  -> HubClient
{
  var configuration = HubConfiguration(
    endpoint: hub?.endpoint ?? "http://127.0.0.1:9", cacheDirectory: cache, token: token, offline: offline)
  configuration.retryBackoff = 0.01
  configuration.maxAttempts = attempts
  configuration.metadataTimeout = 5
  configuration.downloadTimeout = 5
  return HubClient(configuration: configuration)
}

/// Deterministic bytes.
func pseudoRandomData(_ count: Int, seed: UInt64 = 1) -> Data {
  var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
  return Data((0..<count).map { _ in
    state ^= state << 13
    state ^= state >> 7
    state ^= state << 17
    return UInt8(truncatingIfNeeded: state)
  })
}
