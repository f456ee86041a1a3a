import Foundation
import Hub

/// Turns the model arguments of the CLI into local paths: a local path is used as is; a Hugging
/// Face hub reference (`org/name[@rev]`, `org/name/path/in/repo[@rev]`) is fetched into the shared
/// huggingface_hub cache (reused without network when present; see `Hub`).
enum ModelResolution {
  static let client = HubClient()

  /// Whether `text` names something on the hub rather than a local path.
  static func isHub(_ text: String) -> Bool {
    guard let ref = try? HubReference.parse(text) else { return false }
    if case .local = ref { return false }
    return true
  }

  static func fetch(_ reference: HubReference, quiet: Bool) throws -> URL {
    let bar = quiet ? nil : DownloadProgressBar()
    let progress: HubProgressHandler? = bar.map { bar in { @Sendable p in bar.update(p) } }
    let url = try HubClient.runBlocking { try await client.resolve(reference, progress: progress) }
    bar?.finish()
    return url
  }

  /// `--model`: a local folder/file, a hub pipeline repo (its snapshot folder) or a hub file.
  static func model(_ text: String, quiet: Bool) throws -> String {
    let ref = try HubReference.parse(text)
    if case .local(let path) = ref { return path }
    return try fetch(ref, quiet: quiet).path
  }

  /// A single file (`--ip-adapter`, `--vae`): local, or one file of a hub repo.
  static func file(_ text: String, option: String, quiet: Bool) throws -> String {
    let ref = try HubReference.parse(text)
    switch ref {
    case .local(let path): return path
    case .file: return try fetch(ref, quiet: quiet).path
    case .repo:
      throw CLIError.invalid(option, "'\(text)' names a whole repository; give org/name/path/to/file")
    }
  }

  /// A component folder (`--image-encoder`, `--controlnet`): local, or a repo / sub-folder of a
  /// repo whose `files` are fetched (each entry lists alternatives, first present wins).
  static func folder(_ text: String, files: [[String]], option: String, quiet: Bool) throws -> String {
    let ref = try HubReference.parse(text)
    let (repo, sub, revision): (String, String, String?)
    switch ref {
    case .local(let path): return path
    case .repo(let r, let rev): (repo, sub, revision) = (r, "", rev)
    case .file(let r, let p, let rev): (repo, sub, revision) = (r, p, rev)
    }
    var folder: URL?
    for alternatives in files {
      var lastError: Error?
      var found = false
      for name in alternatives {
        let path = sub.isEmpty ? name : "\(sub)/\(name)"
        do {
          let url = try fetch(.file(repoID: repo, path: path, revision: revision), quiet: quiet)
          folder = url.deletingLastPathComponent()
          found = true
          break
        } catch {
          lastError = error
        }
      }
      if !found, let lastError { throw lastError }
    }
    guard let folder else { throw CLIError.invalid(option, "nothing to download for '\(text)'") }
    return folder.path
  }

  /// The image encoder of a hub adapter file: `image_encoder/` beside it in the same repo (the
  /// h94/IP-Adapter layout), fetched so that the default encoder lookup finds it.
  static func siblingImageEncoder(ofAdapter text: String, quiet: Bool) throws {
    guard case .file(let repo, let path, let revision) = try HubReference.parse(text) else { return }
    let dir = (path as NSString).deletingLastPathComponent
    let sub = dir.isEmpty ? "image_encoder" : "\(dir)/image_encoder"
    let rev = revision.map { "@\($0)" } ?? ""
    _ = try folder("\(repo)/\(sub)\(rev)", files: encoderFiles, option: "--image-encoder", quiet: quiet)
  }

  static let encoderFiles = [["config.json"], ["model.safetensors", "model.fp16.safetensors", "pytorch_model.bin"]]
  static let controlNetFiles = [
    ["config.json"],
    ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.bin"],
  ]
}
