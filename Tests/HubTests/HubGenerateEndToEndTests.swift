import Foundation
import Testing

@testable import Hub

/// The README's first command, verified against the loopback hub: `generate` with hub references
/// for the pipeline, the IP-Adapter and (implicitly) its image encoder, into an empty cache; then
/// the same command offline from the warm cache with no request at all.
@Suite struct HubGenerateEndToEndTests {
  static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

  /// Every file under `folder` (symlinks followed) as a repo file; weights as LFS files.
  static func repo(_ id: String, folder: URL, under prefix: String = "") throws -> FakeHub.Repo {
    var files: [FakeHub.File] = []
    let walker = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil)!
    for case let url as URL in walker {
      let resolved = url.resolvingSymlinksInPath()
      var isDir: ObjCBool = false
      guard FileManager.default.fileExists(atPath: resolved.path, isDirectory: &isDir), !isDir.boolValue else { continue }
      let relative = String(url.path.dropFirst(folder.path.count + 1))
      let path = prefix.isEmpty ? relative : "\(prefix)/\(relative)"
      let data = try Data(contentsOf: resolved)
      files.append(FakeHub.File(path: path, data: data, lfs: path.hasSuffix(".safetensors") || path.hasSuffix(".bin")))
    }
    let commit = String(repeating: "c0ffee", count: 7).prefix(40)
    return FakeHub.Repo(id: id, commit: String(commit), refs: ["main": String(commit)], token: nil, files: files)
  }

  static var executable: URL {
    URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
      .appendingPathComponent("ipadapter")
  }

  /// Runs the CLI and waits for it on a thread of its own: the loopback hub answers on Swift's
  /// cooperative pool (two threads on the 2-core machine), which a blocking wait would starve when
  /// two such tests run at once.
  static func run(_ arguments: [String], environment: [String: String]) async throws -> (Int32, String) {
    let p = Process()
    p.executableURL = executable
    p.arguments = arguments
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let err = Pipe()
    p.standardError = err
    p.standardOutput = Pipe()
    try p.run()
    return await withCheckedContinuation { continuation in
      Thread.detachNewThread {
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        continuation.resume(returning: (p.terminationStatus, String(decoding: e, as: UTF8.self)))
      }
    }
  }

  @Test func generateDownloadsByHubReferenceThenRunsOffline() async throws {
    let pipeline = try Self.repo("stable-diffusion-v1-5/stable-diffusion-v1-5", folder: Self.fixtures.appendingPathComponent("tiny-sd15"))
    let adapters = try Self.repo("h94/IP-Adapter", folder: Self.fixtures.appendingPathComponent("tiny-ip-adapter/models"), under: "models")
    let hub = try await FakeHub.start(repos: [pipeline, adapters])
    defer { Task { await hub.stop() } }
    let cache = FileManager.default.temporaryDirectory.appendingPathComponent("hub-e2e-\(UUID().uuidString)")
    let out = cache.appendingPathComponent("out.png")
    try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: cache) }
    let arguments = [
      "generate", "--model", "stable-diffusion-v1-5/stable-diffusion-v1-5",
      "--ip-adapter", "h94/IP-Adapter/models/ip-adapter-plus_sd15.safetensors",
      "--ip-image", Self.fixtures.appendingPathComponent("images/reference.png").path,
      "--prompt", "a red cube", "--seed", "0", "--steps", "2", "--quiet", "--output", out.path,
    ]
    let env = ["HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": cache.appendingPathComponent("hub").path, "HF_TOKEN": ""]
    let (status, stderr) = try await Self.run(arguments, environment: env)
    #expect(status == 0, "\(stderr)")
    #expect(FileManager.default.fileExists(atPath: out.path))
    let snapshots = cache.appendingPathComponent("hub/models--h94--IP-Adapter/snapshots")
    let commit = try FileManager.default.contentsOfDirectory(atPath: snapshots.path).first ?? ""
    #expect(FileManager.default.fileExists(atPath: snapshots.appendingPathComponent("\(commit)/models/image_encoder/model.safetensors").path))

    hub.resetLog()
    try FileManager.default.removeItem(at: out)
    let (offline, offlineErr) = try await Self.run(arguments, environment: env.merging(["HF_HUB_OFFLINE": "1"]) { $1 })
    #expect(offline == 0, "\(offlineErr)")
    #expect(hub.count("GET") == 0 && hub.count("HEAD") == 0)
  }
}

/// LoRAs and FaceID adapters by hub reference: `--lora org/name/file.safetensors:W` and a FaceID
/// adapter from an h94/IP-Adapter-FaceID-like repo (no image encoder in it, none fetched).
@Suite struct HubLoRAEndToEndTests {
  @Test func loraAndFaceIDAdapterAreFetchedByReference() async throws {
    let fixtures = HubGenerateEndToEndTests.fixtures
    let pipeline = try HubGenerateEndToEndTests.repo(
      "stable-diffusion-v1-5/stable-diffusion-v1-5", folder: fixtures.appendingPathComponent("tiny-sd15"))
    let faceID = try HubGenerateEndToEndTests.repo("h94/IP-Adapter-FaceID", folder: fixtures.appendingPathComponent("faceid"))
    let lora = try HubGenerateEndToEndTests.repo("someone/watercolor-lora", folder: fixtures.appendingPathComponent("lora"))
    let hub = try await FakeHub.start(repos: [pipeline, faceID, lora])
    defer { Task { await hub.stop() } }
    let cache = FileManager.default.temporaryDirectory.appendingPathComponent("hub-lora-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: cache) }
    let out = cache.appendingPathComponent("out.png")
    let (status, stderr) = try await HubGenerateEndToEndTests.run(
      [
        "generate", "--model", "stable-diffusion-v1-5/stable-diffusion-v1-5", "--prompt", "a portrait", "--seed", "0",
        "--steps", "2", "--quiet", "--output", out.path, "--lora", "someone/watercolor-lora/sd15-kohya.safetensors:0.8",
        "--ip-adapter", "h94/IP-Adapter-FaceID/ip-adapter-faceid_sd15.bin",
        "--face-embedding", fixtures.appendingPathComponent("faceid/face-a.npy").path,
      ],
      environment: ["HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": cache.appendingPathComponent("hub").path, "HF_TOKEN": ""])
    #expect(status == 0, "\(stderr)")
    #expect(FileManager.default.fileExists(atPath: out.path))
    let snapshots = cache.appendingPathComponent("hub/models--someone--watercolor-lora/snapshots")
    let commit = try FileManager.default.contentsOfDirectory(atPath: snapshots.path).first ?? ""
    #expect(FileManager.default.fileExists(atPath: snapshots.appendingPathComponent("\(commit)/sd15-kohya.safetensors").path))
    // Only the two files asked for were downloaded from those repos.
    let faceSnapshots = cache.appendingPathComponent("hub/models--h94--IP-Adapter-FaceID/snapshots")
    let faceCommit = try FileManager.default.contentsOfDirectory(atPath: faceSnapshots.path).first ?? ""
    #expect(try FileManager.default.contentsOfDirectory(atPath: faceSnapshots.appendingPathComponent(faceCommit).path) == ["ip-adapter-faceid_sd15.bin"])
  }
}

/// `--face-models org/name[/sub]`: an insightface pack in a hub repository (as users mirror
/// antelopev2); only the detector and the recogniser are fetched, then the analysis runs.
@Suite struct HubFaceModelsEndToEndTests {
  @Test func faceModelsAreFetchedFromAHubRepository() async throws {
    let fixtures = HubGenerateEndToEndTests.fixtures
    let pack = try HubGenerateEndToEndTests.repo(
      "someone/antelopev2", folder: fixtures.appendingPathComponent("face/packs/tiny_antelopev2"), under: "models/antelopev2")
    let hub = try await FakeHub.start(repos: [pack])
    defer { Task { await hub.stop() } }
    let cache = FileManager.default.temporaryDirectory.appendingPathComponent("hub-face-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: cache) }
    let out = cache.appendingPathComponent("faces.safetensors")
    let (status, stderr) = try await HubGenerateEndToEndTests.run(
      ["face", fixtures.appendingPathComponent("face/img_a.png").path, "--face-models", "someone/antelopev2/models/antelopev2",
       "--output", out.path],
      environment: ["HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": cache.appendingPathComponent("hub").path, "HF_TOKEN": ""])
    #expect(status == 0, "\(stderr)")
    #expect(FileManager.default.fileExists(atPath: out.path))
    let snapshots = cache.appendingPathComponent("hub/models--someone--antelopev2/snapshots")
    let commit = try FileManager.default.contentsOfDirectory(atPath: snapshots.path).first ?? ""
    let folder = snapshots.appendingPathComponent("\(commit)/models/antelopev2")
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() == ["glintr100.onnx", "scrfd_10g_bnkps.onnx"])
  }
}

/// `--instantid InstantX/InstantID`: the adapter (`ip-adapter.bin`) and IdentityNet
/// (`ControlNetModel/`) fetched from a hub repo laid out as InstantX/InstantID; nothing else of
/// the repo is downloaded.
@Suite struct HubInstantIDEndToEndTests {
  @Test func instantIDIsFetchedByReference() async throws {
    let fixtures = HubGenerateEndToEndTests.fixtures
    let pipeline = try HubGenerateEndToEndTests.repo("someone/tiny-sdxl", folder: fixtures.appendingPathComponent("tiny-sdxl"))
    var instantID = try HubGenerateEndToEndTests.repo("InstantX/InstantID", folder: fixtures.appendingPathComponent("instantid/tiny-instantid"))
    instantID.files.append(FakeHub.File(path: "README.md", data: Data("# InstantID\n".utf8), lfs: false))
    let hub = try await FakeHub.start(repos: [pipeline, instantID])
    defer { Task { await hub.stop() } }
    let cache = FileManager.default.temporaryDirectory.appendingPathComponent("hub-instantid-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: cache) }
    let out = cache.appendingPathComponent("out.png")
    let (status, stderr) = try await HubGenerateEndToEndTests.run(
      [
        "generate", "--model", "someone/tiny-sdxl", "--instantid", "InstantX/InstantID", "--prompt", "a portrait", "--seed", "0",
        "--steps", "2", "--width", "64", "--height", "48", "--quiet", "--output", out.path,
        "--face-image", fixtures.appendingPathComponent("face/img_a.png").path,
        "--face-models", fixtures.appendingPathComponent("face/packs/tiny_faceid24").path,
      ],
      environment: ["HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": cache.appendingPathComponent("hub").path, "HF_TOKEN": ""])
    #expect(status == 0, "\(stderr)")
    #expect(FileManager.default.fileExists(atPath: out.path))
    let snapshots = cache.appendingPathComponent("hub/models--InstantX--InstantID/snapshots")
    let commit = try FileManager.default.contentsOfDirectory(atPath: snapshots.path).first ?? ""
    let root = snapshots.appendingPathComponent(commit)
    #expect(try FileManager.default.contentsOfDirectory(atPath: root.path).sorted() == ["ControlNetModel", "ip-adapter.bin"])
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("ControlNetModel").path).sorted()
        == ["config.json", "diffusion_pytorch_model.safetensors"])
  }
}
