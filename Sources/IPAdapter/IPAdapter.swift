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
/// the two dicts) and diffusers `load_ip_adapter`, FaceID included (`ip_adapter_faceid.py`: the
/// LoRA of `n.to_{q,k,v,out}_lora` keys is read into `faceIDLoRA`, fused into the UNet while the
/// adapter is in use).
/// `@unchecked Sendable`: its layers' only mutable state, the lazily packed kernels, is guarded by `KernelLock`.
public final class IPAdapter: @unchecked Sendable {
  public let path: String
  public let variant: IPAdapterVariant
  public let projection: any ImagePromptProjection
  /// The `to_k_ip`/`to_v_ip` weights; nil when loaded without a UNet (projection only, as
  /// `ipadapter embed` needs).
  public let attention: IPAdapterAttentionWeights?
  /// The FaceID LoRA stored in the adapter file (`ip_adapter.n.to_q_lora.down.weight` …, one set
  /// per attention processor n, self-attention included), resolved to the UNet's attention
  /// modules; nil when the file has none (Portrait adapters) or without a UNet.
  public let faceIDLoRA: LoRAFile?

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
    if let unet {
      let weights = IPAdapterAttentionWeights(slots: slots, crossDim: variant.crossDim)
      try weights.loadWeights(
        from: ipAdapter, source: "\(path) (ip_adapter)",
        options: LoadOptions(ignore: { Self.isFaceIDLoRAKey($0) }, prepare: prepare))
      attention = weights
      faceIDLoRA = try Self.faceIDLoRA(ipAdapter, unet: unet, path: path)
    } else {
      attention = nil
      faceIDLoRA = nil
    }
  }

  /// `n.to_q_lora.down.weight` and the like.
  static let faceIDLoRAParts: [(file: String, module: String)] = [
    ("to_q_lora", "to_q"), ("to_k_lora", "to_k"), ("to_v_lora", "to_v"), ("to_out_lora", "to_out.0"),
  ]

  static func isFaceIDLoRAKey(_ key: String) -> Bool {
    faceIDLoRAParts.contains { key.contains(".\($0.file).") }
  }

  /// The FaceID LoRA of the `ip_adapter` part as a `LoRAFile` over the UNet's attention modules
  /// (scale 1: the reference's `LoRALinearLayer` has no alpha).
  ///
  /// matches: tencent-ailab/IP-Adapter `LoRAAttnProcessor`/`LoRAIPAttnProcessor` (rank from the
  /// file) and diffusers `_load_ip_adapter_loras` (the same keys under the processor names).
  static func faceIDLoRA(_ ipAdapter: any TensorArchive, unet: UNet2DConditionModel, path: String) throws -> LoRAFile? {
    var layers: [LoRALayerWeights] = []
    for key in ipAdapter.keys where key.hasSuffix(".down.weight") && isFaceIDLoRAKey(key) {
      let parts = key.split(separator: ".")
      guard parts.count == 4, let n = Int(parts[0]),
        let part = faceIDLoRAParts.first(where: { $0.file == parts[1] })
      else {
        throw IPAdapterError.notAnIPAdapter(path: path, reason: "ip_adapter.\(key) is not a FaceID LoRA key (n.to_q_lora.down.weight)")
      }
      guard let attention = IPAdapterLayerTable.processorPath(n, unet: unet) else {
        throw IPAdapterError.wrongUNet(
          path: path, reason: "its FaceID LoRA names attention processor \(n), this UNet has \(2 * unet.crossAttentionLayers.count)")
      }
      let upKey = "\(n).\(part.file).up.weight"
      guard ipAdapter.info(upKey) != nil else {
        throw IPAdapterError.notAnIPAdapter(path: path, reason: "ip_adapter.\(key) has no ip_adapter.\(upKey)")
      }
      let down = try ipAdapter.tensor(key)
      let up = try ipAdapter.tensor(upKey)
      for (k, t) in [(key, down), (upKey, up)] {
        guard t.rank == 2, t.shape.allSatisfy({ $0 > 0 }) else {
          throw IPAdapterError.notAnIPAdapter(path: path, reason: "ip_adapter.\(k) must be a non-empty matrix, found \(t.shape)")
        }
        if let i = NonFinite.firstIndex(t) {
          throw LoRAError.nonFinite(path: path, key: "ip_adapter." + k, index: i)
        }
      }
      guard up.shape[1] == down.shape[0] else {
        throw IPAdapterError.notAnIPAdapter(
          path: path, reason: "ip_adapter.\(upKey) \(up.shape) and \(key) \(down.shape) disagree on the rank")
      }
      layers.append(
        LoRALayerWeights(
          component: .unet, module: attention + "." + part.module, flat: false, down: down, up: up, alpha: nil,
          key: "ip_adapter." + key))
    }
    for key in ipAdapter.keys where key.hasSuffix(".up.weight") && isFaceIDLoRAKey(key) {
      let down = String(key.dropLast("up.weight".count)) + "down.weight"
      if ipAdapter.info(down) == nil {
        throw IPAdapterError.notAnIPAdapter(path: path, reason: "ip_adapter.\(key) has no ip_adapter.\(down)")
      }
    }
    guard !layers.isEmpty else { return nil }
    return LoRAFile(path: path + " (FaceID LoRA)", layers: layers, styles: ["IP-Adapter FaceID"])
  }

  /// An adapter assembled from already-loaded parts (tests, benchmarks, programmatic use).
  public init(
    path: String, variant: IPAdapterVariant, projection: any ImagePromptProjection, attention: IPAdapterAttentionWeights?,
    faceIDLoRA: LoRAFile? = nil
  ) {
    self.path = path
    self.variant = variant
    self.projection = projection
    self.attention = attention
    self.faceIDLoRA = faceIDLoRA
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
    guard variant.needsImageEncoder else { return }
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
