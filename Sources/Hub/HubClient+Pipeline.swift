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
  /// - Parameter variant: diffusers' `variant` (e.g. `fp16`): which weight files to prefer (only
  ///   compared with the listed file names, never joined into a path).
  public func downloadPipeline(
    repoID: String, revision: String? = nil, variant: String? = nil, verify: Bool = false,
    progress: HubProgressHandler? = nil
  ) async throws(HubError) -> URL {
    let revision = revision ?? "main"
    let loc = HubLocation(repoID: repoID, revision: revision)
    let text = HubReference.repo(repoID: repoID, revision: revision).description
    try HubName.check(repoID, as: .repoID, reference: text)
    try HubName.check(revision, as: .revision, reference: text)
    if configuration.offline { return try cachedPipelineOffline(loc, variant: variant) }

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
          if let folder = try? cachedPipelineOffline(loc, variant: variant) { return folder }
          throw error
        default: throw error
        }
      }
      try cache.writeRef(repoID, revision: revision, commit: commit)
    }
    let pinned = HubLocation(repoID: repoID, revision: commit)

    var entries = cache.tree(repoID, commit: commit, maxBytes: configuration.maxListingBytes)
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
    let components = try HubWireFormat.pipelineComponents(
      modelIndex: readModelIndex(index, indexLoc), location: indexLoc
    ).map(\.name).filter { !configuration.skippedComponents.contains($0) }
    let files = PipelineFiles.select(files: paths, components: components, variant: variant)
      .filter { $0 != "model_index.json" }
    for (i, file) in files.enumerated() {
      let job = FileJob(
        loc: HubLocation(repoID: repoID, file: file, revision: commit), index: i + 1, count: files.count,
        verify: verify, progress: progress)
      _ = try await fetchFile(job, metadata: nil)
    }
    return try cache.snapshotFolder(repoID, commit: commit)
  }

  /// The downloaded `model_index.json`, refused when larger than ``HubConfiguration/maxMetadataBodyBytes``.
  func readModelIndex(_ url: URL, _ loc: HubLocation) throws(HubError) -> Data {
    let limit = configuration.maxMetadataBodyBytes
    guard let data = HubCache.readFile(url.path, upTo: limit) else {
      throw HubError.cache(loc, path: url.path, detail: "cannot read the downloaded model_index.json")
    }
    guard data.count <= limit else {
      throw HubError.protocolViolation(loc, detail: "model_index.json is larger than \(Self.formatLimit(limit))")
    }
    return data
  }

  /// `GET {endpoint}/api/models/{repo}/revision/{commit}?blobs=true` → the repo's files (at most
  /// ``HubConfiguration/maxListingBytes`` of JSON, within ``HubConfiguration/metadataDeadline``), as
  /// ``HubWireFormat/parseFileList(_:location:)`` reads them.
  func fileList(_ pinned: HubLocation, requested: HubLocation) async throws(HubError) -> [RepoFileEntry] {
    let url = try endpointURL(
      "api/models/\(pinned.repoID)/revision/\(Self.quote(pinned.revision))?blobs=true", requested)
    let response = try await send(
      hubRequest(url, method: "GET", timeout: configuration.metadataTimeout), requested,
      options: metadataOptions(followRedirects: true, listing: true))
    if let error = classify(response, requested) { throw error }
    guard (200..<300).contains(response.status) else {
      throw HubError.protocolViolation(requested, detail: "the file list answered \(response.status)")
    }
    return try HubWireFormat.parseFileList(response.body, location: requested)
  }

  /// The cached snapshot of a pipeline, if complete as far as the cache can tell.
  func cachedPipelineOffline(_ loc: HubLocation, variant: String? = nil) throws(HubError) -> URL {
    guard let commit = cache.commit(loc.repoID, revision: loc.revision) else {
      throw HubError.offlineNotCached(loc, missing: ["\(loc.repoID)@\(loc.revision) (no refs/\(loc.revision))"])
    }
    let folder = try cache.snapshotFolder(loc.repoID, commit: commit)
    let fm = FileManager.default
    let indexLoc = HubLocation(repoID: loc.repoID, file: "model_index.json", revision: commit)
    let index = try cache.pointerPath(loc.repoID, commit: commit, file: "model_index.json")
    guard fm.fileExists(atPath: index.path) else {
      throw HubError.offlineNotCached(loc, missing: ["model_index.json"])
    }
    let components = try HubWireFormat.pipelineComponents(
      modelIndex: readModelIndex(index, indexLoc), location: indexLoc
    ).filter { !configuration.skippedComponents.contains($0.name) }
    func isCached(_ file: String) -> Bool {
      (try? cache.pointerPath(loc.repoID, commit: commit, file: file)).map { fm.fileExists(atPath: $0.path) } ?? false
    }
    var missing: [String]
    if let entries = cache.tree(loc.repoID, commit: commit, maxBytes: configuration.maxListingBytes) {
      missing = PipelineFiles.select(files: entries.map(\.path), components: components.map(\.name), variant: variant)
        .filter { !isCached($0) }
    } else {
      // No cached file list: at least every named component must have its folder.
      missing = components.filter { $0.library != nil && !isCached($0.name) }.map { $0.name + "/" }
    }
    if !missing.isEmpty { throw HubError.offlineNotCached(loc, missing: missing) }
    return folder
  }
}
