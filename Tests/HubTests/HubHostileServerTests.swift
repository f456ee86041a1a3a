import Foundation
import Testing

@testable import Hub

/// A hostile hub (or `HF_ENDPOINT` mirror) against the real client: traversal in commit ids, file names, revisions,
/// listings and `model_index.json`; planted symlinks and folders in the cache; redirects to another origin; oversized
/// headers and bodies; wrong sizes and digests; stalls. Every test ends with ``HostileWorld/finish(sourceLocation:)``:
/// nothing outside the cache was created, changed or removed, no server but the hub saw the token, no symlink in the
/// cache leads outside it — and the error is the expected typed case.
@Suite(.timeLimit(.minutes(1))) struct HubHostileServerTests {
  typealias R = HostileRepos

  // MARK: traversal from the server

  /// The issue's first finding: `X-Repo-Commit: ../../../sentinel/evil` made the snapshot symlink (and, for a pipeline,
  /// `trees/<commit>.json`) land outside the cache.
  @Test func commitIdWithTraversalIsRefusedBeforeAnythingIsWritten() async throws {
    let evil = "../../../sentinel/evil-commit"
    var repo = R.pipeline(modelIndex: R.modelIndex, extra: [])
    repo.commit = evil
    repo.refs = ["main": evil]
    var plain = R.plain
    plain.commit = evil
    plain.refs = ["main": evil]
    let world = try await HostileWorld.start([repo, plain])
    let client = world.client()
    for (file, run) in [
      ("model_index.json", { _ = try await client.downloadPipeline(repoID: repo.id) }),
      (R.small.path, { _ = try await client.downloadFile(repoID: plain.id, path: R.small.path) }),
      (R.big.path, { _ = try await client.downloadFile(repoID: plain.id, path: R.big.path) }),
    ] as [(String, () async throws -> Void)] {
      let error = await world.error(run)
      guard case .protocolViolation(let loc, let detail)? = error else {
        Issue.record("expected protocolViolation, got \(String(describing: error))")
        continue
      }
      #expect(loc.file == file && detail.contains(evil))
      #expect("\(error!)".contains(loc.repoID) && "\(error!)".contains(file))
    }
    #expect(world.hub.count("GET") == 0)  // refused at the HEAD: no listing, no download
    #expect(world.cache.commit(repo.id, revision: "main") == nil)
    await world.finish()
  }

  /// A 404 carries `X-Repo-Commit` too: a hostile one must not place a `.no_exist` marker (or a ref) outside.
  @Test func commitIdOnA404CannotPlaceAMarkerOutside() async throws {
    var plain = R.plain
    plain.commit = "../../../sentinel/evil-404"
    plain.refs = ["main": plain.commit]
    let world = try await HostileWorld.start([plain])
    let error = await world.error { try await world.client().downloadFile(repoID: plain.id, path: "nope.bin") }
    if case .protocolViolation(let loc, let detail)? = error {
      #expect(loc.file == "nope.bin" && detail.contains(plain.commit))
      #expect(!FileManager.default.fileExists(atPath: world.cacheURL.appendingPathComponent("models--hostile-org--plain/.no_exist").path))
    } else {
      Issue.record("expected protocolViolation, got \(String(describing: error))")
    }
    await world.finish()
  }

  /// The issue's second finding: a listing entry `scheduler/../../../../../sentinel/victim.txt` (selected because it is
  /// under a component folder) made the pointer replacement delete that file and put a symlink there.
  @Test func listingWithATraversalNameIsRefusedWhole() async throws {
    let evil = "scheduler/../../../../../sentinel/victim.txt"
    let repo = R.pipeline(
      modelIndex: R.modelIndex, extra: [FakeHub.File(path: evil, data: Data("owned".utf8), lfs: false)])
    let world = try await HostileWorld.start([repo])
    // The path a client sends for it is dot-segment-normalised (…/hostile-org/sentinel/victim.txt): answer it.
    world.hub.inject(.serveAs(repoID: repo.id, file: evil), matching: "/sentinel/victim.txt", times: 10)
    let error = await world.error { try await world.client().downloadPipeline(repoID: repo.id) }
    if case .protocolViolation(let loc, let detail)? = error {
      #expect(loc.repoID == repo.id && detail.contains(evil) && detail.contains("'..'"))
      #expect(world.hub.count("GET", containing: "/resolve/") == 0)  // nothing fetched from a refused listing
      #expect(world.cache.tree(repo.id, commit: repo.commit) == nil)
    } else {
      Issue.record("expected protocolViolation, got \(String(describing: error))")
    }
    await world.finish()
  }

  @Test(arguments: [
    "/etc/passwd", "unet/./config.json", "unet//config.json", "unet\\..\\..\\x", "unet/con\u{1}fig.json",
    "unet/config.json/",
  ])
  func listingNamesBreakingTheRulesAreRefused(_ name: String) async throws {
    let repo = R.pipeline(modelIndex: R.modelIndex, extra: [FakeHub.File(path: name, data: Data("x".utf8), lfs: false)])
    let world = try await HostileWorld.start([repo])
    let error = await world.error { try await world.client().downloadPipeline(repoID: repo.id) }
    if case .protocolViolation(_, let detail)? = error {
      #expect(detail.contains("file list"))
      #expect(world.hub.count("GET", containing: "/resolve/") == 0)
    } else {
      Issue.record("expected protocolViolation, got \(String(describing: error))")
    }
    await world.finish()
  }

  /// `model_index.json` names folders; a name that is not one folder (`../../../sentinel`) is refused.
  @Test func modelIndexComponentWithTraversalIsRefused() async throws {
    let index =
      #"{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], "../../../sentinel": ["diffusers", "AutoencoderKL"]}"#
    let repo = R.pipeline(modelIndex: index, extra: [])
    let world = try await HostileWorld.start([repo])
    let error = await world.error { try await world.client().downloadPipeline(repoID: repo.id) }
    if case .protocolViolation(let loc, let detail)? = error {
      #expect(loc.file == "model_index.json" && detail.contains("../../../sentinel"))
      let fetched = world.hub.log.filter { $0.method == "GET" && $0.path.contains("/resolve/") }.map(\.path)
      #expect(fetched.count == 1 && fetched[0].hasSuffix("/model_index.json"))  // no component fetched
    } else {
      Issue.record("expected protocolViolation, got \(String(describing: error))")
    }
    await world.finish()
  }

  /// An etag names the blob: `..`, a backslash or `x.incomplete` (the name of another blob's partial download) is
  /// refused before any cache path is made.
  @Test(arguments: ["..", "..\\..\\sentinel", "\(String(repeating: "ab", count: 32)).incomplete"])
  func etagsThatCannotNameABlobAreRefused(_ etag: String) async throws {
    let world = try await HostileWorld.start([R.plain])
    world.hub.inject(.headers(["X-Linked-Etag": "\"\(etag)\""]), matching: "/resolve/", times: 10, method: "HEAD")
    let error = await world.error { try await world.client().downloadFile(repoID: R.plain.id, path: R.big.path) }
    if case .protocolViolation(let loc, let detail)? = error {
      #expect(loc.file == R.big.path && detail.contains("ETag"))
      #expect(world.hub.count("GET") == 0)
    } else {
      Issue.record("expected protocolViolation, got \(String(describing: error))")
    }
    await world.finish()
  }

  // MARK: traversal from the caller or the cache

  /// The API (unlike the CLI's ``HubReference``) took any repo id, path and revision: `refs/../../../sentinel/r`
  /// was written outside. Now every one is checked before a request is sent.
  @Test func hostilePathsAndRevisionsFromTheCallerAreRefused() async throws {
    let world = try await HostileWorld.start([R.plain])
    let client = world.client()
    let cases: [(String, String, String?)] = [
      (R.plain.id, "../../../sentinel/victim.txt", nil), (R.plain.id, "/etc/passwd", nil),
      (R.plain.id, R.small.path, "../../../sentinel/evil-ref"), (R.plain.id, R.small.path, "main\\..\\x"),
      (R.plain.id, R.small.path, "refs/./main"), ("../hostile/plain", R.small.path, nil),
      (R.plain.id, "a\u{0}b", nil),
    ]
    for (repoID, path, revision) in cases {
      let error = await world.error { try await client.downloadFile(repoID: repoID, path: path, revision: revision) }
      guard case .invalidReference(let text, let reason)? = error else {
        Issue.record("\(repoID) \(path) \(revision ?? ""): expected invalidReference, got \(String(describing: error))")
        continue
      }
      #expect(text.contains(HubName.printable(repoID)) && reason.contains("unusable"))
    }
    let error = await world.error { try await client.downloadPipeline(repoID: R.plain.id, revision: "../../../sentinel/r") }
    if case .invalidReference? = error {} else { Issue.record("expected invalidReference, got \(String(describing: error))") }
    #expect(world.hub.log.isEmpty)
    await world.finish()
  }

  /// A planted `refs/main` holding `../../../sentinel/x` is not a commit: the cache ignores it.
  @Test func plantedRefWithTraversalIsNotACommit() async throws {
    let world = try await HostileWorld.start([R.plain]) { cache, _ in
      let refs = cache.appendingPathComponent("models--hostile-org--plain/refs")
      try FileManager.default.createDirectory(at: refs, withIntermediateDirectories: true)
      try Data("../../../sentinel".utf8).write(to: refs.appendingPathComponent("main"))
    }
    #expect(world.cache.commit(R.plain.id, revision: "main") == nil)
    #expect(world.cache.cachedFile(R.plain.id, file: "victim.txt") == nil)
    let offline = world.client { $0.offline = true }
    let error = await world.error { try await offline.downloadFile(repoID: R.plain.id, path: "victim.txt") }
    if case .offlineNotCached? = error {} else { Issue.record("expected offlineNotCached, got \(String(describing: error))") }
    // Online, the hub's answer replaces the bad ref.
    _ = await world.success { try await world.client().downloadFile(repoID: R.plain.id, path: R.small.path) }
    #expect(world.cache.commit(R.plain.id, revision: "main") == R.commit)
    await world.finish()
  }

  // MARK: symlinks and folders planted in the cache

  /// A snapshot folder planted as a symlink to a folder outside the cache is not followed.
  @Test func symlinkPlantedAsASnapshotFolderIsNotFollowed() async throws {
    var world = try await HostileWorld.start([R.plain]) { cache, sentinel in
      let snapshot = cache.appendingPathComponent("models--hostile-org--plain/snapshots/\(R.commit)")
      try FileManager.default.createDirectory(at: snapshot, withIntermediateDirectories: true)
      try FileManager.default.createSymbolicLink(
        atPath: snapshot.appendingPathComponent("weights").path, withDestinationPath: sentinel.path)
    }
    world.plantedLinks = ["models--hostile-org--plain/snapshots/\(R.commit)/weights"]
    let error = await world.error { try await world.client().downloadFile(repoID: R.plain.id, path: R.big.path) }
    if case .cache(let loc, let path, let detail)? = error {
      #expect(loc?.file == R.big.path && path.hasSuffix("/snapshots/\(R.commit)/weights") && detail.contains("symlink"))
    } else {
      Issue.record("expected cache, got \(String(describing: error))")
    }
    await world.finish()
  }

  /// A folder where a file's symlink goes is never deleted (the old replacement removed whatever was there).
  @Test func folderWhereAPointerGoesIsNeverDeleted() async throws {
    let world = try await HostileWorld.start([R.plain]) { cache, _ in
      let folder = cache.appendingPathComponent("models--hostile-org--plain/snapshots/\(R.commit)/config.json")
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
      try Data("keep".utf8).write(to: folder.appendingPathComponent("keep.txt"))
    }
    let error = await world.error { try await world.client().downloadFile(repoID: R.plain.id, path: R.small.path) }
    if case .cache(let loc, let path, let detail)? = error {
      #expect(loc?.file == R.small.path && path.hasSuffix("/config.json") && detail.contains("folder"))
      let keep = world.cacheURL.appendingPathComponent("models--hostile-org--plain/snapshots/\(R.commit)/config.json/keep.txt")
      #expect(try Data(contentsOf: keep) == Data("keep".utf8))
    } else {
      Issue.record("expected cache, got \(String(describing: error))")
    }
    await world.finish()
  }

  /// A symlink where a file's symlink goes is replaced, not followed: its target outside stays as it was, and the
  /// file returned is the blob, also when the blob was already cached (the pointer is checked, not just present).
  @Test(arguments: [false, true])
  func symlinkWhereAPointerGoesIsReplacedNotFollowed(blobCached: Bool) async throws {
    let world = try await HostileWorld.start([R.plain])
    let client = world.client()
    let pointer = try world.cache.pointerPath(R.plain.id, commit: R.commit, file: R.small.path)
    if blobCached { _ = await world.success { try await client.downloadFile(repoID: R.plain.id, path: R.small.path) } }
    let fm = FileManager.default
    try fm.createDirectory(at: pointer.deletingLastPathComponent(), withIntermediateDirectories: true)
    try? fm.removeItem(at: pointer)
    try fm.createSymbolicLink(atPath: pointer.path, withDestinationPath: world.victim.path)
    let path = await world.success { try await client.downloadFile(repoID: R.plain.id, path: R.small.path) }
    #expect(path == pointer)
    #expect((try? fm.destinationOfSymbolicLink(atPath: pointer.path)) == "../../blobs/\(R.small.blobID)")
    #expect(path.flatMap { try? Data(contentsOf: $0) } == R.small.data)
    await world.finish()
  }

  /// `blobs/` planted as a symlink to a folder outside, a `.incomplete` planted as a symlink to a file outside, and a
  /// lock file planted as a symlink: the download refuses each instead of writing (or chmod-ing) outside.
  @Test(arguments: ["blobs", "incomplete", "lock"])
  func plantedDownloadSymlinksAreRefused(_ what: String) async throws {
    let repoFolder = "models--hostile-org--plain"
    let relative: String
    switch what {
    case "blobs": relative = "\(repoFolder)/blobs"
    case "incomplete": relative = "\(repoFolder)/blobs/\(R.big.sha256).incomplete"
    default: relative = ".locks/\(repoFolder)/\(R.big.sha256).lock"
    }
    var world = try await HostileWorld.start([R.plain]) { cache, sentinel in
      let link = cache.appendingPathComponent(relative)
      try FileManager.default.createDirectory(at: link.deletingLastPathComponent(), withIntermediateDirectories: true)
      let target = what == "blobs" ? sentinel : sentinel.appendingPathComponent("victim.txt")
      try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: target.path)
    }
    world.plantedLinks = [relative]
    let error = await world.error { try await world.client().downloadFile(repoID: R.plain.id, path: R.big.path) }
    if case .cache(_, let path, _)? = error {
      #expect(path.hasSuffix(relative))
      #expect(world.hub.count("GET", containing: "/cdn/") == 0)
    } else {
      Issue.record("\(what): expected cache, got \(String(describing: error))")
    }
    await world.finish()
  }

  // MARK: the token

  /// The hostile world of `R.plain`, plus a second hub on another port serving the same repo
  /// without requiring the token (where a leaked token would show).
  static func worldWithTokenlessSecondHub() async throws -> (HostileWorld, FakeHub) {
    var world = try await HostileWorld.start([R.plain])
    var copy = R.plain
    copy.token = nil
    let other = try await FakeHub.start(repos: [copy])
    world.others = [other]
    return (world, other)
  }

  /// The issue's third finding: a HEAD answer redirecting to another port of the same host got the token on the
  /// download GET (only host names were compared).
  @Test func tokenNeverFollowsAHeadRedirectToAnotherPort() async throws {
    let (world, other) = try await Self.worldWithTokenlessSecondHub()
    world.hub.inject(
      .redirect(to: "http://127.0.0.1:\(other.port)/cdn/\(R.big.sha256)"), matching: "/resolve/", times: 10,
      method: "HEAD")
    let path = await world.success { try await world.client().downloadFile(repoID: R.plain.id, path: R.big.path) }
    #expect(path.flatMap { try? Data(contentsOf: $0.resolvingSymlinksInPath()) } == R.big.data)
    #expect(other.count("GET", containing: "/cdn/") == 1)
    #expect(world.hub.log.first { $0.method == "HEAD" }?.authorization == "Bearer \(HostileWorld.token)")
    await world.finish()
  }

  /// A download GET that starts on the hub (with the token) and is redirected to another port loses the token.
  @Test func tokenIsDroppedWhenADownloadRedirectLeavesTheOrigin() async throws {
    let (world, other) = try await Self.worldWithTokenlessSecondHub()
    world.hub.inject(
      .redirect(to: "http://127.0.0.1:\(other.port)/\(R.plain.id)/resolve/main/\(R.small.path)"), matching: "/resolve/",
      times: 10, method: "GET")
    let path = await world.success { try await world.client().downloadFile(repoID: R.plain.id, path: R.small.path) }
    #expect(path.flatMap { try? Data(contentsOf: $0) } == R.small.data)
    #expect(world.hub.log.first { $0.method == "GET" }?.authorization == "Bearer \(HostileWorld.token)")
    #expect(other.count("GET") == 1)
    await world.finish()
  }

  /// A redirect to `file://` (or anything but http(s)) is refused, at the HEAD and during a download. (For a
  /// `file:///path` Location without a host, FoundationNetworking itself makes a path on the same origin.)
  @Test(arguments: ["HEAD", "GET"])
  func redirectToANonHTTPURLIsRefused(_ method: String) async throws {
    let world = try await HostileWorld.start([R.plain])
    world.hub.inject(.redirect(to: "file://localhost" + world.victim.path), matching: "/resolve/", times: 10, method: method)
    let error = await world.error { try await world.client().downloadFile(repoID: R.plain.id, path: R.small.path) }
    if case .protocolViolation(let loc, let detail)? = error {
      #expect(loc.file == R.small.path && detail.contains("file://"))
      #expect(!FileManager.default.fileExists(atPath: try world.cache.blobPath(R.plain.id, etag: R.small.blobID).path))
    } else {
      Issue.record("expected protocolViolation, got \(String(describing: error))")
    }
    await world.finish()
  }

  // MARK: oversized answers

  /// An endless listing is cut off as soon as it passes the cap (not buffered whole).
  @Test(arguments: [nil, 1 << 30] as [Int?])
  func oversizedListingIsCutOffAtTheCap(_ declaredLength: Int?) async throws {
    let repo = R.pipeline(modelIndex: R.modelIndex, extra: [])
    let world = try await HostileWorld.start([repo])
    world.hub.inject(.endless(status: 200, declaredLength: declaredLength), matching: "/api/models/", times: 10)
    let error = await world.error {
      try await world.client { $0.maxListingBytes = 256 << 10 }.downloadPipeline(repoID: repo.id)
    }
    if case .protocolViolation(let loc, let detail)? = error {
      #expect(loc.repoID == repo.id && detail.contains("256 KiB"))
      #expect(world.hub.count("GET", containing: "/api/models/") == 1)  // not retried
      try await Task.sleep(nanoseconds: 200_000_000)
      let sent = world.hub.endlessBytesSent
      try await Task.sleep(nanoseconds: 300_000_000)
      #expect(world.hub.endlessBytesSent == sent, "the server is still sending: the transfer was not cancelled")
      #expect(sent < 64 << 20)
    } else {
      Issue.record("expected protocolViolation, got \(String(describing: error))")
    }
    await world.finish()
  }

  /// An endless error body (a 500 to the download GET) is cut off at the metadata cap.
  @Test func oversizedErrorBodyIsCutOff() async throws {
    let world = try await HostileWorld.start([R.plain])
    world.hub.inject(.endless(status: 500, declaredLength: nil), matching: "/cdn/", times: 10)
    let error = await world.error {
      try await world.client { $0.maxMetadataBodyBytes = 64 << 10 }.downloadFile(repoID: R.plain.id, path: R.big.path)
    }
    if case .protocolViolation(_, let detail)? = error {
      #expect(detail.contains("500") && detail.contains("64 KiB"))
    } else {
      Issue.record("expected protocolViolation, got \(String(describing: error))")
    }
    await world.finish()
  }

  /// A `model_index.json` larger than the metadata cap is not read into memory.
  @Test func oversizedModelIndexIsRefused() async throws {
    let padding = String(repeating: " ", count: 100 << 10)
    let repo = R.pipeline(modelIndex: "{" + padding + #""unet": ["diffusers", "UNet2DConditionModel"]}"#, extra: [])
    let world = try await HostileWorld.start([repo])
    let error = await world.error {
      try await world.client { $0.maxMetadataBodyBytes = 64 << 10 }.downloadPipeline(repoID: repo.id)
    }
    if case .protocolViolation(let loc, let detail)? = error {
      #expect(loc.file == "model_index.json" && detail.contains("64 KiB"))
    } else {
      Issue.record("expected protocolViolation, got \(String(describing: error))")
    }
    await world.finish()
  }

  /// Response headers: libcurl (7.88) refuses a header line over 100 KiB ("Out of memory") and more than 300 KiB of
  /// headers ("Too large response headers"): a typed network error, no crash, no hang; a 32 KiB header is harmless.
  @Test(arguments: ["one-huge", "many", "large-ok"])
  func oversizedResponseHeadersFailCleanly(_ shape: String) async throws {
    let world = try await HostileWorld.start([R.plain])
    var headers: [String: String] = [:]
    switch shape {
    case "one-huge": headers["X-Padding"] = String(repeating: "a", count: 200 << 10)
    case "many": for i in 0..<4000 { headers["X-Padding-\(i)"] = String(repeating: "b", count: 200) }
    default: headers["X-Padding"] = String(repeating: "c", count: 32 << 10)
    }
    world.hub.inject(.headers(headers), matching: "/resolve/", times: 10, method: "HEAD")
    let client = world.client()
    if shape == "large-ok" {
      let path = await world.success { try await client.downloadFile(repoID: R.plain.id, path: R.small.path) }
      #expect(path.flatMap { try? Data(contentsOf: $0) } == R.small.data)
    } else {
      let error = await world.error { try await client.downloadFile(repoID: R.plain.id, path: R.small.path) }
      if case .network(let loc, _)? = error {
        #expect(loc.file == R.small.path)
      } else {
        Issue.record("expected network, got \(String(describing: error))")
      }
    }
    await world.finish()
  }

  // MARK: wrong sizes and digests

  /// The hub announces fewer bytes than it sends: the download is cut at the announced size, reported corrupt, and
  /// nothing is linked (or left as a blob).
  @Test(arguments: ["1000", "200000"])
  func wrongAnnouncedSizeIsCorruptAndNothingIsLinked(_ size: String) async throws {
    let world = try await HostileWorld.start([R.plain])
    world.hub.inject(.headers(["X-Linked-Size": size]), matching: "/resolve/", times: 10, method: "HEAD")
    let error = await world.error { try await world.client().downloadFile(repoID: R.plain.id, path: R.big.path) }
    if case .corrupt(let loc, let detail)? = error {
      #expect(loc.file == R.big.path && detail.contains(size))
      try Self.expectNothingLinked(world, etag: R.big.sha256, file: R.big.path)
      let incomplete = try world.cache.incompletePath(R.plain.id, etag: R.big.sha256)
      #expect(HubClient.fileSize(incomplete.path) <= Int64(size)!)  // never grown past the announced size
    } else {
      Issue.record("expected corrupt, got \(String(describing: error))")
    }
    await world.finish()
  }

  /// Content that does not hash to the announced etag is corrupt; no blob, no link.
  @Test func wrongDigestIsCorruptAndNothingIsLinked() async throws {
    let world = try await HostileWorld.start([R.plain])
    let other = Digest.hex(.sha256, Data("something else".utf8))
    world.hub.inject(.headers(["X-Linked-Etag": "\"\(other)\""]), matching: "/resolve/", times: 10, method: "HEAD")
    let error = await world.error { try await world.client().downloadFile(repoID: R.plain.id, path: R.big.path) }
    if case .corrupt(let loc, let detail)? = error {
      #expect(loc.file == R.big.path && detail.contains(other))
      try Self.expectNothingLinked(world, etag: other, file: R.big.path)
      #expect(!FileManager.default.fileExists(atPath: try world.cache.incompletePath(R.plain.id, etag: other).path))
    } else {
      Issue.record("expected corrupt, got \(String(describing: error))")
    }
    await world.finish()
  }

  /// Bytes flipped on the way (same size) are fetched again, then reported corrupt; nothing half-written is linked.
  @Test func corruptedBodyIsCorruptAndNothingIsLinked() async throws {
    let world = try await HostileWorld.start([R.plain])
    world.hub.inject(.corrupt, matching: "/cdn/", times: 10)
    let error = await world.error { try await world.client().downloadFile(repoID: R.plain.id, path: R.big.path) }
    if case .corrupt? = error {} else { Issue.record("expected corrupt, got \(String(describing: error))") }
    try Self.expectNothingLinked(world, etag: R.big.sha256, file: R.big.path)
    await world.finish()
  }

  @Test(arguments: ["-5", "12abc", "+7", "99999999999999999999"])
  func malformedSizeIsAProtocolViolation(_ size: String) async throws {
    let world = try await HostileWorld.start([R.plain])
    world.hub.inject(.headers(["X-Linked-Size": size]), matching: "/resolve/", times: 10, method: "HEAD")
    let error = await world.error { try await world.client().downloadFile(repoID: R.plain.id, path: R.big.path) }
    if case .protocolViolation(_, let detail)? = error {
      #expect(detail.contains("X-Linked-Size") && detail.contains(size))
      #expect(world.hub.count("GET") == 0)
    } else {
      Issue.record("expected protocolViolation, got \(String(describing: error))")
    }
    await world.finish()
  }

  static func expectNothingLinked(_ world: HostileWorld, etag: String, file: String) throws {
    let fm = FileManager.default
    #expect(!fm.fileExists(atPath: try world.cache.blobPath(R.plain.id, etag: etag).path))
    let pointer = try world.cache.pointerPath(R.plain.id, commit: R.commit, file: file)
    #expect((try? fm.destinationOfSymbolicLink(atPath: pointer.path)) == nil)
  }

  // MARK: stalls

  /// A server that trickles its response head (one header line every 200 ms) never trips the idle timeout; the
  /// metadata deadline ends each attempt.
  @Test func tricklingResponseHeadHitsTheMetadataDeadline() async throws {
    let world = try await HostileWorld.start([])
    let trickle = try TrickleServer(intervalMs: 200)
    defer { trickle.stop() }
    let client = world.client(endpoint: trickle.endpoint) { $0.metadataDeadline = 1 }
    let start = Date()
    let error = await world.error { try await client.downloadFile(repoID: R.plain.id, path: R.small.path) }
    if case .network(let loc, let detail)? = error {
      #expect(loc.file == R.small.path && detail.contains("within 1 s"))
      #expect(trickle.connections == 2)  // two attempts
      #expect(Date().timeIntervalSince(start) < 15)
    } else {
      Issue.record("expected network, got \(String(describing: error))")
    }
    await world.finish()
  }

  /// A listing trickled a few bytes at a time hits the metadata deadline too.
  @Test func tricklingListingHitsTheMetadataDeadline() async throws {
    let repo = R.pipeline(modelIndex: R.modelIndex, extra: [])
    let world = try await HostileWorld.start([repo])
    world.hub.inject(.slow(chunk: 8, delayMs: 100), matching: "/api/models/")
    let start = Date()
    let error = await world.error {
      try await world.client(attempts: 1) { $0.metadataDeadline = 1 }.downloadPipeline(repoID: repo.id)
    }
    if case .network(let loc, let detail)? = error {
      #expect(loc.repoID == repo.id && detail.contains("within 1 s"))
      #expect(Date().timeIntervalSince(start) < 15)
    } else {
      Issue.record("expected network, got \(String(describing: error))")
    }
    await world.finish()
  }

  /// A download trickled far below the minimum rate is abandoned after one window per attempt, and the stalls count
  /// as failed attempts even though they brought bytes; nothing is linked.
  @Test func tricklingDownloadIsAbandonedAsStalled() async throws {
    let world = try await HostileWorld.start([R.plain])
    world.hub.inject(.slow(chunk: 64, delayMs: 100), matching: "/cdn/")  // 640 B/s, never silent for 100 ms
    let client = world.client { c in
      c.downloadMinimumRate = 8192
      c.downloadRateWindow = 1
    }
    let start = Date()
    let error = await world.error { try await client.downloadFile(repoID: R.plain.id, path: R.big.path) }
    if case .network(let loc, let detail)? = error {
      #expect(loc.file == R.big.path && detail.contains("stalled"))
      #expect(world.hub.count("GET", containing: "/cdn/") == 2)
      #expect(Date().timeIntervalSince(start) < 20)
      try Self.expectNothingLinked(world, etag: R.big.sha256, file: R.big.path)
    } else {
      Issue.record("expected network, got \(String(describing: error))")
    }
    await world.finish()
  }
}
