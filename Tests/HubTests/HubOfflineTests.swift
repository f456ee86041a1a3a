import Foundation
import Testing

@testable import Hub

/// `HF_HUB_OFFLINE=1`, an unreachable hub, and pipeline downloads with warm and partial caches.
@Suite struct HubOfflineTests {
  static let pipe = "tiny-org/tiny-sd-pipe"
  static let ip = "h94-test/IP-Adapter-tiny"
  static let ipFile = "models/ip-adapter_sd15.safetensors"

  /// A cache warmed online with the pipeline and one IP-Adapter file.
  static func warmCache() async throws -> (FakeHub, TempFolder) {
    let hub = try await FakeHub.start(repos: try HubFixtures.repos())
    let temp = try TempFolder()
    let client = makeClient(hub, cache: temp.url)
    _ = try await client.downloadPipeline(repoID: pipe)
    _ = try await client.downloadFile(repoID: ip, path: ipFile)
    return (hub, temp)
  }

  @Test func offlineWithWarmCacheDoesNoNetworkIO() async throws {
    let (hub, temp) = try await Self.warmCache()
    defer { temp.remove() }
    hub.resetLog()
    let offline = makeClient(hub, cache: temp.url, offline: true)
    let folder = try await offline.downloadPipeline(repoID: Self.pipe)
    #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("unet/config.json").path))
    let file = try await offline.resolve("\(Self.ip)/\(Self.ipFile)")
    #expect(FileManager.default.fileExists(atPath: file.path))
    _ = try await offline.resolve(.repo(repoID: Self.pipe, revision: "main"))
    #expect(hub.log.isEmpty)
    await hub.stop()
  }

  @Test func offlineWithColdCacheIsTypedError() async throws {
    let temp = try TempFolder()
    defer { temp.remove() }
    let offline = makeClient(nil, cache: temp.url, offline: true)
    await #expect {
      _ = try await offline.downloadFile(repoID: Self.ip, path: Self.ipFile)
    } throws: { error in
      guard case .offlineNotCached(let loc, let missing) = error as? HubError else { return false }
      return loc.repoID == Self.ip && loc.file == Self.ipFile && !missing.isEmpty
        && "\(error)".contains("HF_HUB_OFFLINE")
    }
    await #expect {
      _ = try await offline.downloadPipeline(repoID: Self.pipe)
    } throws: { error in
      if case .offlineNotCached = error as? HubError { return true }
      return false
    }
  }

  @Test func offlineListsMissingPipelineFiles() async throws {
    let (hub, temp) = try await Self.warmCache()
    defer { temp.remove() }
    await hub.stop()
    let offline = makeClient(nil, cache: temp.url, offline: true)
    let folder = try await offline.downloadPipeline(repoID: Self.pipe)
    try FileManager.default.removeItem(at: folder.appendingPathComponent("vae/diffusion_pytorch_model.safetensors"))
    await #expect(
      throws: HubError.offlineNotCached(
        HubLocation(repoID: Self.pipe, revision: "main"), missing: ["vae/diffusion_pytorch_model.safetensors"])
    ) {
      _ = try await offline.downloadPipeline(repoID: Self.pipe)
    }
  }

  @Test func offlineRemembersMissingFiles() async throws {
    let (hub, temp) = try await Self.warmCache()
    defer { temp.remove() }
    let online = makeClient(hub, cache: temp.url)
    await #expect(throws: HubError.self) { _ = try await online.downloadFile(repoID: Self.ip, path: "nope.bin") }
    await hub.stop()
    let offline = makeClient(nil, cache: temp.url, offline: true)
    await #expect(
      throws: HubError.notFound(HubLocation(repoID: Self.ip, file: "nope.bin", revision: "main"), missing: .file, cached: true)
    ) {
      _ = try await offline.downloadFile(repoID: Self.ip, path: "nope.bin")
    }
  }

  @Test func unreachableHubFallsBackToCache() async throws {
    let (hub, temp) = try await Self.warmCache()
    defer { temp.remove() }
    await hub.stop()
    let client = makeClient(hub, cache: temp.url)  // same endpoint, nothing listening any more
    let file = try await client.downloadFile(repoID: Self.ip, path: Self.ipFile)
    #expect(FileManager.default.fileExists(atPath: file.path))
    let folder = try await client.downloadPipeline(repoID: Self.pipe)
    #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("model_index.json").path))
  }

  @Test func warmPipelineCostsOneHEAD() async throws {
    let (hub, temp) = try await Self.warmCache()
    defer { temp.remove() }
    hub.resetLog()
    let client = makeClient(hub, cache: temp.url)
    _ = try await client.downloadPipeline(repoID: Self.pipe)
    #expect(hub.log.map(\.method) == ["HEAD"])
    #expect(hub.log.first?.path.hasSuffix("/resolve/main/model_index.json") == true)
    await hub.stop()
  }

  @Test func pipelineFetchesOnlyMissingFilesAfterPartialCache() async throws {
    let (hub, temp) = try await Self.warmCache()
    defer { temp.remove() }
    let cache = HubCache(root: temp.url)
    let commit = cache.commit(Self.pipe, revision: "main")!
    let link = try cache.pointerPath(Self.pipe, commit: commit, file: "unet/diffusion_pytorch_model.safetensors")
    try FileManager.default.removeItem(at: link)
    hub.resetLog()
    let folder = try await makeClient(hub, cache: temp.url).downloadPipeline(repoID: Self.pipe)
    #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("unet/diffusion_pytorch_model.safetensors").path))
    #expect(hub.count("GET") == 0)  // the blob was still there: only relinked
    #expect(hub.count("HEAD") == 2)
    await hub.stop()
  }

  @Test func pipelineDownloadSkipsTheSafetyChecker() async throws {
    let index = #"{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"]}"#
    let files = [
      FakeHub.File(path: "model_index.json", data: Data(index.utf8), lfs: false),
      FakeHub.File(path: "unet/config.json", data: Data("{}".utf8), lfs: false),
      FakeHub.File(path: "unet/diffusion_pytorch_model.safetensors", data: pseudoRandomData(4096, seed: 3), lfs: true),
      FakeHub.File(path: "safety_checker/config.json", data: Data("{}".utf8), lfs: false),
      FakeHub.File(path: "safety_checker/model.safetensors", data: pseudoRandomData(4096, seed: 4), lfs: true),
    ]
    let commit = String(repeating: "cd", count: 20)
    let repo = FakeHub.Repo(id: "tiny-org/with-checker", commit: commit, refs: ["main": commit], token: nil, files: files)
    let hub = try await FakeHub.start(repos: [repo])
    let temp = try TempFolder()
    defer { temp.remove() }
    let folder = try await makeClient(hub, cache: temp.url).downloadPipeline(repoID: repo.id)
    let fm = FileManager.default
    #expect(fm.fileExists(atPath: folder.appendingPathComponent("unet/diffusion_pytorch_model.safetensors").path))
    #expect(!fm.fileExists(atPath: folder.appendingPathComponent("safety_checker").path))
    #expect(hub.count("GET", containing: "safety_checker") == 0)
    await hub.stop()
    // Offline, the missing checker is not reported as missing.
    let offline = makeClient(nil, cache: temp.url, offline: true)
    let again = try await offline.downloadPipeline(repoID: repo.id)
    #expect(again == folder)
  }
}
