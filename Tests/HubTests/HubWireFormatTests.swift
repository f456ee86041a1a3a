import Foundation
import Testing

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

@testable import Hub

/// The pure parsing surface (``HubWireFormat``), the name rules (``HubName``), the cache's path confinement and the
/// token's redirect rules, without a server.
@Suite struct HubWireFormatTests {
  static let loc = HubLocation(repoID: "org/name", file: "unet/model.safetensors", revision: "main")
  static let commit = String(repeating: "0123456789", count: 4)
  static let sha = String(repeating: "ab", count: 32)
  static let resolveURL = URL(string: "https://huggingface.co/org/name/resolve/main/unet/model.safetensors")!

  static func head(_ status: Int, _ headers: [String: String], url: URL = resolveURL) throws(HubError)
    -> HubWireFormat.ResolveAnswer
  {
    try HubWireFormat.parseResolveHead(status: status, headers: headers, requestURL: url, location: loc)
  }

  static func protocolDetail(_ body: () throws -> Any) -> String? {
    do {
      _ = try body()
      return nil
    } catch {
      guard case .protocolViolation(_, let detail) = error as? HubError else { return nil }
      return detail
    }
  }

  // MARK: the /resolve/ HEAD answer

  @Test func lfsRedirectAnswerGivesCommitEtagSizeAndCDN() throws {
    let answer = try Self.head(
      302,
      [
        "x-repo-commit": Self.commit, "x-linked-etag": "\"\(Self.sha)\"", "x-linked-size": "1234",
        "etag": "\"\(String(repeating: "c", count: 40))\"", "location": "https://cdn.example/x?sig=1",
        "content-length": "0",
      ])
    #expect(
      answer
        == .file(
          .init(commit: Self.commit, etag: Self.sha, size: 1234, downloadURL: URL(string: "https://cdn.example/x?sig=1")!)))
  }

  @Test func plainAnswerUsesETagAndContentLength() throws {
    let answer = try Self.head(200, ["x-repo-commit": Self.commit, "etag": "W/\"abc\"", "content-length": "12"])
    #expect(answer == .file(.init(commit: Self.commit, etag: "abc", size: 12, downloadURL: Self.resolveURL)))
  }

  @Test func sameOriginRedirectIsFollowedAndRelativeLocationsResolve() throws {
    #expect(
      try Self.head(307, ["location": "/new-org/name/resolve/main/unet/model.safetensors"])
        == .redirect(URL(string: "https://huggingface.co/new-org/name/resolve/main/unet/model.safetensors")!))
    // Another port of the same host is another origin: not followed as a HEAD, it is the download URL.
    let answer = try Self.head(
      302, ["location": "https://huggingface.co:8443/cdn/x", "x-repo-commit": Self.commit, "x-linked-etag": Self.sha])
    guard case .file(let metadata) = answer else {
      Issue.record("expected .file, got \(answer)")
      return
    }
    #expect(metadata.downloadURL.port == 8443 && metadata.size == nil)
  }

  @Test func notFoundForTheFileKeepsAValidCommitOnly() throws {
    #expect(try Self.head(404, ["x-error-code": "EntryNotFound", "x-repo-commit": Self.commit]) == .missing(commit: Self.commit))
    #expect(try Self.head(404, [:]) == .missing(commit: nil))
    #expect(Self.protocolDetail { try Self.head(404, ["x-repo-commit": "../../x"]) }?.contains("../../x") == true)
    #expect(throws: HubError.notFound(Self.loc, missing: .repo, cached: false)) {
      try Self.head(404, ["x-error-code": "RepoNotFound"])
    }
    #expect(throws: HubError.accessDenied(Self.loc, status: 401, gated: true, tokenSent: false)) {
      try Self.head(401, ["x-error-code": "GatedRepo"])
    }
  }

  @Test(arguments: [
    "main", String(repeating: "A", count: 40), String(repeating: "a", count: 39), String(repeating: "a", count: 41),
    String(repeating: "g", count: 40), "../../../sentinel/evil", "\(String(repeating: "a", count: 38))/.",
    "\(String(repeating: "a", count: 40)), \(String(repeating: "b", count: 40))",
  ])
  func malformedCommitIdsAreProtocolViolations(_ commit: String) {
    let detail = Self.protocolDetail {
      try Self.head(200, ["x-repo-commit": commit, "etag": "\"abc\"", "content-length": "1"])
    }
    #expect(detail?.contains("commit id") == true && detail?.contains(HubName.printable(commit)) == true)
  }

  @Test(arguments: ["", "\"\"", "..", ".", "a/b", "a\\b", "x.incomplete", String(repeating: "e", count: 201), "a\u{7}b"])
  func unusableEtagsAreProtocolViolations(_ etag: String) {
    let detail = Self.protocolDetail {
      try Self.head(200, ["x-repo-commit": Self.commit, "etag": etag, "content-length": "1"])
    }
    #expect(detail?.contains("ETag") == true)
  }

  @Test func missingHeadersAndBadLocationsAreProtocolViolations() {
    #expect(Self.protocolDetail { try Self.head(200, ["etag": "abc"]) }?.contains("X-Repo-Commit") == true)
    #expect(Self.protocolDetail { try Self.head(200, ["x-repo-commit": Self.commit]) }?.contains("ETag") == true)
    for location in ["file:///etc/passwd", "ftp://example.com/x", "http://", "javascript:alert(1)"] {
      let detail = Self.protocolDetail {
        try Self.head(302, ["location": location, "x-repo-commit": Self.commit, "x-linked-etag": Self.sha])
      }
      #expect(detail?.contains("Location") == true, "\(location)")
    }
    for size in ["-1", "1e3", "0x10", " ", "18446744073709551616"] {
      let detail = Self.protocolDetail {
        try Self.head(200, ["x-repo-commit": Self.commit, "etag": "abc", "x-linked-size": size])
      }
      #expect(detail?.contains("X-Linked-Size") == true, "\(size)")
    }
  }

  @Test func serverErrorsCarryPrintableDetails() {
    let error = HubWireFormat.statusError(
      status: 500, headers: [:], body: Data("boom\u{1B}[31m".utf8), location: Self.loc, tokenSent: false)
    #expect(error == .server(Self.loc, status: 500, detail: "boom\\x1b[31m"))
  }

  // MARK: the file listing

  static func listing(_ siblings: [[String: Any]]) -> Data {
    try! JSONSerialization.data(withJSONObject: ["sha": commit, "siblings": siblings])
  }

  @Test func listingIsParsedWithSizesAndLFS() throws {
    let body = Self.listing([
      ["rfilename": "model_index.json", "size": 10, "blobId": String(repeating: "1", count: 40)],
      [
        "rfilename": "unet/w.safetensors", "size": 99, "blobId": String(repeating: "2", count: 40),
        "lfs": ["sha256": Self.sha, "size": 99, "pointerSize": 130],
      ],
      ["rfilename": "README.md"],
    ])
    let entries = try HubWireFormat.parseFileList(body, location: Self.loc)
    #expect(entries.map(\.path) == ["model_index.json", "unet/w.safetensors", "README.md"])
    #expect(entries[1].lfsSHA256 == Self.sha && entries[1].lfsSize == 99 && entries[1].size == 99)
    #expect(entries[2].size == 0 && entries[2].blobID.isEmpty)
  }

  @Test(arguments: [
    "../x", "a/../../b", "/abs", "a//b", "a/", "./a", "a/.", "", "a\\b", "a\u{0}b", "a\u{1F}b", "a\u{7F}b", "a\u{85}b",
    String(repeating: "n", count: 256),
    // A '/' that Swift's grapheme clusters hide: "../\u{301}x" has no "/" character, but the file system
    // sees '..'; a prepended mark joins the '/' that follows it.
    "../\u{301}x", "a/\u{301}b", "\u{600}/x", "..\u{301}/../../etc",
  ])
  func listingWithAnUnusableNameIsRefused(_ name: String) {
    let detail = Self.protocolDetail {
      try HubWireFormat.parseFileList(Self.listing([["rfilename": "ok.json"], ["rfilename": name]]), location: Self.loc)
    }
    #expect(detail?.contains("unusable") == true)
  }

  @Test func listingWithDuplicatesConflictsOrBadFieldsIsRefused() {
    let cases: [([[String: Any]], String)] = [
      ([["rfilename": "a.json"], ["rfilename": "a.json"]], "twice"),
      ([["rfilename": "unet"], ["rfilename": "unet/config.json"]], "as a file and as the folder"),
      ([["rfilename": "a.json", "size": -1]], "size"),
      ([["rfilename": "a.json", "size": "12"]], "size"),
      ([["rfilename": "a.json", "size": 1.5]], "size"),
      ([["rfilename": "a.json", "lfs": ["size": -3]]], "lfs.size"),
      ([["size": 3]], "rfilename"),
      ([["rfilename": 7]], "rfilename"),
    ]
    for (siblings, expected) in cases {
      let detail = Self.protocolDetail { try HubWireFormat.parseFileList(Self.listing(siblings), location: Self.loc) }
      #expect(detail?.contains(expected) == true, "\(siblings): \(detail ?? "accepted")")
    }
    for body in ["", "[]", "{\"siblings\": 3}", "{\"siblings\": [1]}", String(repeating: "[", count: 100_000)] {
      #expect(Self.protocolDetail { try HubWireFormat.parseFileList(Data(body.utf8), location: Self.loc) } != nil)
    }
  }

  // MARK: trees/<commit>.json

  @Test func cachedTreeWithUnusableNamesCountsAsAbsent() {
    let good = RepoFileEntry(path: "unet/config.json", size: 2, blobID: String(repeating: "1", count: 40))
    #expect(HubWireFormat.decodeTree(RepoTree.encode([good])) == [good])
    for bad in ["../../../sentinel/x", "/abs", "a//b", "a\\b"] {
      let entries = [good, RepoFileEntry(path: bad, size: 1, blobID: "")]
      #expect(HubWireFormat.decodeTree(RepoTree.encode(entries)) == nil, "\(bad)")
    }
    #expect(HubWireFormat.decodeTree(Data(#"{"format_version": 2, "files": {}}"#.utf8)) == nil)
    #expect(HubWireFormat.decodeTree(Data(#"{"format_version": 1, "files": {"a": {"size": -1, "blob_id": ""}}}"#.utf8)) == nil)
  }

  // MARK: model_index.json

  @Test func pipelineComponentsAreListKeysSortedWithTheirLibrary() throws {
    let index = Data(
      #"{"_class_name": "X", "_diffusers_version": "0.42.1", "vae": ["diffusers", "AutoencoderKL"], "safety_checker": [null, null], "requires_safety_checker": false, "unet": ["diffusers", "UNet2DConditionModel"]}"#
        .utf8)
    #expect(
      try HubWireFormat.pipelineComponents(modelIndex: index, location: Self.loc) == [
        .init(name: "safety_checker", library: nil), .init(name: "unet", library: "diffusers"),
        .init(name: "vae", library: "diffusers"),
      ])
  }

  @Test(arguments: ["../x", "..", ".", "a/b", "a\\b", "", "a\u{0}", "/etc"])
  func pipelineComponentWithAnUnusableNameIsRefused(_ name: String) throws {
    let data = try JSONSerialization.data(withJSONObject: [name: ["diffusers", "X"], "unet": ["diffusers", "Y"]])
    let detail = Self.protocolDetail { try HubWireFormat.pipelineComponents(modelIndex: data, location: Self.loc) }
    #expect(detail?.contains("component") == true)
    #expect(Self.protocolDetail { try HubWireFormat.pipelineComponents(modelIndex: Data("[1]".utf8), location: Self.loc) } != nil)
  }

  // MARK: names and cache paths

  @Test func nameRules() {
    #expect(HubName.problem("refs/pr/1", as: .revision) == nil)
    #expect(HubName.problem("v1.0", as: .revision) == nil)
    for bad in ["v1..2", "a b", "x@y", "/main", "main/", "a//b", "refs/./x", "a\\b", ""] {
      #expect(HubName.problem(bad, as: .revision) != nil, "\(bad)")
    }
    #expect(HubName.problem("unet/diffusion_pytorch_model.safetensors", as: .file) == nil)
    #expect(HubName.problem("a b/ü.json", as: .file) == nil)  // spaces and Unicode are fine in files
    #expect(HubName.problem("org/name", as: .repoID) == nil)
    for bad in ["org", "org/name/x", "../name", "org/..", "org/na\u{0}me"] {
      #expect(HubName.problem(bad, as: .repoID) != nil, "\(bad)")
    }
    #expect(HubName.printable("a\u{0}b\\c") == "a\\x00b\\x5cc")
  }

  @Test func cachePathsRefuseUnusableNamesAndStayInside() throws {
    let cache = HubCache(root: URL(fileURLWithPath: "/c"))
    let commit = Self.commit
    #expect(try cache.pointerPath("a/b", commit: commit, file: "x/y.bin").path == "/c/models--a--b/snapshots/\(commit)/x/y.bin")
    #expect(try cache.refPath("a/b", revision: "refs/pr/1").path == "/c/models--a--b/refs/refs/pr/1")
    let attempts: [() throws -> URL] = [
      { try cache.pointerPath("a/b", commit: "../../../x", file: "f") },
      { try cache.pointerPath("a/b", commit: commit, file: "../../../../x") },
      { try cache.pointerPath("a/b", commit: commit, file: "/etc/passwd") },
      { try cache.snapshotFolder("a/b", commit: "main") },
      { try cache.refPath("a/b", revision: "../../x") },
      { try cache.blobPath("a/b", etag: "../x") },
      { try cache.incompletePath("a/b", etag: "..") },
      { try cache.lockPath("a/b", etag: "x/y") },
      { try cache.noExistPath("a/b", commit: commit, file: "a/../../..") },
      { try cache.treePath("a/b", commit: "../x") },
      { try cache.repoFolder("../../x") },
    ]
    for attempt in attempts {
      #expect {
        _ = try attempt()
      } throws: { error in
        guard case .cache(_, _, let detail) = error as? HubError else { return false }
        return detail.contains("refusing")
      }
    }
    #expect(throws: HubError.self) {
      _ = try HubCache.confined(URL(fileURLWithPath: "/c/models--a--b/../x"), in: URL(fileURLWithPath: "/c/models--a--b"), repoID: "a/b")
    }
    #expect(HubCache.lexicallyNormalized("/a/./b/../c//d/") == "/a/c/d")
    // Byte-wise, whatever the grapheme clusters: '../' before a combining mark is still '..'.
    #expect(HubCache.lexicallyNormalized("/c/m/../\u{301}x") == "/c/\u{301}x")
    #expect(throws: HubError.self) {
      _ = try HubCache.confined(URL(fileURLWithPath: "/c/m/../\u{301}x"), in: URL(fileURLWithPath: "/c/m"), repoID: "a/b")
    }
    // A name that starts with a combining mark is a legal file name and stays inside.
    #expect(try cache.pointerPath("a/b", commit: commit, file: "\u{618}a").lastPathComponent == "\u{618}a")
  }

  @Test func offlineCacheIgnoresRefsThatAreNotCommits() throws {
    let temp = try TempFolder()
    defer { temp.remove() }
    let cache = HubCache(root: temp.url)
    let refs = try cache.repoFolder("a/b").appendingPathComponent("refs")
    try FileManager.default.createDirectory(at: refs, withIntermediateDirectories: true)
    try Data("../../x".utf8).write(to: refs.appendingPathComponent("main"))
    try Data("\(Self.commit)\n".utf8).write(to: refs.appendingPathComponent("v1"))
    #expect(cache.commit("a/b", revision: "main") == nil)
    #expect(cache.commit("a/b", revision: "v1") == Self.commit)
    #expect(cache.commit("a/b", revision: "../main") == nil)
  }

  // MARK: the token's origin

  @Test func tokenGoesOnlyToTheEndpointsOrigin() {
    let client = HubClient(
      configuration: HubConfiguration(
        endpoint: "https://huggingface.co", cacheDirectory: URL(fileURLWithPath: "/nonexistent"), token: "hf_x"))
    let yes = ["https://huggingface.co/a", "https://HuggingFace.co:443/a", "HTTPS://huggingface.co/api/models/x"]
    let no = [
      "http://huggingface.co/a", "https://huggingface.co:8443/a", "https://cdn-lfs.huggingface.co/a",
      "https://huggingface.co.evil.example/a", "ftp://huggingface.co/a",
    ]
    for url in yes { #expect(client.tokenAllowed(for: URL(string: url)!), "\(url)") }
    for url in no { #expect(!client.tokenAllowed(for: URL(string: url)!), "\(url)") }
    #expect(client.hubRequest(URL(string: no[1])!, method: "GET", timeout: 1).value(forHTTPHeaderField: "Authorization") == nil)
    #expect(client.hubRequest(URL(string: yes[0])!, method: "GET", timeout: 1).value(forHTTPHeaderField: "Authorization") == "Bearer hf_x")
  }

  @Test func redirectsKeepTheTokenOnlyOnTheOriginAndNeverDowngrade() throws {
    let origin = URL(string: "https://huggingface.co")!
    func next(_ to: String, from: String = "https://huggingface.co/a", redirects: Int = 0) throws(TransportFailure)
      -> String?
    {
      var request = URLRequest(url: URL(string: to)!)
      request.setValue("Bearer hf_x", forHTTPHeaderField: "Authorization")
      return try HTTPTransport.redirectedRequest(
        request, from: URL(string: from), tokenOrigin: origin, redirects: redirects
      ).value(forHTTPHeaderField: "Authorization")
    }
    #expect(try next("https://huggingface.co/b") == "Bearer hf_x")
    #expect(try next("http://huggingface.co/b") == nil)  // downgrade
    #expect(try next("https://huggingface.co:444/b") == nil)  // another port
    #expect(try next("https://cdn.example/b") == nil)  // another host
    #expect(try next("https://huggingface.co/b", from: "https://cdn.example/a") == "Bearer hf_x")
    #expect(throws: TransportFailure.self) { try next("file:///etc/passwd") }
    #expect(throws: TransportFailure.redirectRefused("more than 10 redirects")) {
      try next("https://huggingface.co/b", redirects: 10)
    }
    // An http endpoint (a local mirror) keeps the token on its own origin, but not after an https hop.
    var request = URLRequest(url: URL(string: "http://127.0.0.1:8080/b")!)
    request.setValue("Bearer hf_x", forHTTPHeaderField: "Authorization")
    let local = URL(string: "http://127.0.0.1:8080")!
    #expect(
      try HTTPTransport.redirectedRequest(request, from: URL(string: "http://127.0.0.1:8080/a"), tokenOrigin: local, redirects: 0)
        .value(forHTTPHeaderField: "Authorization") == "Bearer hf_x")
    #expect(
      try HTTPTransport.redirectedRequest(request, from: URL(string: "https://127.0.0.1:8080/a"), tokenOrigin: local, redirects: 0)
        .value(forHTTPHeaderField: "Authorization") == nil)
  }
}
