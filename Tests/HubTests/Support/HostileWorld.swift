import Foundation
import Testing

@testable import Hub

/// A temporary root holding the cache (`cache/`) and, beside it, a `sentinel/` folder that a traversal would reach
/// (`victim.txt`, `inner/keep.bin`, a symlink): ``outside()`` records everything under the root but outside the
/// cache (kind, size, content digest, symlink target, permissions, modification time) so that a test can prove that
/// nothing there was created, changed or removed. The hub (and any other loopback server) is given a token; ``finish``
/// checks that only the hub itself ever received it.
struct HostileWorld {
  static let token = "hf_hostile_secret_0123456789"

  let temp: TempFolder
  let hub: FakeHub
  /// Other loopback servers a hostile hub redirects to: they must never see the token.
  var others: [FakeHub] = []
  let before: [String: String]

  var root: URL { temp.url }
  var cacheURL: URL { root.appendingPathComponent("cache") }
  var sentinel: URL { root.appendingPathComponent("sentinel") }
  var victim: URL { sentinel.appendingPathComponent("victim.txt") }
  var cache: HubCache { HubCache(root: cacheURL) }

  static let victimContent = Data("a file outside the cache: must never be touched\n".utf8)

  /// Starts `repos` on a FakeHub and lays out the sentinel; `plant` may add things to the cache before the
  /// snapshot of the outside is taken.
  static func start(_ repos: [FakeHub.Repo], plant: (URL, URL) throws -> Void = { _, _ in }) async throws
    -> HostileWorld
  {
    let temp = try TempFolder()
    let fm = FileManager.default
    let cache = temp.url.appendingPathComponent("cache")
    let sentinel = temp.url.appendingPathComponent("sentinel")
    try fm.createDirectory(at: cache, withIntermediateDirectories: true)
    try fm.createDirectory(at: sentinel.appendingPathComponent("inner"), withIntermediateDirectories: true)
    try victimContent.write(to: sentinel.appendingPathComponent("victim.txt"))
    try Data(repeating: 7, count: 100).write(to: sentinel.appendingPathComponent("inner/keep.bin"))
    try fm.createSymbolicLink(atPath: sentinel.appendingPathComponent("link").path, withDestinationPath: "victim.txt")
    try plant(cache, sentinel)
    let hub = try await FakeHub.start(repos: repos)
    return HostileWorld(temp: temp, hub: hub, before: Self.outside(temp.url))
  }

  /// A client of the hub with the token, small timeouts and fast retries; `configure` adjusts it further.
  func client(attempts: Int = 2, endpoint: String? = nil, _ configure: (inout HubConfiguration) -> Void = { _ in })
    -> HubClient
  {
    var configuration = HubConfiguration(
      endpoint: endpoint ?? hub.endpoint, cacheDirectory: cacheURL, token: Self.token)
    configuration.retryBackoff = 0.01
    configuration.maxAttempts = attempts
    configuration.metadataTimeout = 5
    configuration.downloadTimeout = 5
    configure(&configuration)
    return HubClient(configuration: configuration)
  }

  /// The error `body` throws (nil, recorded as an issue, when it succeeds or throws something else).
  func error(_ body: () async throws -> some Any) async -> HubError? {
    do {
      _ = try await body()
      Issue.record("expected a HubError, got success")
      return nil
    } catch let error as HubError {
      #expect(!"\(error)".contains(Self.token), "the token is in the error message")
      return error
    } catch {
      Issue.record("expected a HubError, got \(error)")
      return nil
    }
  }

  /// What `body` returns (nil, recorded as an issue, when it throws), so that ``finish`` still runs.
  func success<T>(_ body: () async throws -> T) async -> T? {
    do { return try await body() } catch {
      Issue.record("unexpected error: \(error)")
      return nil
    }
  }

  /// Asserts that nothing outside the cache changed and that no server but the hub saw the token; stops the servers
  /// and removes the root.
  func finish(sourceLocation: SourceLocation = #_sourceLocation) async {
    let after = Self.outside(root)
    let changed = Set(before.keys).union(after.keys).filter { before[$0] != after[$0] }.sorted()
    #expect(
      changed.isEmpty,
      "touched outside the cache:\n\(changed.map { "\($0): \(before[$0] ?? "absent") → \(after[$0] ?? "absent")" }.joined(separator: "\n"))",
      sourceLocation: sourceLocation)
    #expect((try? Data(contentsOf: victim)) == Self.victimContent, sourceLocation: sourceLocation)
    for other in others {
      let leaked = other.log.filter { $0.authorization != nil }
      #expect(leaked.isEmpty, "the token went to \(other.endpoint): \(leaked.map(\.path))", sourceLocation: sourceLocation)
      await other.stop()
    }
    for request in hub.log where request.authorization != nil {
      #expect(request.authorization == "Bearer \(Self.token)", sourceLocation: sourceLocation)
    }
    #expect(escapingSymlinks().isEmpty, "cache symlinks leading outside: \(escapingSymlinks())", sourceLocation: sourceLocation)
    await hub.stop()
    temp.remove()
  }

  /// Symlinks in the cache whose target (resolved lexically from the link's folder) lies outside the cache, except
  /// those a test planted on purpose (``plantedLinks``).
  func escapingSymlinks() -> [String] {
    let fm = FileManager.default
    let base = HubCache.lexicallyNormalized(cacheURL.path)
    var out: [String] = []
    for relative in (fm.enumerator(atPath: cacheURL.path)?.allObjects as? [String]) ?? [] {
      let path = cacheURL.appendingPathComponent(relative).path
      guard let target = try? fm.destinationOfSymbolicLink(atPath: path), !plantedLinks.contains(relative) else {
        continue
      }
      let resolved =
        target.hasPrefix("/")
        ? HubCache.lexicallyNormalized(target)
        : HubCache.lexicallyNormalized((path as NSString).deletingLastPathComponent + "/" + target)
      if !resolved.hasPrefix(base + "/") { out.append("\(relative) -> \(target)") }
    }
    return out
  }

  /// Symlinks a test planted in the cache on purpose (relative to the cache), exempt from ``escapingSymlinks``.
  var plantedLinks: Set<String> = []

  /// Everything under `root` except `root/cache`, described.
  static func outside(_ root: URL) -> [String: String] {
    let fm = FileManager.default
    var out: [String: String] = [:]
    var queue = [""]
    while let relative = queue.popLast() {
      let path = relative.isEmpty ? root.path : root.appendingPathComponent(relative).path
      guard let attributes = try? fm.attributesOfItem(atPath: path) else { continue }
      let type = attributes[.type] as? FileAttributeType
      let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
      let mtime = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
      var description = "mode \(String(mode, radix: 8)) mtime \(mtime)"
      switch type {
      case .typeSymbolicLink?:
        description = "symlink -> \((try? fm.destinationOfSymbolicLink(atPath: path)) ?? "?") " + description
      case .typeDirectory?:
        description = "dir " + description
        for name in (try? fm.contentsOfDirectory(atPath: path)) ?? [] where !(relative.isEmpty && name == "cache") {
          queue.append(relative.isEmpty ? name : relative + "/" + name)
        }
      default:
        let data = (try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data()
        description = "file \(data.count)B \(Digest.hex(.sha256, data).prefix(16)) " + description
      }
      out[relative.isEmpty ? "." : relative] = description
    }
    return out
  }
}

/// The plain repo most hostile tests serve: one LFS file behind the CDN redirect, one small file.
enum HostileRepos {
  static let commit = String(repeating: "ab", count: 20)
  static let big = FakeHub.File(path: "weights/big.safetensors", data: pseudoRandomData(96 * 1024, seed: 11), lfs: true)
  static let small = FakeHub.File(path: "config.json", data: Data("{\"hidden_size\": 8}\n".utf8), lfs: false)
  static let plain = FakeHub.Repo(
    id: "hostile-org/plain", commit: commit, refs: ["main": commit], token: HostileWorld.token, files: [big, small])

  /// A diffusers-like pipeline repo with these extra files and this `model_index.json`.
  static func pipeline(id: String = "hostile-org/pipe", commit: String = commit, modelIndex: String, extra: [FakeHub.File])
    -> FakeHub.Repo
  {
    let files =
      [
        FakeHub.File(path: "model_index.json", data: Data(modelIndex.utf8), lfs: false),
        FakeHub.File(path: "scheduler/scheduler_config.json", data: Data("{}".utf8), lfs: false),
        FakeHub.File(path: "unet/config.json", data: Data("{}".utf8), lfs: false),
        FakeHub.File(path: "unet/diffusion_pytorch_model.safetensors", data: pseudoRandomData(4096, seed: 5), lfs: true),
      ] + extra
    return FakeHub.Repo(id: id, commit: commit, refs: ["main": commit], token: HostileWorld.token, files: files)
  }

  static let modelIndex =
    #"{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], "scheduler": ["diffusers", "PNDMScheduler"]}"#
}
