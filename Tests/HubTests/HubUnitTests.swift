import Foundation
import Testing

@testable import Hub

@Suite struct HubReferenceTests {
  static func parse(_ text: String, existing: Set<String> = []) throws -> HubReference {
    try HubReference.parse(text, fileExists: { existing.contains($0) })
  }

  @Test func goodReferences() throws {
    #expect(
      try Self.parse("stable-diffusion-v1-5/stable-diffusion-v1-5")
        == .repo(repoID: "stable-diffusion-v1-5/stable-diffusion-v1-5", revision: nil))
    #expect(try Self.parse("org/name@fp16") == .repo(repoID: "org/name", revision: "fp16"))
    #expect(
      try Self.parse("h94/IP-Adapter/models/ip-adapter-plus_sd15.safetensors")
        == .file(repoID: "h94/IP-Adapter", path: "models/ip-adapter-plus_sd15.safetensors", revision: nil))
    let commit = String(repeating: "0123456789", count: 4)
    #expect(
      try Self.parse("org/name/sub/file.bin@\(commit)") == .file(repoID: "org/name", path: "sub/file.bin", revision: commit))
    #expect(try Self.parse("org/name@refs/pr/1") == .repo(repoID: "org/name", revision: "refs/pr/1"))
    #expect(try Self.parse("Org_1/my.model_v2") == .repo(repoID: "Org_1/my.model_v2", revision: nil))
    #expect(HubReference.file(repoID: "a/b", path: "c/d.bin", revision: "v1").description == "a/b/c/d.bin@v1")
  }

  @Test func localPathsWin() throws {
    #expect(try Self.parse("org/name", existing: ["org/name"]) == .local("org/name"))
    #expect(try Self.parse("/models/sd15") == .local("/models/sd15"))
    #expect(try Self.parse("./sd15") == .local("./sd15"))
    #expect(try Self.parse("../x/y") == .local("../x/y"))
    #expect(try Self.parse("~/models/sd15") == .local("~/models/sd15"))
    #expect(try Self.parse(".") == .local("."))
  }

  @Test(arguments: [
    "", "sd15", "org/", "/", "org//file", "org/na me", "a--b/c", "org/name@", "org/name/../x", "-org/name",
    "org/name.", "org/name/sub//file", "org/name@v1..2", "org/na$me", String(repeating: "a", count: 97) + "/x",
  ])
  func badReferences(_ text: String) {
    // "/" is local by rule; everything else must be a typed error.
    if text == "/" { return }
    #expect(throws: HubError.self) { try Self.parse(text) }
    do { _ = try Self.parse(text) } catch {
      guard case .invalidReference(let t, _) = error as? HubError else { Issue.record("wrong case \(error)"); return }
      #expect(t == text)
    }
  }
}

@Suite struct DigestTests {
  @Test func knownVectors() {
    #expect(Digest.hex(.sha256, Data()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(Digest.hex(.sha256, Data("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(
      Digest.hex(.sha256, Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
        == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    #expect(Digest.hex(.sha1, Data("abc".utf8)) == "a9993e364706816aba3e25717850c26c9cd0d89d")
    #expect(Digest.hex(.sha1, Data()) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    // `git hash-object` of "hello\n".
    #expect(Digest.hex(.sha1, Data("blob 6\0hello\n".utf8)) == "ce013625030ba8dba906f756967f9e9ca394464a")
  }

  @Test func streamingEqualsOneShot() {
    let data = pseudoRandomData(10_000, seed: 3)
    for split in [0, 1, 63, 64, 65, 5000, 9999] {
      var d = Digest(.sha256)
      d.update(data.prefix(split))
      d.update(data.dropFirst(split))
      #expect(d.finalizeHex() == Digest.hex(.sha256, data))
    }
    let million = Data(repeating: UInt8(ascii: "a"), count: 1_000_000)
    #expect(Digest.hex(.sha256, million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    #expect(Digest.hex(.sha1, million) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
  }
}

@Suite struct HubConfigurationTests {
  @Test func cacheRootFollowsHuggingfaceHubPrecedence() throws {
    let base = ["HOME": "/home/u"]
    #expect(HubConfiguration.fromEnvironment(base).cacheDirectory.path == "/home/u/.cache/huggingface/hub")
    #expect(
      HubConfiguration.fromEnvironment(base.merging(["XDG_CACHE_HOME": "/xdg"]) { $1 }).cacheDirectory.path
        == "/xdg/huggingface/hub")
    #expect(
      HubConfiguration.fromEnvironment(base.merging(["HF_HOME": "~/hf"]) { $1 }).cacheDirectory.path == "/home/u/hf/hub")
    #expect(
      HubConfiguration.fromEnvironment(base.merging(["HF_HOME": "/hf", "HF_HUB_CACHE": "/c"]) { $1 })
        .cacheDirectory.path == "/c")
    let c = HubConfiguration.fromEnvironment(base.merging(["HF_ENDPOINT": "http://127.0.0.1:1/", "HF_HUB_OFFLINE": "1"]) { $1 })
    #expect(c.endpoint == "http://127.0.0.1:1" && c.offline)
    #expect(HubConfiguration.fromEnvironment(base).endpoint == "https://huggingface.co")
    #expect(!HubConfiguration.fromEnvironment(base.merging(["HF_HUB_OFFLINE": "0"]) { $1 }).offline)
  }

  @Test func tokenFromEnvironmentThenTokenFile() throws {
    let temp = try TempFolder()
    defer { temp.remove() }
    try Data("  hf_from_file\n".utf8).write(to: temp.url.appendingPathComponent("token"))
    let env = ["HOME": "/home/u", "HF_HOME": temp.url.path]
    #expect(HubConfiguration.fromEnvironment(env).token == "hf_from_file")
    #expect(HubConfiguration.fromEnvironment(env.merging(["HF_TOKEN": "hf_env"]) { $1 }).token == "hf_env")
    #expect(HubConfiguration.fromEnvironment(["HOME": "/nonexistent"]).token == nil)
  }
}

@Suite struct HubCacheTests {
  @Test func layoutNames() throws {
    let cache = HubCache(root: URL(fileURLWithPath: "/c"))
    #expect(HubCache.folderName(repoID: "h94/IP-Adapter") == "models--h94--IP-Adapter")
    #expect(try cache.lockPath("a/b", etag: "e").path == "/c/.locks/models--a--b/e.lock")
    #expect(try cache.incompletePath("a/b", etag: "e").path == "/c/models--a--b/blobs/e.incomplete")
    #expect(HubCache.isCommitHash(String(repeating: "a", count: 40)))
    #expect(!HubCache.isCommitHash("main"))
    #expect(HubWireFormat.normalizeEtag("W/\"abc\"") == "abc")
  }

  @Test func relativeSymlinksAndRefs() throws {
    let temp = try TempFolder()
    defer { temp.remove() }
    let cache = HubCache(root: temp.url)
    let commit = String(repeating: "c", count: 40)
    try cache.linkPointer("a/b", commit: commit, file: "x/y/z.bin", etag: "e1")
    let link = try FileManager.default.destinationOfSymbolicLink(
      atPath: try cache.pointerPath("a/b", commit: commit, file: "x/y/z.bin").path)
    #expect(link == "../../../../blobs/e1")
    try cache.writeRef("a/b", revision: "main", commit: commit)
    #expect(try String(contentsOf: try cache.refPath("a/b", revision: "main"), encoding: .utf8) == commit)
    #expect(cache.commit("a/b", revision: "main") == commit)
    try cache.writeRef("a/b", revision: commit, commit: commit)  // a commit hash gets no ref
    #expect(!FileManager.default.fileExists(atPath: try cache.refPath("a/b", revision: commit).path))
  }

  @Test func treeJSONIsPythonsJSONDump() throws {
    let entries = [
      RepoFileEntry(path: "b.safetensors", size: 10, blobID: "p", lfsSHA256: "s", lfsSize: 10),
      RepoFileEntry(path: "a/é.json", size: 3, blobID: "x"),
    ]
    let text = String(decoding: RepoTree.encode(entries), as: UTF8.self)
    #expect(
      text == """
        {
         "format_version": 1,
         "files": {
          "a/\\u00e9.json": {
           "size": 3,
           "blob_id": "x"
          },
          "b.safetensors": {
           "size": 10,
           "blob_id": "p",
           "lfs_sha256": "s",
           "lfs_size": 10
          }
         }
        }
        """)
    #expect(HubWireFormat.decodeTree(RepoTree.encode(entries)) == entries.sorted { $0.path < $1.path })
    #expect(String(decoding: RepoTree.encode([]), as: UTF8.self) == "{\n \"format_version\": 1,\n \"files\": {}\n}")
  }
}

@Suite struct PipelineFilesTests {
  static let index = Data(
    #"{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], "text_encoder": ["transformers", "CLIPTextModel"], "vae": ["diffusers", "AutoencoderKL"], "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "PNDMScheduler"], "safety_checker": [null, null]}"#
      .utf8)

  @Test func fallsBackToFp16ThenBinPerComponent() throws {
    let files = [
      "model_index.json", "README.md", "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
      "unet/diffusion_pytorch_model.bin", "text_encoder/config.json", "text_encoder/pytorch_model.bin",
      "text_encoder/pytorch_model.fp16.bin", "vae/config.json", "vae/diffusion_pytorch_model-00001-of-00002.safetensors",
      "vae/diffusion_pytorch_model-00002-of-00002.safetensors", "vae/diffusion_pytorch_model.safetensors.index.json",
      "vae/diffusion_pytorch_model.fp16.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt",
      "scheduler/scheduler_config.json", "safety_checker/config.json", "safety_checker/model.safetensors",
    ]
    let components = try HubWireFormat.pipelineComponents(
      modelIndex: Self.index, location: HubLocation(repoID: "a/b", file: "model_index.json", revision: "main"))
    let chosen = PipelineFiles.select(files: files, components: components.map(\.name))
    #expect(
      chosen == [
        "model_index.json", "safety_checker/config.json", "safety_checker/model.safetensors",
        "scheduler/scheduler_config.json", "text_encoder/config.json", "text_encoder/pytorch_model.bin",
        "tokenizer/merges.txt", "tokenizer/vocab.json", "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors", "vae/config.json",
        "vae/diffusion_pytorch_model-00001-of-00002.safetensors",
        "vae/diffusion_pytorch_model-00002-of-00002.safetensors", "vae/diffusion_pytorch_model.safetensors.index.json",
      ])
  }

  @Test func variantPrefersTheVariantFilesAndFallsBackPerComponent() throws {
    let files = [
      "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
      "unet/diffusion_pytorch_model.fp16.safetensors", "text_encoder/config.json", "text_encoder/model.safetensors",
      "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
      "tokenizer/vocab.json", "scheduler/scheduler_config.json",
    ]
    let components = try HubWireFormat.pipelineComponents(
      modelIndex: Self.index, location: HubLocation(repoID: "a/b", file: "model_index.json", revision: "main"))
    let chosen = PipelineFiles.select(files: files, components: components.map(\.name), variant: "fp16")
    #expect(
      chosen == [
        "model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json", "text_encoder/model.safetensors",
        "tokenizer/vocab.json", "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors", "vae/config.json",
        "vae/diffusion_pytorch_model.fp16.safetensors",
      ])
  }

  @Test func adapterEncodersFollowTheH94Layout() {
    #expect(AdapterEncoderLayout.imageEncoderFolder(forAdapter: "models/ip-adapter_sd15.bin") == "models/image_encoder")
    #expect(AdapterEncoderLayout.imageEncoderFolder(forAdapter: "models/ip-adapter_sd15_vit-G.bin") == "sdxl_models/image_encoder")
    #expect(AdapterEncoderLayout.imageEncoderFolder(forAdapter: "sdxl_models/ip-adapter_sdxl.bin") == "sdxl_models/image_encoder")
    #expect(
      AdapterEncoderLayout.imageEncoderFolder(forAdapter: "/m/IP-Adapter/sdxl_models/ip-adapter-plus_sdxl_vit-h.safetensors")
        == "/m/IP-Adapter/models/image_encoder")
    #expect(AdapterEncoderLayout.imageEncoderFolder(forAdapter: "adapter.bin") == "image_encoder")
  }
}
