import Foundation
import Testing

@testable import Hub

/// The cache our client makes is, entry for entry and byte for byte, the one huggingface_hub made from the same
/// repos (Tests/Fixtures/hub/expected-layout.json, from tools/reference/gen_hub_fixtures.py).
@Suite struct HubLayoutTests {
  /// Runs the generator's scenario against `hub` into `cache`.
  static func runScenario(_ layout: HubFixtures.Layout, hub: FakeHub, cache: URL) async throws {
    let anonymous = makeClient(hub, cache: cache)
    let authorised = makeClient(hub, cache: cache, token: layout.token)
    for step in layout.scenario {
      let repo = step["repo"] as! String
      let revision = step["revision"] as? String
      switch step["op"] as! String {
      case "pipeline":
        _ = try await anonymous.downloadPipeline(repoID: repo, revision: revision)
      case "file":
        let client = (step["token"] as? Bool) == true ? authorised : anonymous
        _ = try await client.downloadFile(repoID: repo, path: step["path"] as! String, revision: revision)
      case "missing":
        await #expect(throws: HubError.self) {
          _ = try await anonymous.downloadFile(repoID: repo, path: step["path"] as! String, revision: revision)
        }
      default: Issue.record("unknown step \(step)")
      }
    }
  }

  @Test func cacheTreeMatchesHuggingfaceHubByteForByte() async throws {
    let layout = try HubFixtures.expectedLayout()
    let hub = try await FakeHub.start(repos: try HubFixtures.repos())
    let temp = try TempFolder()
    defer { temp.remove() }
    try await Self.runScenario(layout, hub: hub, cache: temp.url)
    await hub.stop()

    let actual = try HubFixtures.walk(temp.url)
    let expected = layout.entries
    let missing = expected.filter { e in !actual.contains(e) }
    let extra = actual.filter { a in !expected.contains(a) }
    #expect(missing.isEmpty, "entries huggingface_hub made that we did not (or made differently):\n\(missing.map(\.description).joined(separator: "\n"))")
    #expect(extra.isEmpty, "entries we made that huggingface_hub did not:\n\(extra.map(\.description).joined(separator: "\n"))")
    #expect(actual.count == expected.count)
  }

  @Test func pipelineSelectionMatchesDiffusers() throws {
    let layout = try HubFixtures.expectedLayout()
    let repo = try HubFixtures.repos().first { $0.id == "tiny-org/tiny-sd-pipe" }!
    let prefix = "models--tiny-org--tiny-sd-pipe/snapshots/\(repo.commit)/"
    let diffusers = layout.entries.filter { $0.kind == "symlink" && $0.path.hasPrefix(prefix) }
      .map { String($0.path.dropFirst(prefix.count)) }.sorted()
    let index = repo.files.first { $0.path == "model_index.json" }!.data
    let ours = PipelineFiles.select(
      files: repo.files.map(\.path),
      components: try HubWireFormat.pipelineComponents(
        modelIndex: index, location: HubLocation(repoID: repo.id, file: "model_index.json", revision: repo.commit)
      ).map(\.name))
    #expect(ours == diffusers)
  }

  @Test func listCachedReposSummarisesTheScenario() async throws {
    let layout = try HubFixtures.expectedLayout()
    let hub = try await FakeHub.start(repos: try HubFixtures.repos())
    let temp = try TempFolder()
    defer { temp.remove() }
    try await Self.runScenario(layout, hub: hub, cache: temp.url)
    await hub.stop()

    let repos = HubCache(root: temp.url).listCachedRepos()
    #expect(repos.map(\.repoID) == ["gated-org/gated-tiny", "h94-test/IP-Adapter-tiny", "tiny-org/tiny-sd-pipe"])
    for repo in repos {
      let blobs = layout.entries.filter {
        $0.kind == "file" && $0.path.hasPrefix(HubCache.folderName(repoID: repo.repoID) + "/blobs/")
      }
      #expect(repo.blobCount == blobs.count)
      #expect(repo.sizeOnDisk == blobs.compactMap(\.size).reduce(0, +))
      #expect(repo.revisions.count == 1)
      #expect(repo.revisions[0].refs.contains("main"))
    }
    let ip = repos.first { $0.repoID == "h94-test/IP-Adapter-tiny" }!
    #expect(ip.revisions[0].refs == ["main", "v1.0"])
    #expect(ip.revisions[0].files.map(\.path).contains("models/ip-adapter_sd15.safetensors"))
  }
}
