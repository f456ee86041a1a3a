import Foundation

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

extension HubClient {
  /// A diffusers pipeline repo: downloads what ``PipelineFiles`` selects and returns `snapshots/<commit>`.
  ///
  /// Requests: `HEAD …/resolve/{revision}/model_index.json` (the commit); the file list
  /// `GET {endpoint}/api/models/{repo}/revision/{commit}?blobs=true` unless `trees/<commit>.json` is cached
  /// (then written there); then each selected file as ``downloadFile(repoID:path:revision:verify:progress:)`` at
  /// the commit, which skips the network for files already in the snapshot. A warm cache thus costs one HEAD.
  /// Offline, or when the hub cannot be reached, the cached snapshot is checked against the cached file list and
  /// returned, or ``HubError/offlineNotCached(_:missing:)`` lists what is missing.
  ///
  /// matches: diffusers 0.42.1 `DiffusionPipeline.download` → huggingface_hub 2.4.0 `snapshot_download` (same
  /// cache entries, including `refs/`, `trees/<commit>.json` and `.locks/`). Limitations: files are fetched one
  /// after the other (huggingface_hub uses 8 threads); see ``PipelineFiles`` for the selection's limits.
  public func downloadPipeline(
    repoID: String, revision: String? = nil, verify: Bool = false, progress: HubProgressHandler? = nil
  ) async throws(HubError) -> URL {
    let revision = revision ?? "main"
    let loc = HubLocation(repoID: repoID, revision: revision)
    if configuration.offline { return try cachedPipelineOffline(loc) }

    var indexLoc = HubLocation(repoID: repoID, file: "model_index.json", revision: revision)
    var indexMetadata: FileMetadata?
    let commit: String
    if HubCache.isCommitHash(revision) {
      commit = revision
    } else {
      do throws(HubError) {
        let metadata = try await fileMetadata(indexLoc, retry: cache.commit(repoID, revision: revision) == nil)
        indexMetadata = metadata
        commit = metadata.commit
      } catch {
        switch error {
        case .network, .server, .accessDenied, .protocolViolation:
          if let folder = try? cachedPipelineOffline(loc) { return folder }
          throw error
        default: throw error
        }
      }
      try cache.writeRef(repoID, revision: revision, commit: commit)
    }
    let pinned = HubLocation(repoID: repoID, revision: commit)

    var entries = cache.tree(repoID, commit: commit)
    if entries == nil {
      let listed = try await fileList(pinned, requested: loc)
      if listed.allSatisfy({ !$0.blobID.isEmpty }) { try? cache.writeTree(repoID, commit: commit, entries: listed) }
      entries = listed
    }
    let paths = entries!.map(\.path)
    guard paths.contains("model_index.json") else {
      throw HubError.notFound(indexLoc, missing: .file, cached: false)
    }

    indexLoc.revision = commit
    let index = try await fetchFile(
      FileJob(loc: indexLoc, index: 1, count: 1, verify: verify, progress: progress), metadata: indexMetadata)
    let components: [String]
    do {
      components = try PipelineFiles.components(modelIndex: Data(contentsOf: index))
        .filter { !configuration.skippedComponents.contains($0) }
    } catch {
      throw HubError.protocolViolation(indexLoc, detail: "model_index.json is not a JSON object")
    }
    let files = PipelineFiles.select(files: paths, components: components).filter { $0 != "model_index.json" }
    for (i, file) in files.enumerated() {
      let job = FileJob(
        loc: HubLocation(repoID: repoID, file: file, revision: commit), index: i + 1, count: files.count,
        verify: verify, progress: progress)
      _ = try await fetchFile(job, metadata: nil)
    }
    return cache.snapshotFolder(repoID, commit: commit)
  }

  /// `GET {endpoint}/api/models/{repo}/revision/{commit}?blobs=true` → the repo's files.
  func fileList(_ pinned: HubLocation, requested: HubLocation) async throws(HubError) -> [RepoFileEntry] {
    let url = URL(
      string: "\(configuration.endpoint)/api/models/\(pinned.repoID)/revision/\(Self.quote(pinned.revision))?blobs=true")!
    let response = try await send(
      hubRequest(url, method: "GET", timeout: configuration.metadataTimeout), requested, followRedirects: true)
    if let error = classify(response, requested) { throw error }
    guard let object = try? JSONSerialization.jsonObject(with: response.body) as? [String: Any],
      let siblings = object["siblings"] as? [[String: Any]]
    else { throw HubError.protocolViolation(requested, detail: "the file list is not JSON with 'siblings'") }
    return siblings.compactMap { s -> RepoFileEntry? in
      guard let path = s["rfilename"] as? String else { return nil }
      let lfs = s["lfs"] as? [String: Any]
      return RepoFileEntry(
        path: path, size: (s["size"] as? NSNumber)?.int64Value ?? 0, blobID: s["blobId"] as? String ?? "",
        lfsSHA256: lfs?["sha256"] as? String, lfsSize: (lfs?["size"] as? NSNumber)?.int64Value)
    }
  }

  /// The cached snapshot of a pipeline, if complete as far as the cache can tell.
  func cachedPipelineOffline(_ loc: HubLocation) throws(HubError) -> URL {
    guard let commit = cache.commit(loc.repoID, revision: loc.revision) else {
      throw HubError.offlineNotCached(loc, missing: ["\(loc.repoID)@\(loc.revision) (no refs/\(loc.revision))"])
    }
    let folder = cache.snapshotFolder(loc.repoID, commit: commit)
    let fm = FileManager.default
    let index = folder.appendingPathComponent("model_index.json")
    guard let indexData = try? Data(contentsOf: index) else {
      throw HubError.offlineNotCached(loc, missing: ["model_index.json"])
    }
    let components = ((try? PipelineFiles.components(modelIndex: indexData)) ?? [])
      .filter { !configuration.skippedComponents.contains($0) }
    var missing: [String]
    if let entries = cache.tree(loc.repoID, commit: commit) {
      missing = PipelineFiles.select(files: entries.map(\.path), components: components)
        .filter { !fm.fileExists(atPath: folder.appendingPathComponent($0).path) }
    } else {
      // No cached file list: at least every named component must have its folder.
      let object = (try? JSONSerialization.jsonObject(with: indexData)) as? [String: Any] ?? [:]
      missing = components.filter { ((object[$0] as? [Any])?.first as? String) != nil }
        .filter { !fm.fileExists(atPath: folder.appendingPathComponent($0).path) }.map { $0 + "/" }
    }
    if !missing.isEmpty { throw HubError.offlineNotCached(loc, missing: missing) }
    return folder
  }
}
