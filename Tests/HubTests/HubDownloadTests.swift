import Foundation
import Testing

@testable import Hub

/// Downloads against the loopback hub: resume, corruption, locking, concurrency, retries and errors.
@Suite struct HubDownloadTests {
  static let big = FakeHub.File(path: "weights/big.safetensors", data: pseudoRandomData(96 * 1024, seed: 7), lfs: true)
  static let small = FakeHub.File(path: "config.json", data: Data("{\"hidden_size\": 8}\n".utf8), lfs: false)
  static let repo = FakeHub.Repo(
    id: "robust-org/robust", commit: String(repeating: "ab", count: 20),
    refs: ["main": String(repeating: "ab", count: 20)], token: nil, files: [big, small])

  struct Env {
    let hub: FakeHub
    let temp: TempFolder
    let client: HubClient
    func done() async {
      await hub.stop()
      temp.remove()
    }
    var blob: URL { try! client.cache.blobPath(repo.id, etag: big.sha256) }
    var incomplete: URL { try! client.cache.incompletePath(repo.id, etag: big.sha256) }
    var lock: URL { try! client.cache.lockPath(repo.id, etag: big.sha256) }
  }

  static func env(attempts: Int = 3) async throws -> Env {
    let hub = try await FakeHub.start(repos: [repo])
    let temp = try TempFolder()
    return Env(hub: hub, temp: temp, client: makeClient(hub, cache: temp.url, attempts: attempts))
  }

  static func content(_ url: URL) throws -> Data { try Data(contentsOf: url.resolvingSymlinksInPath()) }

  @Test func downloadsLFSFileThroughCDNRedirect() async throws {
    let e = try await Self.env()
    let path = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    #expect(try Self.content(path) == Self.big.data)
    #expect(path.path.hasSuffix("snapshots/\(Self.repo.commit)/weights/big.safetensors"))
    let head = e.hub.log.first { $0.method == "HEAD" }!
    #expect(head.acceptEncoding == "identity")
    #expect(e.hub.count("GET", containing: "/cdn/") == 1)
    #expect(!FileManager.default.fileExists(atPath: e.incomplete.path))
    await e.done()
  }

  @Test func secondCallWithWarmCacheMakesNoGET() async throws {
    let e = try await Self.env()
    _ = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    _ = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.small.path)
    e.hub.resetLog()
    _ = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    _ = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.small.path)
    #expect(e.hub.count("GET") == 0)
    #expect(e.hub.count("HEAD") == 2)
    // At a commit hash the cache answers alone (huggingface_hub's shortcut).
    e.hub.resetLog()
    _ = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path, revision: Self.repo.commit)
    #expect(e.hub.log.isEmpty)
    await e.done()
  }

  @Test func resumesAfterConnectionCutHalfWay() async throws {
    let e = try await Self.env()
    e.hub.inject(.cut(afterBytes: 40_000), matching: "/cdn/")
    let path = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    #expect(try Self.content(path) == Self.big.data)
    let gets = e.hub.log.filter { $0.method == "GET" && $0.path.contains("/cdn/") }
    #expect(gets.count == 2)
    #expect(gets.first?.range == nil)
    #expect(gets.last?.range == "bytes=40000-")
    await e.done()
  }

  @Test func resumesIncompleteFileLeftByAnEarlierRun() async throws {
    let e = try await Self.env()
    try FileManager.default.createDirectory(
      at: e.incomplete.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Self.big.data.prefix(12_345).write(to: e.incomplete)
    let path = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    #expect(try Self.content(path) == Self.big.data)
    #expect(e.hub.log.first { $0.path.contains("/cdn/") }?.range == "bytes=12345-")
    await e.done()
  }

  @Test func serverIgnoringRangeRestartsFromZero() async throws {
    let e = try await Self.env()
    try FileManager.default.createDirectory(
      at: e.incomplete.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Self.big.data.prefix(5000).write(to: e.incomplete)
    e.hub.inject(.ignoreRange, matching: "/cdn/")
    let path = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    #expect(try Self.content(path) == Self.big.data)
    await e.done()
  }

  @Test func everyAttemptCutLeavesOnlyIncomplete() async throws {
    let e = try await Self.env(attempts: 2)
    e.hub.inject(.cut(afterBytes: 0), matching: "/cdn/", times: 10)
    await #expect {
      _ = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    } throws: { error in
      guard case .network(let loc, _) = error as? HubError else { return false }
      return loc.file == Self.big.path && loc.repoID == Self.repo.id && loc.revision == "main"
    }
    #expect(!FileManager.default.fileExists(atPath: e.blob.path))
    let pointer = try e.client.cache.pointerPath(Self.repo.id, commit: Self.repo.commit, file: Self.big.path)
    #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: pointer.path)) == nil)
    await e.done()
  }

  @Test func corruptTransferIsFetchedAgain() async throws {
    let e = try await Self.env()
    e.hub.inject(.corrupt, matching: "/cdn/")
    let path = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    #expect(try Self.content(path) == Self.big.data)
    #expect(e.hub.count("GET", containing: "/cdn/") == 2)
    await e.done()
  }

  @Test func persistentlyCorruptTransferFailsWithoutABlob() async throws {
    let e = try await Self.env()
    e.hub.inject(.corrupt, matching: "/cdn/", times: 10)
    await #expect {
      _ = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    } throws: { error in
      if case .corrupt = error as? HubError { return true }
      return false
    }
    #expect(!FileManager.default.fileExists(atPath: e.blob.path))
    #expect(!FileManager.default.fileExists(atPath: e.incomplete.path))
    await e.done()
  }

  @Test func corruptOrShortBlobInCacheIsFetchedAgain() async throws {
    let e = try await Self.env()
    let path = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    // Same size, other bytes: found by the digest check (verify: true).
    var damaged = Self.big.data
    damaged[100] ^= 0xFF
    try damaged.write(to: e.blob)
    e.hub.resetLog()
    _ = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path, verify: true)
    #expect(try Self.content(path) == Self.big.data)
    #expect(e.hub.count("GET", containing: "/cdn/") == 1)
    // Short: found by the size check alone.
    try Self.big.data.prefix(1000).write(to: e.blob)
    e.hub.resetLog()
    _ = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    #expect(try Self.content(path) == Self.big.data)
    #expect(e.hub.count("GET", containing: "/cdn/") == 1)
    await e.done()
  }

  @Test func lockFileIsHeldDuringDownload() async throws {
    let e = try await Self.env()
    e.hub.inject(.slow(chunk: 8192, delayMs: 30), matching: "/cdn/")
    let lockPath = e.lock.path
    let incompletePath = e.incomplete.path
    let blobPath = e.blob.path
    let observed = ObservedFlags()
    _ = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path) { p in
      guard p.completedBytes > 0, p.completedBytes < Self.big.data.count else { return }
      observed.record(
        lockHeld: FileLock.isHeld(path: lockPath),
        incompleteExists: FileManager.default.fileExists(atPath: incompletePath),
        blobExists: FileManager.default.fileExists(atPath: blobPath))
    }
    #expect(observed.samples > 0)
    #expect(observed.allLockHeld && observed.allIncomplete && observed.noBlob)
    #expect(FileManager.default.fileExists(atPath: lockPath))  // left in place, as huggingface_hub does
    #expect(!FileLock.isHeld(path: lockPath))
    await e.done()
  }

  @Test func slowButSteadyDownloadOutlastsTheIdleTimeout() async throws {
    let hub = try await FakeHub.start(repos: [Self.repo])
    let temp = try TempFolder()
    defer { temp.remove() }
    var configuration = HubConfiguration(endpoint: hub.endpoint, cacheDirectory: temp.url)
    configuration.downloadTimeout = 1
    configuration.metadataTimeout = 1
    hub.inject(.slow(chunk: 8192, delayMs: 100), matching: "/cdn/")  // ~2.4 s in all, never 1 s silent
    let path = try await HubClient(configuration: configuration).downloadFile(repoID: Self.repo.id, path: Self.big.path)
    #expect(try Self.content(path) == Self.big.data)
    #expect(hub.count("GET", containing: "/cdn/") == 1)
    await hub.stop()
  }

  @Test func concurrentDownloadsOfTheSameFileDoNotCorruptIt() async throws {
    let e = try await Self.env()
    e.hub.inject(.slow(chunk: 16384, delayMs: 20), matching: "/cdn/")
    let client2 = makeClient(e.hub, cache: e.temp.url)
    async let a = e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    async let b = client2.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    let (pathA, pathB) = try await (a, b)
    #expect(pathA == pathB)
    #expect(try Self.content(pathA) == Self.big.data)
    #expect(e.hub.count("GET", containing: "/cdn/") == 1)  // the second waited on the lock, then reused the blob
    #expect(!FileManager.default.fileExists(atPath: e.incomplete.path))
    await e.done()
  }

  @Test func serverErrorIsRetriedThenSucceeds() async throws {
    let e = try await Self.env()
    e.hub.inject(.status(500), matching: "/cdn/", times: 2)
    e.hub.inject(.status(503), matching: "/resolve/", times: 1)
    let path = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.big.path)
    #expect(try Self.content(path) == Self.big.data)
    await e.done()
  }

  @Test func persistentServerErrorIsTyped() async throws {
    let e = try await Self.env()
    e.hub.inject(.status(500), matching: "/resolve/", times: 10)
    await #expect {
      _ = try await e.client.downloadFile(repoID: Self.repo.id, path: Self.small.path)
    } throws: { error in
      guard case .server(let loc, let status, _) = error as? HubError else { return false }
      return status == 500 && loc.file == Self.small.path && "\(error)".contains(Self.repo.id)
    }
    #expect(e.hub.count("HEAD") == 3)
    await e.done()
  }

  @Test func notFoundNamesRepoFileAndRevision() async throws {
    let e = try await Self.env()
    do {
      _ = try await e.client.downloadFile(repoID: Self.repo.id, path: "nope.bin")
      Issue.record("expected notFound")
    } catch {
      #expect(error == .notFound(HubLocation(repoID: Self.repo.id, file: "nope.bin", revision: "main"), missing: .file, cached: false))
      #expect("\(error)".contains("nope.bin") && "\(error)".contains(Self.repo.id) && "\(error)".contains("main"))
    }
    let marker = try e.client.cache.repoFolder(Self.repo.id).appendingPathComponent(".no_exist/\(Self.repo.commit)/nope.bin")
    #expect(FileManager.default.fileExists(atPath: marker.path))
    await #expect(throws: HubError.notFound(HubLocation(repoID: "robust-org/absent", file: "x", revision: "main"), missing: .repo, cached: false)) {
      _ = try await e.client.downloadFile(repoID: "robust-org/absent", path: "x")
    }
    await #expect(throws: HubError.notFound(HubLocation(repoID: Self.repo.id, file: "config.json", revision: "v9"), missing: .revision, cached: false)) {
      _ = try await e.client.downloadFile(repoID: Self.repo.id, path: "config.json", revision: "v9")
    }
    await e.done()
  }

  @Test func gatedRepoNeedsToken() async throws {
    let repos = try HubFixtures.repos()
    let token = repos.first { $0.id == "gated-org/gated-tiny" }!.token!
    let hub = try await FakeHub.start(repos: repos)
    let temp = try TempFolder()
    defer { temp.remove() }
    let anonymous = makeClient(hub, cache: temp.url)
    do {
      _ = try await anonymous.downloadFile(repoID: "gated-org/gated-tiny", path: "model.safetensors")
      Issue.record("expected accessDenied")
    } catch {
      guard case .accessDenied(let loc, 401, true, false) = error else {
        Issue.record("unexpected \(error)")
        return
      }
      #expect(loc.repoID == "gated-org/gated-tiny" && loc.file == "model.safetensors")
      #expect("\(error)".contains("HF_TOKEN"))
    }
    let wrong = makeClient(hub, cache: temp.url, token: "hf_wrong")
    await #expect {
      _ = try await wrong.downloadFile(repoID: "gated-org/gated-tiny", path: "model.safetensors")
    } throws: { error in
      if case .accessDenied(_, 401, true, true) = error as? HubError { return true }
      return false
    }
    hub.resetLog()
    let authorised = makeClient(hub, cache: temp.url, token: token)
    let path = try await authorised.downloadFile(repoID: "gated-org/gated-tiny", path: "model.safetensors")
    #expect(FileManager.default.fileExists(atPath: path.path))
    #expect(hub.log.first { $0.method == "HEAD" }?.authorization == "Bearer \(token)")
    #expect(hub.log.first { $0.path.contains("/cdn/") }?.authorization == nil)  // the token stays on the hub
    await hub.stop()
  }
}

/// What the lock test saw from the progress callback (called on URLSession's queue).
final class ObservedFlags: @unchecked Sendable {
  private let lock = NSLock()
  private(set) var samples = 0
  private(set) var allLockHeld = true
  private(set) var allIncomplete = true
  private(set) var noBlob = true
  func record(lockHeld: Bool, incompleteExists: Bool, blobExists: Bool) {
    lock.withLock {
      samples += 1
      allLockHeld = allLockHeld && lockHeld
      allIncomplete = allIncomplete && incompleteExists
      noBlob = noBlob && !blobExists
    }
  }
}
