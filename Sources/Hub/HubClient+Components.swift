import Foundation

/// The files that make up one model component folder, as lists of alternatives (the first name
/// present in the repo wins): what is fetched for an image encoder or a ControlNet named by a hub
/// reference to a repo or a sub-folder of one.
public struct HubComponentFiles: Sendable, Equatable {
  public var alternatives: [[String]]

  public init(_ alternatives: [[String]]) { self.alternatives = alternatives }

  /// A CLIP vision encoder (`image_encoder/` of h94/IP-Adapter, or a transformers repo).
  public static let imageEncoder = HubComponentFiles([
    ["config.json"], ["model.safetensors", "model.fp16.safetensors", "pytorch_model.bin"],
  ])
  /// A diffusers ControlNet.
  public static let controlNet = HubComponentFiles([
    ["config.json"],
    ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.bin"],
  ])
  /// An insightface model pack for face analysis (`buffalo_l`, `antelopev2` as users mirror them
  /// on the hub): its detector and its recogniser under the released names; the landmark and
  /// attribute graphs are not needed.
  public static let faceAnalysisPack = HubComponentFiles([
    ["det_10g.onnx", "scrfd_10g_bnkps.onnx"], ["w600k_r50.onnx", "glintr100.onnx"],
  ])
}

extension HubClient {
  /// One file (an IP-Adapter, a VAE, a single-file checkpoint): a local path as is, or one file of
  /// a hub repo, downloaded into the cache when missing.
  /// - Throws: `HubError.invalidReference` when `reference` names a whole repo.
  public func resolveFile(_ reference: HubReference, progress: HubProgressHandler? = nil) async throws(HubError) -> URL {
    if case .repo = reference {
      throw HubError.invalidReference(
        reference.description, reason: "it names a whole repository; give org/name/path/to/file")
    }
    return try await resolve(reference, progress: progress)
  }

  /// A component folder (an image encoder, a ControlNet): a local path as is, or a repo or
  /// sub-folder of a repo whose `files` are fetched; returns the folder holding them.
  public func resolveFolder(
    _ reference: HubReference, files: HubComponentFiles, progress: HubProgressHandler? = nil
  ) async throws(HubError) -> URL {
    let (repo, sub, revision): (String, String, String?)
    switch reference {
    case .local(let path): return URL(fileURLWithPath: HubConfiguration.expandTilde(path))
    case .repo(let r, let rev): (repo, sub, revision) = (r, "", rev)
    case .file(let r, let p, let rev): (repo, sub, revision) = (r, p, rev)
    }
    var folder: URL?
    for alternatives in files.alternatives {
      var lastError: HubError?
      var found = false
      for name in alternatives {
        let path = sub.isEmpty ? name : "\(sub)/\(name)"
        do {
          let url = try await downloadFile(repoID: repo, path: path, revision: revision, progress: progress)
          folder = url.deletingLastPathComponent()
          found = true
          break
        } catch {
          lastError = error
        }
      }
      if !found, let lastError { throw lastError }
    }
    guard let folder else {
      throw HubError.invalidReference(reference.description, reason: "no files to fetch for this component")
    }
    return folder
  }

  /// The image encoder that belongs to a hub adapter file in the same repo, by
  /// `AdapterEncoderLayout` (`models/image_encoder` for `models/ip-adapter_sd15.bin` and for
  /// `sdxl_models/ip-adapter-plus_sdxl_vit-h.bin`). nil for a local adapter (its encoder is
  /// looked up by the same rule on the local path).
  public func resolveSiblingImageEncoder(
    ofAdapter reference: HubReference, progress: HubProgressHandler? = nil
  ) async throws(HubError) -> URL? {
    guard case .file(let repo, let path, let revision) = reference else { return nil }
    let sub = AdapterEncoderLayout.imageEncoderFolder(forAdapter: path)
    return try await resolveFolder(.file(repoID: repo, path: sub, revision: revision), files: .imageEncoder, progress: progress)
  }
}
