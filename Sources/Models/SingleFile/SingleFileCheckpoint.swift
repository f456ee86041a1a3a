import Foundation
import NN
import Weights

/// What a single-file checkpoint holds, inferred from its tensors.
///
/// matches: diffusers `infer_diffusers_model_type` (0.42.1) for the types `v1`, `inpainting`,
/// `xl_base` and `xl_inpaint`.
public enum SingleFileModelType: String, Sendable, Equatable {
  /// Stable Diffusion 1.x text-to-image: a 4-channel UNet.
  case sd1 = "Stable Diffusion 1.x"
  /// Stable Diffusion 1.x inpainting: a 9-channel UNet (latents, mask, masked-image latents).
  case sd1Inpainting = "Stable Diffusion 1.x inpainting"
  /// SDXL base (and fine-tunes): two text encoders, a 4-channel UNet.
  case sdxl = "Stable Diffusion XL"
  /// SDXL inpainting: a 9-channel UNet.
  case sdxlInpainting = "Stable Diffusion XL inpainting"

  /// The UNet's `in_channels`.
  public var unetInChannels: Int { self == .sd1 || self == .sdxl ? 4 : 9 }
  /// Whether the file holds SDXL's two text encoders.
  public var isSDXL: Bool { self == .sdxl || self == .sdxlInpainting }
}

/// Which UNet weights to read from a file that has both the trained weights
/// (`model.diffusion_model.*`) and their exponential moving average (`model_ema.*`).
///
/// matches: the `extract_ema` option of diffusers `convert_ldm_unet_checkpoint` (0.42.1), with
/// `.preferEMA` as the default where diffusers defaults to `extract_ema=False`.
public enum EMAChoice: Sendable, Equatable {
  /// The EMA weights when the file has an EMA copy of every UNet tensor (the default: EMA weights
  /// are the ones meant for inference); otherwise the trained weights. Partial EMA sets are ignored.
  case preferEMA
  /// Always `model.diffusion_model.*` — what diffusers' `from_single_file` loads (its converter's
  /// `extract_ema` defaults to false).
  case nonEMA
}

/// A Stable Diffusion 1.x checkpoint in the CompVis/LDM single-file layout (`.safetensors` or a
/// torch `.ckpt`): UNet `model.diffusion_model.*`, VAE `first_stage_model.*`, CLIP text encoder
/// `cond_stage_model.transformer[.text_model].*`, optionally wrapped in `state_dict`, optionally
/// with EMA copies `model_ema.*`, in F32/F16/BF16. Opening checks the model type; the components
/// are read through `LDMKeyTable` with strict loading.
///
/// matches: diffusers single_file_utils (0.42.1) `load_single_file_checkpoint` (`state_dict`
/// unwrapping), `infer_diffusers_model_type`, `convert_ldm_unet_checkpoint` (with `extract_ema`),
/// `convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`.
/// SDXL files (`conditioner.embedders.0.transformer.*` + OpenCLIP `conditioner.embedders.1.model.*`,
/// diffusers' `xl_base`/`xl_inpaint`) are read the same way, the second encoder through
/// `openCLIPWeights` (`convert_open_clip_checkpoint`).
/// Known differences: EMA weights are preferred by default (`EMAChoice`), and EMA is used only
/// when complete (diffusers: more than 100 `model_ema` keys). Limitations: SD1.x and SDXL only
/// (SD2.x, SDXL refiner and ControlNet files are refused with `SingleFileError.unsupportedModel`); the model
/// configuration is not read from the file (callers pass diffusers configs); keys outside the
/// three components (`model_ema.*` when unused, DDPM schedule buffers, `loss.*`) are ignored.
/// `@unchecked Sendable`: immutable after init (read-only archives).
public final class SingleFileCheckpoint: @unchecked Sendable {
  /// The file (or the name given to an in-memory archive).
  public let path: String
  /// The tensors with any `state_dict.` wrapper removed.
  public let archive: any TensorArchive
  public let modelType: SingleFileModelType
  /// True when the UNet is read from the `model_ema.*` copies.
  public let usesEMA: Bool
  /// The VAE's prefix in this file, nil when it has no VAE (a separate VAE file is then needed).
  public let vaePrefix: String?
  /// The CLIP text encoder's prefix in this file.
  public let clipPrefix: String

  /// Opens `path` by content (`openCheckpoint`: safetensors or a torch zip read by the restricted
  /// unpickler) and checks what it holds.
  /// - Throws: `SafeTensorsError`/`TorchCheckpointError` for unreadable or unsafe files,
  ///   `SingleFileError` for files that are not SD1.x checkpoints.
  public convenience init(path: String, ema: EMAChoice = .preferEMA) throws {
    try self.init(archive: try openCheckpoint(path: path), path: path, ema: ema)
  }

  /// A checkpoint over an already-open archive (tests, archives assembled in memory).
  public init(archive raw: any TensorArchive, path: String, ema: EMAChoice = .preferEMA) throws {
    self.path = path
    let archive = try Self.unwrap(raw, path: path)
    let keys = archive.keys
    self.archive = archive
    modelType = try Self.detect(archive, path: path)
    let clipPrefixes = modelType.isSDXL ? Self.sdxlClipPrefixes : LDMKeyTable.clipPrefixes
    guard let clip = clipPrefixes.first(where: { p in keys.contains { $0.hasPrefix(p) } }) else {
      throw SingleFileError.missingComponent(
        path: path, component: "CLIP text encoder", prefix: clipPrefixes[1],
        hint: "this engine needs the text encoder inside the checkpoint")
    }
    clipPrefix = clip
    vaePrefix = LDMKeyTable.vaePrefixes.first { p in keys.contains { $0.hasPrefix(p) } }
    let unetKeys = keys.filter { $0.hasPrefix(LDMKeyTable.unetPrefix) }
    var copies: [String: String] = [:]  // EMA key → UNet key
    if ema == .preferEMA {
      for key in unetKeys {
        if let e = LDMKeyTable.emaKey(forUNetKey: key), archive.info(e) != nil { copies[e] = key }
      }
    }
    usesEMA = !unetKeys.isEmpty && copies.count == unetKeys.count
    emaSources = usesEMA ? copies : [:]
  }

  /// EMA key → UNet key, when the UNet is read from its EMA copies.
  private let emaSources: [String: String]

  /// SDXL's first text encoder, longest first (both map to our keys without `text_model.`).
  static let sdxlClipPrefixes = [LDMKeyTable.sdxlClipPrefix + "text_model.", LDMKeyTable.sdxlClipPrefix]

  /// Deepest `state_dict` nesting accepted (real files have one or two levels).
  static let maximumWrapperDepth = 16

  /// Removes `state_dict.` wrappers as diffusers' `while "state_dict" in checkpoint: checkpoint =
  /// checkpoint["state_dict"]` does on the nested dict: at each level only the wrapped keys are
  /// kept, so the result is the keys with the deepest wrapping, stripped of it. Computed in one
  /// pass over the keys (a key's depth is found by a linear scan of its prefix), so a key of
  /// 100,000 nested prefixes costs one read of the key, not 100,000 archive layers.
  /// - Throws: `SingleFileError.tooDeeplyWrapped` beyond `maximumWrapperDepth` levels.
  static func unwrap(_ archive: any TensorArchive, path: String) throws -> any TensorArchive {
    let wrapper = Array(LDMKeyTable.stateDictWrapper.utf8)
    func depth(_ key: String) -> Int {
      var levels = 0
      var utf8 = Substring(key).utf8[...]
      while utf8.starts(with: wrapper) {
        levels += 1
        utf8 = utf8.dropFirst(wrapper.count)
      }
      return levels
    }
    let depths = archive.keys.map(depth)
    let deepest = depths.max() ?? 0
    guard deepest > 0 else { return archive }
    guard deepest <= maximumWrapperDepth else {
      throw SingleFileError.tooDeeplyWrapped(path: path, depth: deepest, limit: maximumWrapperDepth)
    }
    var keep: [String: Int] = [:]
    for (key, d) in zip(archive.keys, depths) where d == deepest { keep[key] = d }
    let strip = deepest * wrapper.count
    return try RenamedArchive(archive) { key, _ in
      keep[key] != nil ? (String(decoding: Array(key.utf8.dropFirst(strip)), as: UTF8.self), nil) : nil
    }
  }

  /// The model type, or a typed refusal naming the evidence.
  static func detect(_ archive: any TensorArchive, path: String) throws -> SingleFileModelType {
    let keys = archive.keys
    func first(_ prefix: String) -> String? { keys.first { $0.hasPrefix(prefix) } }
    let sdxl = first(LDMKeyTable.openCLIPPrefix) != nil
    if !sdxl, let k = first("conditioner.embedders.0.model.") {
      throw SingleFileError.unsupportedModel(
        path: path, family: "Stable Diffusion XL refiner", evidence: "OpenCLIP as the only text encoder ('\(k)')")
    }
    if !sdxl, let k = first("conditioner.embedders.") {
      throw SingleFileError.unsupportedModel(
        path: path, family: "Stable Diffusion XL-style",
        evidence: "key '\(k)' but no OpenCLIP text encoder '\(LDMKeyTable.openCLIPPrefix)*'")
    }
    if let k = first("cond_stage_model.model.") {
      throw SingleFileError.unsupportedModel(
        path: path, family: "Stable Diffusion 2.x", evidence: "OpenCLIP text encoder key '\(k)'")
    }
    if let k = first("control_model.") {
      throw SingleFileError.unsupportedModel(path: path, family: "ControlNet", evidence: "key '\(k)'")
    }
    let convIn = LDMKeyTable.unetPrefix + "input_blocks.0.0.weight"
    guard let info = archive.info(convIn) else {
      throw SingleFileError.notAStableDiffusionCheckpoint(path: path, found: describe(keys))
    }
    if !sdxl, let k = keys.first(where: { $0.hasPrefix(LDMKeyTable.unetPrefix) && $0.hasSuffix(".attn2.to_k.weight") }),
      let width = archive.info(k)?.shape.last, width == 1024 || width == 2048
    {
      throw SingleFileError.unsupportedModel(
        path: path, family: width == 1024 ? "Stable Diffusion 2.x" : "Stable Diffusion XL",
        evidence: "\(width)-wide cross-attention in '\(k)' \(archive.info(k)!.shape)")
    }
    let channels = info.shape.count == 4 ? info.shape[1] : -1
    switch channels {
    case 4: return sdxl ? .sdxl : .sd1
    case 9: return sdxl ? .sdxlInpainting : .sd1Inpainting
    default:
      let family = ["8": "InstructPix2Pix", "7": "x4 upscaler"][String(channels)] ?? "\(channels)-channel UNet"
      throw SingleFileError.unsupportedModel(path: path, family: family, evidence: "'\(convIn)' has shape \(info.shape)")
    }
  }

  /// Words for what a file without an LDM UNet seems to hold.
  static func describe(_ keys: [String]) -> String {
    if keys.isEmpty { return "it holds no tensors" }
    if keys.contains(where: { $0.hasPrefix("lora_") || $0.contains(".lora_") || $0.contains("lora_A") }) {
      return "it looks like LoRA weights"
    }
    if keys.contains(where: { $0.hasPrefix("image_proj.") || $0.hasPrefix("ip_adapter.") }) { return "it looks like an IP-Adapter" }
    if keys.contains(where: { $0.hasPrefix("encoder.down") || $0.hasPrefix("decoder.up") || $0.hasPrefix("first_stage_model.") }) {
      return "it looks like a VAE: give it as the separate VAE file (--vae)"
    }
    if keys.contains(where: { $0.hasPrefix("down_blocks.") }) {
      return "it looks like one diffusers component (a UNet or ControlNet), not a whole checkpoint"
    }
    let roots = Array(Set(keys.map { $0.split(separator: ".").first.map(String.init) ?? $0 })).sorted().prefix(4)
    return "top-level names: \(roots.joined(separator: ", "))"
  }

  // MARK: Components

  /// The UNet's tensors under diffusers names (from the EMA copies when `usesEMA`).
  public func unetWeights(config: UNet2DConditionConfig) throws -> any TensorArchive {
    let prefix = LDMKeyTable.unetPrefix
    let sources = emaSources
    return try LDMKeyMapping.unet(config).archive(archive) { key in
      if !sources.isEmpty { return sources[key].map { String($0.dropFirst(prefix.count)) } }
      return key.hasPrefix(prefix) ? String(key.dropFirst(prefix.count)) : nil
    }
  }

  /// The VAE's tensors under diffusers names.
  /// - Throws: `SingleFileError.missingComponent` when the file has no VAE.
  public func vaeWeights(config: AutoencoderKLConfig) throws -> any TensorArchive {
    guard let prefix = vaePrefix else {
      throw SingleFileError.missingComponent(
        path: path, component: "VAE", prefix: LDMKeyTable.vaePrefixes[0], hint: "give a separate VAE file (--vae)")
    }
    return try LDMKeyMapping.vae(config).archive(archive) { key in
      key.hasPrefix(prefix) ? String(key.dropFirst(prefix.count)) : nil
    }
  }

  /// The CLIP text encoder's tensors under our names (no `text_model.`; buffers hidden).
  public func textEncoderWeights() throws -> any TensorArchive {
    let prefixes = modelType.isSDXL ? Self.sdxlClipPrefixes : LDMKeyTable.clipPrefixes
    return try RenamedArchive(archive) { key, _ in
      guard let p = prefixes.first(where: { key.hasPrefix($0) }) else { return nil }
      let name = String(key.dropFirst(p.count))
      return LDMKeyTable.clipBuffers.contains(name) ? nil : (name, nil)
    }
  }

  /// SDXL's OpenCLIP text encoder (`conditioner.embedders.1.model.*`) under transformers
  /// `CLIPTextModelWithProjection` names: `in_proj` split into q, k, v (thirds of its rows),
  /// `text_projection` transposed, keys diffusers ignores (`logit_scale`, `attn_mask`) hidden.
  ///
  /// matches: diffusers `convert_open_clip_checkpoint` (0.42.1).
  public func openCLIPWeights() throws -> any TensorArchive {
    let prefix = LDMKeyTable.openCLIPPrefix
    var tensors: [(String, DerivedArchive.Source)] = []
    for key in archive.keys where key.hasPrefix(prefix) {
      switch LDMKeyTable.openCLIP(String(key.dropFirst(prefix.count))) {
      case .renamed(let name)?: tensors.append((name, .same(key: key)))
      case .transposed(let name)?: tensors.append((name, .transposed(key: key)))
      case .split(let names)?:
        guard let rows = archive.info(key)?.shape.first, rows % 3 == 0 else {
          throw ArchiveError.badDerivation(key: names[0], source: key, shape: archive.info(key)?.shape)
        }
        let d = rows / 3
        for (i, name) in names.enumerated() { tensors.append((name, .rows(key: key, range: (i * d)..<((i + 1) * d)))) }
      case nil: continue
      }
    }
    return try DerivedArchive(archive, tensors: tensors)
  }

  /// Keys of the file (after unwrapping) that no component reads: unused `model_ema.*`, DDPM
  /// buffers, CLIP `position_ids`, training leftovers. Empty for a pruned file.
  public var ignoredKeys: [String] {
    let unet = LDMKeyTable.unetPrefix
    let clip = modelType.isSDXL ? Self.sdxlClipPrefixes : LDMKeyTable.clipPrefixes
    let openCLIP = LDMKeyTable.openCLIPPrefix
    return archive.keys.filter { key in
      if modelType.isSDXL, key.hasPrefix(openCLIP) { return LDMKeyTable.openCLIP(String(key.dropFirst(openCLIP.count))) == nil }
      if usesEMA ? emaSources[key] != nil : key.hasPrefix(unet) { return false }
      if let vaePrefix, key.hasPrefix(vaePrefix) { return false }
      if let p = clip.first(where: { key.hasPrefix($0) }) { return LDMKeyTable.clipBuffers.contains(String(key.dropFirst(p.count))) }
      return true
    }
  }

  // MARK: Loading

  /// Builds and loads the UNet; `config.in_channels` is set from the file (4 or 9).
  public func loadUNet(config: UNet2DConditionConfig, configPath: String, prepare: PrepareOptions = PrepareOptions()) throws
    -> UNet2DConditionModel
  {
    var config = config
    config.inChannels = modelType.unetInChannels
    let model = try UNet2DConditionModel(config: config, path: configPath)
    let source = "\(path) (UNet, \(usesEMA ? "model_ema.* EMA copies" : LDMKeyTable.unetPrefix + "*"))"
    try model.loadWeights(from: try unetWeights(config: config), source: source, options: LoadOptions(prepare: prepare))
    return model
  }

  /// Builds and loads the VAE from the file's `first_stage_model.*`.
  public func loadVAE(config: AutoencoderKLConfig, configPath: String, prepare: PrepareOptions = PrepareOptions()) throws
    -> AutoencoderKL
  {
    let model = try AutoencoderKL(config: config, path: configPath)
    let source = "\(path) (VAE, \(vaePrefix ?? "")*)"
    try model.loadWeights(from: try vaeWeights(config: config), source: source, options: LoadOptions(prepare: prepare))
    return model
  }

  /// Builds and loads SDXL's second text encoder (OpenCLIP bigG) from `openCLIPWeights`.
  /// - Throws: `SingleFileError.missingComponent` for a file without it.
  public func loadTextEncoder2(config: CLIPTextConfig, configPath: String, prepare: PrepareOptions = PrepareOptions()) throws
    -> CLIPTextModel
  {
    guard modelType.isSDXL else {
      throw SingleFileError.missingComponent(
        path: path, component: "second text encoder", prefix: LDMKeyTable.openCLIPPrefix, hint: "not an SDXL checkpoint")
    }
    let model = try CLIPTextModel(config: config, path: configPath, withProjection: true)
    try model.load(from: try openCLIPWeights(), source: "\(path) (text encoder 2, \(LDMKeyTable.openCLIPPrefix)*)", prepare: prepare)
    return model
  }

  /// Builds and loads the CLIP text encoder.
  public func loadTextEncoder(config: CLIPTextConfig, configPath: String, prepare: PrepareOptions = PrepareOptions()) throws
    -> CLIPTextModel
  {
    let model = try CLIPTextModel(config: config, path: configPath)
    try model.load(from: try textEncoderWeights(), source: "\(path) (text encoder, \(clipPrefix)*)", prepare: prepare)
    return model
  }
}
