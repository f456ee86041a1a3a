import Foundation
import TensorCore
import Weights

/// One low-rank layer of a LoRA file: `ΔW = (alpha / rank) · up · down`.
public struct LoRALayerWeights: Sendable {
  public var component: LoRAComponent
  /// The module path (dotted, `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`) or
  /// kohya's flattened name (`down_blocks_0_attentions_0_…_attn1_to_q`) — see `flat`.
  public var module: String
  public var flat: Bool
  /// `[rank, in]` or `[rank, in, k, k]`.
  public var down: Tensor
  /// `[out, rank]` or `[out, rank, 1, 1]`.
  public var up: Tensor
  /// kohya/PEFT `alpha`; nil means a scale of 1.
  public var alpha: Float?
  /// The file key of `down` (for messages).
  public var key: String

  public init(
    component: LoRAComponent, module: String, flat: Bool, down: Tensor, up: Tensor, alpha: Float?, key: String
  ) {
    (self.component, self.module, self.flat) = (component, module, flat)
    (self.down, self.up, self.alpha, self.key) = (down, up, alpha, key)
  }

  public var rank: Int { down.shape.first ?? 0 }
  /// `alpha / rank`, or 1 without an alpha.
  public var scale: Float { alpha.map { $0 / Float(max(rank, 1)) } ?? 1 }
}

/// A LoRA file read into its layers (tensors stay views of the memory-mapped file).
///
/// matches: the state dicts diffusers 0.42.1 `StableDiffusionPipeline.load_lora_weights` /
/// `StableDiffusionXLPipeline.load_lora_weights` accept (see `LoRAKeyFormat`), from `.safetensors`
/// or a PyTorch `.bin` (read without executing code). Limitations: LyCORIS LoHa/LoKr, DoRA and
/// Tucker (`lora_mid`) networks are refused with `LoRAError.unsupportedKind`; bias LoRAs and
/// embeddings (textual inversion inside a LoRA file) are not read.
public final class LoRAFile: @unchecked Sendable {
  public let path: String
  public let layers: [LoRALayerWeights]
  /// The key layouts found (`kohya`, `PEFT`, …).
  public let styles: [String]
  /// Keys of no known LoRA layout (reported as unmatched when fusing).
  public let unrecognizedKeys: [String]

  /// Opens `path` (any container `openCheckpoint` reads) and pairs every `down` with its `up`.
  public convenience init(path: String) throws {
    guard FileManager.default.fileExists(atPath: path) else {
      throw LoRAError.notALoRA(path: path, reason: "no such file")
    }
    let archive = try openCheckpoint(path: path)
    try self.init(archive: archive, path: path, metadata: (archive as? SafeTensorsFile)?.metadata ?? [:])
  }

  /// A LoRA assembled from layers read elsewhere (the FaceID LoRA inside an IP-Adapter file).
  public init(path: String, layers: [LoRALayerWeights], styles: [String]) {
    self.path = path
    self.layers = layers
    self.styles = styles
    self.unrecognizedKeys = []
  }

  /// Reads the layers of `archive`. `metadata` is the safetensors `__metadata__`, whose
  /// `lora_adapter_metadata` (PEFT's `lora_alpha`/`r`, written by diffusers) sets the scale of
  /// PEFT layers without `.alpha` tensors.
  public init(archive: any TensorArchive, path: String, metadata: [String: String] = [:]) throws {
    self.path = path
    struct Pending { var down: String?; var up: String?; var alpha: String?; var parsed: LoRAKeyFormat.ParsedKey }
    var byModule: [String: Pending] = [:]
    var order: [String] = []
    var unrecognized: [String] = []
    var styles = Set<String>()
    for key in archive.keys {
      if let bad = LoRAKeyFormat.unsupported.first(where: { key.hasSuffix($0.suffix) }) {
        throw LoRAError.unsupportedKind(path: path, key: key, kind: bad.kind)
      }
      guard let parsed = LoRAKeyFormat.parse(key) else {
        unrecognized.append(key)
        continue
      }
      let id = parsed.component.rawValue + "|" + (parsed.flat ? "_" : ".") + parsed.module
      if byModule[id] == nil {
        byModule[id] = Pending(parsed: parsed)
        order.append(id)
      }
      if parsed.role != .alpha { styles.insert(parsed.style) }
      switch parsed.role {
      case .down: byModule[id]!.down = key
      case .up: byModule[id]!.up = key
      case .alpha: byModule[id]!.alpha = key
      }
    }
    let peftAlpha = try Self.peftAlpha(metadata: metadata, path: path)
    var layers: [LoRALayerWeights] = []
    for id in order {
      let p = byModule[id]!
      guard let downKey = p.down, let upKey = p.up else {
        if p.down == nil && p.up == nil { continue }  // a lone `.alpha` (kohya writes some): nothing to fuse
        let have = p.down ?? p.up!
        throw LoRAError.malformed(path: path, key: have, reason: "its \(p.down == nil ? "down (lora_A)" : "up (lora_B)") matrix is missing")
      }
      let down = try archive.tensor(downKey)
      let up = try archive.tensor(upKey)
      for (key, t) in [(downKey, down), (upKey, up)] {
        guard t.rank == 2 || (t.rank == 4) else {
          throw LoRAError.malformed(path: path, key: key, reason: "expected a 2-D or 4-D matrix, found shape \(t.shape)")
        }
        guard t.shape.allSatisfy({ $0 > 0 }) else {
          throw LoRAError.malformed(path: path, key: key, reason: "empty matrix \(t.shape)")
        }
        if let index = NonFinite.firstIndex(t) { throw LoRAError.nonFinite(path: path, key: key, index: index) }
      }
      guard up.shape[1] == down.shape[0] else {
        throw LoRAError.malformed(
          path: path, key: upKey, reason: "up \(up.shape) and down \(down.shape) disagree on the rank (\(up.shape[1]) vs \(down.shape[0]))")
      }
      if up.rank == 4, up.shape[2] != 1 || up.shape[3] != 1 {
        throw LoRAError.malformed(path: path, key: upKey, reason: "a convolution LoRA's up matrix must be [out, rank, 1, 1], found \(up.shape)")
      }
      var alpha: Float?
      if let alphaKey = p.alpha {
        let t = try archive.tensor(alphaKey)
        guard t.count == 1 else {
          throw LoRAError.malformed(path: path, key: alphaKey, reason: "alpha must be one number, found shape \(t.shape)")
        }
        let value = t.scalars()[0]
        guard value.isFinite else { throw LoRAError.malformed(path: path, key: alphaKey, reason: "alpha \(value) is not finite") }
        alpha = value
      } else if p.parsed.style == "PEFT", let peftAlpha {
        alpha = peftAlpha.alpha(component: p.parsed.component, module: p.parsed.module, rank: down.shape[0])
      }
      layers.append(
        LoRALayerWeights(
          component: p.parsed.component, module: p.parsed.module, flat: p.parsed.flat, down: down, up: up, alpha: alpha, key: downKey))
    }
    guard !layers.isEmpty else {
      let sample = archive.keys.prefix(4).joined(separator: ", ")
      throw LoRAError.notALoRA(
        path: path, reason: "no lora_down/lora_up, lora_A/lora_B or lora.down/lora.up pairs among its \(archive.keys.count) tensors (\(sample)\(archive.keys.count > 4 ? ", …" : ""))")
    }
    self.layers = layers
    self.styles = styles.sorted()
    self.unrecognizedKeys = unrecognized
  }

  /// The file's name without its extension (how AUTOMATIC1111 names a LoRA in `<lora:name:w>`).
  public var name: String { ((path as NSString).lastPathComponent as NSString).deletingPathExtension }

  /// PEFT adapter settings diffusers stores in the safetensors metadata.
  struct PEFTAlpha {
    var byComponent: [LoRAComponent: (alpha: Float?, rslora: Bool, patterns: [String: Float])]
    /// The alpha giving PEFT's scaling with `scale = alpha / rank`: `lora_alpha` (or the
    /// `alpha_pattern` entry naming the module), times √rank with `use_rslora` (whose scaling is
    /// `lora_alpha / √r`).
    func alpha(component: LoRAComponent, module: String, rank: Int) -> Float? {
      guard let c = byComponent[component] else { return nil }
      // alpha_pattern keys match the module name as PEFT's `(.*\.)?(key)$` does.
      let patterned = c.patterns.filter { module == $0.key || module.hasSuffix("." + $0.key) }
        .max { $0.key.count < $1.key.count }?.value
      guard let alpha = patterned ?? c.alpha else { return nil }
      return c.rslora ? alpha * Float(rank).squareRoot() : alpha
    }
  }

  /// Reads `lora_adapter_metadata` (a JSON object of each component's `LoraConfig` fields with the
  /// component as prefix — `unet.lora_alpha`, `unet.r`, `unet.alpha_pattern`, `unet.use_rslora` … —
  /// as diffusers' `save_lora_weights(..., unet_lora_adapter_metadata=...)` writes it).
  static func peftAlpha(metadata: [String: String], path: String) throws -> PEFTAlpha? {
    guard let text = metadata["lora_adapter_metadata"] else { return nil }
    guard text.utf8.count <= 1 << 20, let data = text.data(using: .utf8),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else {
      throw LoRAError.malformed(path: path, key: "__metadata__.lora_adapter_metadata", reason: "not a JSON object of at most 1 MiB")
    }
    var out = PEFTAlpha(byComponent: [:])
    for component in LoRAComponent.allCases {
      let p = component.rawValue + "."
      func number(_ any: Any?) -> Float? { (any as? NSNumber).map { $0.floatValue }.flatMap { $0.isFinite ? $0 : nil } }
      let alpha = number(object[p + "lora_alpha"])
      let rslora = (object[p + "use_rslora"] as? Bool) ?? false
      if (object[p + "use_dora"] as? Bool) == true {
        throw LoRAError.unsupportedKind(path: path, key: "__metadata__.lora_adapter_metadata \(p)use_dora", kind: "DoRA")
      }
      var patterns: [String: Float] = [:]
      if let dict = object[p + "alpha_pattern"] as? [String: Any] {
        for (k, v) in dict { if let f = number(v) { patterns[k] = f } }
      }
      if alpha != nil || !patterns.isEmpty { out.byComponent[component] = (alpha, rslora, patterns) }
    }
    return out
  }
}
