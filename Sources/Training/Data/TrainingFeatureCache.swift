import Foundation
import Hub
import TensorCore
import Weights

/// The frozen encoders' outputs per training example, kept on disk (`--cache-dir`) so that after
/// the first epoch a step costs only the UNet: the VAE posterior (mean and log-variance, so that
/// every step still draws its own latent sample, as `latent_dist.sample()`), the caption's text
/// hidden states (SDXL: and pooled embedding), the image prompt's CLIP features (and SDXL's
/// micro-conditioning of the example).
///
/// An example's entry is named by the SHA-256 of its image file's bytes and its caption, so a
/// reordered or extended data file reuses every entry it still has, and an edited image gets a new
/// one. `cache.json` records what the entries were computed with (model, image encoder,
/// resolution, feature kind, precision); a folder made for other settings is refused rather than
/// silently mixed. Entries are written atomically; one that cannot be read back is computed again.
///
/// matches: the "precompute the latents and embeddings" option of diffusers' and kohya's training
/// scripts (`--cache_latents`), for `tutorial_train.py`'s data: its transforms have no random
/// augmentation, so a cached example is exactly the uncached one. Limitations: models are
/// identified by their paths and load options, not their bytes — after changing a model's files
/// in place, use a new folder.
public final class TrainingFeatureCache {
  /// What the entries were computed with; stored in `cache.json`.
  public struct Fingerprint: Codable, Equatable, Sendable {
    public var version = 1
    public var model: String
    public var imageEncoder: String
    public var resolution: Int
    /// `image_embeds` or `hidden_states[-2]`.
    public var imageFeatures: String
    public var precision: String

    public init(model: String, imageEncoder: String, resolution: Int, imageFeatures: String, precision: String) {
      (self.model, self.imageEncoder, self.resolution, self.imageFeatures, self.precision) =
        (model, imageEncoder, resolution, imageFeatures, precision)
    }
  }

  /// One example's frozen features, without a batch axis.
  public struct Features {
    /// The VAE posterior of the target image, NHWC `[h, w, latent channels]` each.
    public var latentMean: Tensor
    public var latentLogVariance: Tensor
    /// The caption through the text encoder(s), `[tokens, width]`.
    public var text: Tensor
    /// The image prompt's CLIP features: `image_embeds` `[E]` or `hidden_states[-2]` `[L, D]`.
    public var image: Tensor
    /// SDXL: the caption's pooled text embedding `[P]` and the example's `add_time_ids` `[6]`.
    public var pooled: Tensor?
    public var timeIds: Tensor?

    public init(latentMean: Tensor, latentLogVariance: Tensor, text: Tensor, image: Tensor, pooled: Tensor? = nil, timeIds: Tensor? = nil) {
      (self.latentMean, self.latentLogVariance, self.text, self.image, self.pooled, self.timeIds) =
        (latentMean, latentLogVariance, text, image, pooled, timeIds)
    }

    static let keys = ["latent_mean", "latent_logvar", "text", "image"]
    static let sdxlKeys = ["pooled", "time_ids"]
    var tensors: [String: Tensor] {
      var out = ["latent_mean": latentMean, "latent_logvar": latentLogVariance, "text": text, "image": image]
      if let pooled { out["pooled"] = pooled }
      if let timeIds { out["time_ids"] = timeIds }
      return out
    }
  }

  public let folder: URL
  public let fingerprint: Fingerprint
  /// Entries read from the folder, and entries computed (and written) by this process.
  public private(set) var hits = 0, misses = 0

  /// Opens (or creates) the cache in `folder`.
  /// - Throws: `TrainingError.invalidArgument(--cache-dir)` when the folder cannot be made or was
  ///   made for other settings (both named).
  public init(folder: URL, fingerprint: Fingerprint) throws {
    self.folder = folder
    self.fingerprint = fingerprint
    let fm = FileManager.default
    do { try fm.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
      throw TrainingError.invalidArgument(name: "--cache-dir", reason: "cannot create \(folder.path): \(error)")
    }
    let manifest = folder.appendingPathComponent("cache.json")
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    if let data = try? Data(contentsOf: manifest) {
      guard data.count < 1 << 20, let stored = try? JSONDecoder().decode(Fingerprint.self, from: data) else {
        throw TrainingError.invalidArgument(name: "--cache-dir", reason: "\(manifest.path) is not a feature cache manifest")
      }
      guard stored == fingerprint else {
        let was = String(decoding: data, as: UTF8.self)
        let now = String(decoding: (try? encoder.encode(fingerprint)) ?? Data(), as: UTF8.self)
        throw TrainingError.invalidArgument(
          name: "--cache-dir",
          reason: "\(folder.path) holds features computed with other settings (\(was)); this run uses \(now): use another folder or delete it")
      }
    } else {
      do { try encoder.encode(fingerprint).write(to: manifest, options: .atomic) } catch {
        throw TrainingError.invalidArgument(name: "--cache-dir", reason: "cannot write \(manifest.path): \(error)")
      }
    }
  }

  /// The entry name of an example: SHA-256 of the image file's bytes, a zero byte, and the caption.
  public static func key(imageBytes: Data, text: String) -> String {
    var digest = Digest(.sha256)
    digest.update(imageBytes)
    digest.update(Data([0]))
    digest.update(Data(text.utf8))
    return digest.finalizeHex()
  }

  func url(_ key: String) -> URL { folder.appendingPathComponent("\(key).safetensors") }

  /// The entry `key`, if present and readable with the expected shapes (`latent` `[h, w, c]`,
  /// `text` `[T, D]`, `image` shaped `imageShape`; SDXL: `pooled` `[P]` and 6 time ids); nil otherwise.
  func load(_ key: String, latent: [Int], text: [Int], image: [Int], pooled: [Int]? = nil) -> Features? {
    guard let file = try? SafeTensorsFile(path: url(key).path) else { return nil }
    var t: [String: Tensor] = [:]
    for name in Features.keys + (pooled == nil ? [] : Features.sdxlKeys) {
      guard let value = try? file.tensor(name).asFloat32() else { return nil }
      t[name] = value
    }
    guard t["latent_mean"]!.shape == latent, t["latent_logvar"]!.shape == latent, t["text"]!.shape == text,
      t["image"]!.shape == image, pooled == nil || (t["pooled"]!.shape == pooled && t["time_ids"]!.shape == [6])
    else { return nil }
    hits += 1
    return Features(
      latentMean: t["latent_mean"]!, latentLogVariance: t["latent_logvar"]!, text: t["text"]!, image: t["image"]!,
      pooled: t["pooled"], timeIds: t["time_ids"])
  }

  /// Writes the entry `key` atomically.
  func store(_ key: String, _ features: Features) throws {
    misses += 1
    do { try SafeTensorsWriter.write(features.tensors.mapValues { $0.asFloat32() }, to: url(key).path) } catch {
      throw TrainingError.invalidArgument(name: "--cache-dir", reason: "cannot write \(url(key).path): \(error)")
    }
  }
}
