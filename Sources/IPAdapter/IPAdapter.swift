import Foundation
import Models
import NN
import TensorCore
import Weights

/// A loaded IP-Adapter: its image projection and its per-layer `to_k_ip`/`to_v_ip`, validated
/// against the UNet it will patch.
///
/// matches: tencent-ailab/IP-Adapter `IPAdapter`/`IPAdapterPlus`/`IPAdapterFull` (original
/// checkpoint layout: `image_proj.*` and `ip_adapter.*`, as `.safetensors` or a `.bin` pickle of
/// the two dicts) and diffusers `load_ip_adapter`. Limitations: FaceID variants are refused with
/// `IPAdapterError.unsupportedVariant`.
/// `@unchecked Sendable`: its layers' only mutable state, the lazily packed kernels, is guarded by `KernelLock`.
public final class IPAdapter: @unchecked Sendable {
  public let path: String
  public let variant: IPAdapterVariant
  public let projection: any ImagePromptProjection
  /// The `to_k_ip`/`to_v_ip` weights; nil when loaded without a UNet (projection only, as
  /// `ipadapter embed` needs).
  public let attention: IPAdapterAttentionWeights?

  /// Opens `path`, detects the variant, checks it against `unet` before reading any weight, then
  /// loads both parts strictly. Without a UNet only the image projection is loaded.
  public init(path: String, unet: UNet2DConditionModel?, prepare: PrepareOptions = PrepareOptions()) throws {
    self.path = path
    let archive = try IPAdapterFile.open(path)
    let (imageProj, ipAdapter) = try IPAdapterFile.split(archive, path: path)
    variant = try IPAdapterVariant.detect(imageProj, path: path)
    var slots: [IPAdapterLayerSlot] = []
    if let unet {
      slots = IPAdapterLayerTable.slots(for: unet)
      try Self.checkUNet(variant: variant, ipAdapter: ipAdapter, slots: slots, unet: unet, path: path)
    }
    projection = variant.makeProjection()
    try projection.loadWeights(
      from: imageProj, source: "\(path) (image_proj)", options: LoadOptions(prepare: prepare))
    if unet != nil {
      let weights = IPAdapterAttentionWeights(slots: slots, crossDim: variant.crossDim)
      try weights.loadWeights(
        from: ipAdapter, source: "\(path) (ip_adapter)", options: LoadOptions(prepare: prepare))
      attention = weights
    } else {
      attention = nil
    }
  }

  /// An adapter assembled from already-loaded parts (tests, benchmarks, programmatic use).
  public init(path: String, variant: IPAdapterVariant, projection: any ImagePromptProjection, attention: IPAdapterAttentionWeights?) {
    self.path = path
    self.variant = variant
    self.projection = projection
    self.attention = attention
  }

  /// Pre-flight: the adapter's token width must be the UNet's cross-attention width, it must
  /// patch exactly the UNet's cross-attention layers, each with the right channel count.
  static func checkUNet(
    variant: IPAdapterVariant, ipAdapter: any TensorArchive, slots: [IPAdapterLayerSlot],
    unet: UNet2DConditionModel, path: String
  ) throws {
    let cross = unet.crossAttentionDim
    if variant.crossDim != cross {
      throw IPAdapterError.wrongUNet(
        path: path,
        reason: "its image tokens are \(variant.crossDim) wide (\(Self.family(crossDim: variant.crossDim))) but this UNet's cross-attention takes \(cross) (\(Self.family(crossDim: cross)))")
    }
    var keys = Set<Int>()
    for key in ipAdapter.keys where key.hasSuffix(".to_k_ip.weight") {
      if let n = Int(key.split(separator: ".")[0]) { keys.insert(n) }
    }
    if keys.count != slots.count {
      throw IPAdapterError.wrongUNet(
        path: path,
        reason: "it patches \(keys.count) cross-attention layers, this UNet has \(slots.count)")
    }
    for s in slots {
      guard let info = ipAdapter.info("\(s.key).to_k_ip.weight") else {
        throw IPAdapterError.wrongUNet(path: path, reason: "ip_adapter.\(s.key).to_k_ip.weight (for \(s.name)) is missing")
      }
      if info.shape != [s.hidden, cross] {
        throw IPAdapterError.wrongUNet(
          path: path,
          reason: "ip_adapter.\(s.key).to_k_ip.weight is \(info.shape) but \(s.name) needs [\(s.hidden), \(cross)]")
      }
    }
  }

  static func family(crossDim: Int) -> String {
    switch crossDim {
    case 768: "SD 1.x"
    case 1024: "SD 2.x"
    case 2048: "SDXL"
    default: "a \(crossDim)-wide text encoder"
    }
  }

  /// Pre-flight: the image encoder must produce what the projection consumes.
  public func checkEncoder(_ config: CLIPVisionConfig, encoderPath: String) throws {
    let produced = variant.usesImageEmbeds ? config.projectionDim : config.hiddenSize
    let field = variant.usesImageEmbeds ? "image embeddings (projection_dim)" : "hidden states (hidden_size)"
    guard produced == variant.inputWidth else {
      throw IPAdapterError.wrongImageEncoder(
        path: path, encoder: encoderPath,
        reason: "the adapter takes \(field) of width \(variant.inputWidth), the encoder gives \(produced)",
        needed: Self.encoderName(width: variant.inputWidth, embeds: variant.usesImageEmbeds))
    }
    if case .plus(let s) = variant, let max = s.maxSequenceLength, max < config.tokenCount {
      throw IPAdapterError.wrongImageEncoder(
        path: path, encoder: encoderPath,
        reason: "the Resampler's pos_emb has \(max) positions, the encoder gives \(config.tokenCount) tokens",
        needed: "an encoder with at most \(max) tokens")
    }
  }

  /// Names the encoder a width belongs to (the #1 user question: which encoder?).
  public static func encoderName(width: Int, embeds: Bool) -> String {
    switch (width, embeds) {
    case (1024, true), (1280, false):
      "the OpenCLIP ViT-H/14 encoder (h94/IP-Adapter models/image_encoder)"
    case (1280, true), (1664, false):
      "the OpenCLIP ViT-bigG/14 encoder (h94/IP-Adapter sdxl_models/image_encoder)"
    case (768, true), (1024, false):
      "an OpenAI CLIP ViT-L/14 encoder"
    default:
      "an image encoder whose \(embeds ? "projection_dim" : "hidden_size") is \(width)"
    }
  }

  /// Image-prompt tokens `[1, N·T, C]` for N images' features (each image projected separately,
  /// tokens concatenated in order — one softmax over all of them, as diffusers).
  public func tokens(_ features: Tensor) throws -> Tensor {
    let n = features.shape[0]
    let projected = try projection(features)
    return projected.reshaped([1, n * projected.shape[1], projected.shape[2]])
  }
}

/// Opening IP-Adapter files in either container and splitting the two parts.
public enum IPAdapterFile {
  /// `.safetensors` (flat keys `image_proj.*` / `ip_adapter.*`) or a PyTorch `.bin` pickle of
  /// `{"image_proj": …, "ip_adapter": …}` — chosen by content, not by extension.
  public static func open(_ path: String) throws -> any TensorArchive {
    guard FileManager.default.fileExists(atPath: path) else {
      throw IPAdapterError.badInput("IP-Adapter file not found: \(path)")
    }
    return try openCheckpoint(path: path)
  }

  /// The `image_proj` and `ip_adapter` parts with their prefixes removed.
  public static func split(_ archive: any TensorArchive, path: String) throws -> (any TensorArchive, any TensorArchive) {
    func part(_ prefix: String) throws -> any TensorArchive {
      try RenamedArchive(archive) { key, _ in key.hasPrefix(prefix) ? (String(key.dropFirst(prefix.count)), nil) : nil }
    }
    let imageProj = try part("image_proj.")
    let ipAdapter = try part("ip_adapter.")
    guard !imageProj.keys.isEmpty, !ipAdapter.keys.isEmpty else {
      let sample = archive.keys.prefix(4).joined(separator: ", ")
      throw IPAdapterError.notAnIPAdapter(
        path: path, reason: "expected image_proj.* and ip_adapter.* tensors, found \(archive.keys.count) others (\(sample)…)")
    }
    return (imageProj, ipAdapter)
  }
}
