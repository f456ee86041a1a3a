import Foundation

/// How the names below one LDM module (its "leaves": `in_layers.0.weight`, `q.bias`, …) become
/// diffusers names.
///
/// matches: diffusers single_file_utils (0.42.1) `update_unet_resnet_ldm_to_diffusers`,
/// `update_vae_resnet_ldm_to_diffusers`, `update_vae_attentions_ldm_to_diffusers` (`.same` is
/// `update_unet_attention_ldm_to_diffusers`: transformer blocks keep their names).
public enum LDMLeaves: Sendable, Equatable {
  /// Unchanged (convolutions, norms, linears, transformer blocks: LDM and diffusers agree).
  case same
  /// A UNet `ResBlock` → diffusers `ResnetBlock2D` (`LDMKeyTable.unetResnetLeaves`).
  case unetResnet
  /// A VAE `ResnetBlock` → diffusers `ResnetBlock2D` (`LDMKeyTable.vaeResnetLeaves`).
  case vaeResnet
  /// The VAE mid-block `AttnBlock` → diffusers `Attention` (`LDMKeyTable.vaeAttentionLeaves`);
  /// its 1×1 convolution kernels are read as linear weights.
  case vaeAttention
}

/// One row of the table: everything under the LDM module `ldm` belongs to the diffusers module
/// `diffusers`, its leaves renamed by `leaves`. In the templated rows, `{b}` is the diffusers
/// block, `{j}` the layer in it, `{i}` the running LDM `input_blocks`/`output_blocks` index,
/// `{k}` the position of the upsampler in an output block (1, or 2 after an attention) and `{r}`
/// the LDM decoder level of diffusers up block `{b}` (levels are numbered bottom-up: `n−1−b`).
///
/// matches: the `{"old": …, "new": …}` prefix pairs of diffusers single_file_utils (0.42.1)
/// `convert_ldm_unet_checkpoint` / `convert_ldm_vae_checkpoint`, but matched on whole dotted path
/// segments (diffusers matches substrings).
public struct LDMRow: Sendable, Equatable {
  public var ldm: String
  public var diffusers: String
  public var leaves: LDMLeaves

  public init(_ ldm: String, _ diffusers: String, _ leaves: LDMLeaves = .same) {
    self.ldm = ldm
    self.diffusers = diffusers
    self.leaves = leaves
  }
}

/// The CompVis/LDM single-file layout (what `model.ckpt` / civitai `.safetensors` files use) in
/// diffusers' names, for the Stable Diffusion 1.x UNet, VAE and CLIP text encoder — as data.
/// `LDMKeyMapping` interprets it; `UNet2DConditionConfig`/`AutoencoderKLConfig` supply the block
/// counts that expand the templated rows.
///
/// matches: diffusers single_file_utils (0.42.1) `convert_ldm_unet_checkpoint`,
/// `convert_ldm_vae_checkpoint` (+ `conv_attn_to_linear`), `convert_ldm_clip_checkpoint`,
/// `DIFFUSERS_TO_LDM_MAPPING`, and LDM's `LitEma` naming of EMA copies.
/// SDXL files add `label_emb.0.{0,2}` (the `text_time` addition embedding) to the UNet, keep the
/// CLIP ViT-L encoder under `conditioner.embedders.0.transformer.` and store the OpenCLIP bigG
/// encoder under `conditioner.embedders.1.model.` (`openCLIPLayers`, fused `in_proj`, transposed
/// `text_projection`; diffusers `convert_open_clip_checkpoint`).
/// Limitations: no SD2.x (`cond_stage_model.model.`), no SDXL refiner (OpenCLIP as embedder 0), no
/// `control_model` (ControlNet), no class embeddings (upscalers).
public enum LDMKeyTable {
  // MARK: Components of a single file

  /// The UNet's prefix (`LatentDiffusion.model` is a `DiffusionWrapper` around `diffusion_model`).
  public static let unetPrefix = "model.diffusion_model."
  /// EMA copies: `model_ema.` + the UNet key without `model.` and without dots
  /// (`model.diffusion_model.out.2.bias` → `model_ema.diffusion_modelout2bias`).
  public static let emaPrefix = "model_ema."
  /// The VAE's prefixes (`first_stage_model` in LDM; diffusers also accepts `vae.`).
  public static let vaePrefixes = ["first_stage_model.", "vae."]
  /// The CLIP text encoder's prefixes, longest first; both map to our keys (no `text_model.`).
  public static let clipPrefixes = ["cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."]
  /// CLIP buffers that are not parameters (ignored).
  public static let clipBuffers = ["embeddings.position_ids"]
  /// SDXL: the CLIP ViT-L text encoder (keys `text_model.*` below it).
  public static let sdxlClipPrefix = "conditioner.embedders.0.transformer."
  /// SDXL: the OpenCLIP ViT-bigG text encoder (`text_encoder_2`).
  public static let openCLIPPrefix = "conditioner.embedders.1.model."
  /// Torch's container key around the weights of Lightning `.ckpt` files (may repeat).
  public static let stateDictWrapper = "state_dict."

  // MARK: UNet

  /// Rows that do not depend on the configuration.
  public static let unetFixed: [LDMRow] = [
    LDMRow("time_embed.0", "time_embedding.linear_1"),
    LDMRow("time_embed.2", "time_embedding.linear_2"),
    LDMRow("input_blocks.0.0", "conv_in"),
    LDMRow("middle_block.0", "mid_block.resnets.0", .unetResnet),
    LDMRow("middle_block.1", "mid_block.attentions.0"),
    LDMRow("middle_block.2", "mid_block.resnets.1", .unetResnet),
    LDMRow("out.0", "conv_norm_out"),
    LDMRow("out.2", "conv_out"),
  ]
  /// SDXL's `text_time` addition embedding (`add_embedding`; LDM `label_emb` is a Sequential).
  public static let unetTextTime: [LDMRow] = [
    LDMRow("label_emb.0.0", "add_embedding.linear_1"),
    LDMRow("label_emb.0.2", "add_embedding.linear_2"),
  ]
  /// Per layer `{j}` of down block `{b}`; `{i}` counts from 1 (0 is `conv_in`).
  public static let unetDownResnet = LDMRow("input_blocks.{i}.0", "down_blocks.{b}.resnets.{j}", .unetResnet)
  /// Cross-attention down blocks only.
  public static let unetDownAttention = LDMRow("input_blocks.{i}.1", "down_blocks.{b}.attentions.{j}")
  /// After the layers of every down block but the last (it takes an index of its own).
  public static let unetDownsample = LDMRow("input_blocks.{i}.0.op", "down_blocks.{b}.downsamplers.0.conv")
  /// Per layer `{j}` of up block `{b}` (`layers_per_block + 1` layers); `{i}` counts from 0.
  public static let unetUpResnet = LDMRow("output_blocks.{i}.0", "up_blocks.{b}.resnets.{j}", .unetResnet)
  /// Cross-attention up blocks only.
  public static let unetUpAttention = LDMRow("output_blocks.{i}.1", "up_blocks.{b}.attentions.{j}")
  /// In the last layer of every up block but the last.
  public static let unetUpsample = LDMRow("output_blocks.{i}.{k}.conv", "up_blocks.{b}.upsamplers.0.conv")

  /// LDM `ResBlock` → diffusers `ResnetBlock2D`.
  public static let unetResnetLeaves: [(ldm: String, diffusers: String)] = [
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("emb_layers.1", "time_emb_proj"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("skip_connection", "conv_shortcut"),
  ]

  // MARK: VAE

  /// Rows that do not depend on the configuration.
  public static let vaeFixed: [LDMRow] = [
    LDMRow("encoder.conv_in", "encoder.conv_in"),
    LDMRow("encoder.mid.block_1", "encoder.mid_block.resnets.0", .vaeResnet),
    LDMRow("encoder.mid.attn_1", "encoder.mid_block.attentions.0", .vaeAttention),
    LDMRow("encoder.mid.block_2", "encoder.mid_block.resnets.1", .vaeResnet),
    LDMRow("encoder.norm_out", "encoder.conv_norm_out"),
    LDMRow("encoder.conv_out", "encoder.conv_out"),
    LDMRow("quant_conv", "quant_conv"),
    LDMRow("post_quant_conv", "post_quant_conv"),
    LDMRow("decoder.conv_in", "decoder.conv_in"),
    LDMRow("decoder.mid.block_1", "decoder.mid_block.resnets.0", .vaeResnet),
    LDMRow("decoder.mid.attn_1", "decoder.mid_block.attentions.0", .vaeAttention),
    LDMRow("decoder.mid.block_2", "decoder.mid_block.resnets.1", .vaeResnet),
    LDMRow("decoder.norm_out", "decoder.conv_norm_out"),
    LDMRow("decoder.conv_out", "decoder.conv_out"),
  ]
  /// Per layer `{j}` of encoder block `{b}` (`layers_per_block` layers).
  public static let vaeEncoderResnet = LDMRow("encoder.down.{b}.block.{j}", "encoder.down_blocks.{b}.resnets.{j}", .vaeResnet)
  /// Every encoder block but the last.
  public static let vaeDownsample = LDMRow("encoder.down.{b}.downsample.conv", "encoder.down_blocks.{b}.downsamplers.0.conv")
  /// Per layer `{j}` of decoder block `{b}` (`layers_per_block + 1` layers); LDM numbers the
  /// decoder levels in reverse (`{r}` = n − 1 − `{b}`).
  public static let vaeDecoderResnet = LDMRow("decoder.up.{r}.block.{j}", "decoder.up_blocks.{b}.resnets.{j}", .vaeResnet)
  /// Every decoder block but the last.
  public static let vaeUpsample = LDMRow("decoder.up.{r}.upsample.conv", "decoder.up_blocks.{b}.upsamplers.0.conv")

  /// LDM VAE `ResnetBlock` → diffusers `ResnetBlock2D`.
  public static let vaeResnetLeaves: [(ldm: String, diffusers: String)] = [
    ("norm1", "norm1"), ("conv1", "conv1"), ("norm2", "norm2"), ("conv2", "conv2"),
    ("nin_shortcut", "conv_shortcut"),
  ]
  /// LDM `AttnBlock` → diffusers `Attention`; `linear`: a `[o, i, 1, 1]` (or `[o, i, 1]`) kernel
  /// is read as the `[o, i]` linear weight.
  public static let vaeAttentionLeaves: [(ldm: String, diffusers: String, linear: Bool)] = [
    ("norm", "group_norm", false),
    ("q", "to_q", true),
    ("k", "to_k", true),
    ("v", "to_v", true),
    ("proj_out", "to_out.0", true),
  ]

  // MARK: OpenCLIP text encoder (SDXL's second)

  /// How one OpenCLIP tensor becomes transformers `CLIPTextModelWithProjection` tensors.
  public enum OpenCLIPTensor: Sendable, Equatable {
    /// Same values under the new name.
    case renamed(String)
    /// `[d, p]` stored transposed: the `[p, d]` linear weight is its transpose.
    case transposed(String)
    /// A fused `in_proj` (`[3d, d]` weight or `[3d]` bias): q, k and v are its thirds, in order.
    case split([String])
  }

  /// Keys outside `transformer.` that diffusers reads; every other one (`logit_scale`,
  /// `attn_mask`) is ignored as diffusers ignores it.
  public static let openCLIPLayers: [String: OpenCLIPTensor] = [
    "token_embedding.weight": .renamed("text_model.embeddings.token_embedding.weight"),
    "positional_embedding": .renamed("text_model.embeddings.position_embedding.weight"),
    "ln_final.weight": .renamed("text_model.final_layer_norm.weight"),
    "ln_final.bias": .renamed("text_model.final_layer_norm.bias"),
    "text_projection": .transposed("text_projection.weight"),
  ]
  /// The modules of `transformer.resblocks.{n}` → `text_model.encoder.layers.{n}`.
  public static let openCLIPBlockLeaves: [(ldm: String, diffusers: String)] = [
    ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2"),
    ("attn.out_proj", "self_attn.out_proj"),
  ]

  /// The transformers tensor(s) of one OpenCLIP key (relative to `openCLIPPrefix`), nil when
  /// diffusers ignores it.
  public static func openCLIP(_ key: String) -> OpenCLIPTensor? {
    if let layer = openCLIPLayers[key] { return layer }
    let blocks = "transformer.resblocks."
    guard key.hasPrefix(blocks) else { return nil }
    let rest = key.dropFirst(blocks.count)
    guard let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]), n >= 0 else { return nil }
    let leaf = String(rest[rest.index(after: dot)...])
    let layer = "text_model.encoder.layers.\(n)."
    switch leaf {
    case "attn.in_proj_weight": return .split(["q", "k", "v"].map { layer + "self_attn.\($0)_proj.weight" })
    case "attn.in_proj_bias": return .split(["q", "k", "v"].map { layer + "self_attn.\($0)_proj.bias" })
    default:
      for (ldm, diffusers) in openCLIPBlockLeaves where leaf.hasPrefix(ldm + ".") {
        return .renamed(layer + diffusers + leaf.dropFirst(ldm.count))
      }
      return .renamed(layer + leaf)  // unknown leaves keep a name strict loading reports
    }
  }

  // MARK: Expansion with a configuration

  /// The UNet rows for a configuration (`layers_per_block`, block types).
  public static func unetRows(_ config: UNet2DConditionConfig) -> [LDMRow] {
    let n = config.blockOutChannels.count
    let layers = config.layersPerBlockList
    var rows = unetFixed + (config.textTimeEmbedding == nil ? [] : unetTextTime)
    var i = 1
    for b in 0..<n {
      let cross = config.downBlockTypes[b] == "CrossAttnDownBlock2D"
      for j in 0..<layers[b] {
        rows.append(unetDownResnet.filled(["i": i, "b": b, "j": j]))
        if cross { rows.append(unetDownAttention.filled(["i": i, "b": b, "j": j])) }
        i += 1
      }
      if b < n - 1 {
        rows.append(unetDownsample.filled(["i": i, "b": b]))
        i += 1
      }
    }
    i = 0
    let upLayers = Array(layers.reversed())
    for b in 0..<n {
      let cross = config.upBlockTypes[b] == "CrossAttnUpBlock2D"
      let count = upLayers[b] + 1
      for j in 0..<count {
        rows.append(unetUpResnet.filled(["i": i, "b": b, "j": j]))
        if cross { rows.append(unetUpAttention.filled(["i": i, "b": b, "j": j])) }
        if j == count - 1 && b < n - 1 { rows.append(unetUpsample.filled(["i": i, "b": b, "k": cross ? 2 : 1])) }
        i += 1
      }
    }
    return rows
  }

  /// The VAE rows for a configuration (`block_out_channels` count, `layers_per_block`).
  public static func vaeRows(_ config: AutoencoderKLConfig) -> [LDMRow] {
    let n = config.blockOutChannels.count
    var rows = vaeFixed
    for b in 0..<n {
      for j in 0..<config.layersPerBlock { rows.append(vaeEncoderResnet.filled(["b": b, "j": j])) }
      if b < n - 1 { rows.append(vaeDownsample.filled(["b": b])) }
      let r = n - 1 - b
      for j in 0..<(config.layersPerBlock + 1) { rows.append(vaeDecoderResnet.filled(["r": r, "b": b, "j": j])) }
      if b < n - 1 { rows.append(vaeUpsample.filled(["r": r, "b": b])) }
    }
    return rows
  }

  /// The EMA copy's key of a UNet key (`LitEma` removes the dots of `diffusion_model.…`).
  public static func emaKey(forUNetKey key: String) -> String? {
    guard key.hasPrefix(unetPrefix) else { return nil }
    return emaPrefix + key.dropFirst("model.".count).replacingOccurrences(of: ".", with: "")
  }
}

extension LDMRow {
  /// The row with its `{name}` placeholders replaced by `values`.
  func filled(_ values: [String: Int]) -> LDMRow {
    var row = self
    for (name, value) in values {
      row.ldm = row.ldm.replacingOccurrences(of: "{\(name)}", with: String(value))
      row.diffusers = row.diffusers.replacingOccurrences(of: "{\(name)}", with: String(value))
    }
    return row
  }
}
