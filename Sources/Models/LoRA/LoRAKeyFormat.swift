/// The model part a LoRA layer belongs to.
public enum LoRAComponent: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
  case unet
  case textEncoder = "text_encoder"
  case textEncoder2 = "text_encoder_2"
  public var description: String { rawValue }
}

/// How a LoRA file names its tensors, as data: which prefix says which component, which suffix
/// says which matrix, and whether the layer name is a dotted module path or kohya's flattened one.
///
/// matches: the layouts diffusers 0.42.1 `load_lora_weights` accepts for Stable Diffusion —
/// kohya-ss / AUTOMATIC1111 (`lora_unet_…`, `lora_te_…`, `lora_te1_…`/`lora_te2_…` with `.alpha`,
/// LoCon convolutions included; `_convert_non_diffusers_lora_to_diffusers`), PEFT
/// (`unet.….lora_A.weight`/`lora_B.weight`), and the older diffusers layouts (`….lora.down.weight`,
/// text-encoder `….lora_linear_layer.down.weight`, attention-processor
/// `….processor.to_q_lora.down.weight` and text-encoder `self_attn.to_q_lora.down.weight`).
public enum LoRAKeyFormat {
  /// Which matrix (or scalar) a key holds.
  public enum Role: Sendable, Equatable { case down, up, alpha }

  /// A name prefix and the component it selects; `flat` names are kohya's `.`→`_` paths.
  public struct Prefix: Sendable {
    public var text: String
    public var component: LoRAComponent
    public var flat: Bool
  }

  /// A name suffix, the role it gives, and what it appends to the module path (the processor
  /// layout names `to_q_lora` on the attention module, meaning its `to_q`).
  public struct Suffix: Sendable {
    public var text: String
    public var role: Role
    public var module: String
    public var style: String
    init(_ text: String, _ role: Role, module: String = "", style: String) {
      self.text = text
      self.role = role
      self.module = module
      self.style = style
    }
  }

  /// Checked in order (`text_encoder_2.` before `text_encoder.`, `lora_te1_` before `lora_te_`).
  public static let prefixes: [Prefix] = [
    Prefix(text: "lora_unet_", component: .unet, flat: true),
    Prefix(text: "lora_te1_", component: .textEncoder, flat: true),
    Prefix(text: "lora_te2_", component: .textEncoder2, flat: true),
    Prefix(text: "lora_te_", component: .textEncoder, flat: true),
    Prefix(text: "unet.", component: .unet, flat: false),
    Prefix(text: "text_encoder_2.", component: .textEncoder2, flat: false),
    Prefix(text: "text_encoder.", component: .textEncoder, flat: false),
  ]

  /// Unprefixed dotted names of the oldest diffusers UNet-only files start with these.
  public static let bareUNetRoots = ["down_blocks.", "mid_block.", "up_blocks.", "conv_in.", "conv_out.", "time_embedding."]

  public static let suffixes: [Suffix] = {
    var s: [Suffix] = [
      Suffix(".lora_down.weight", .down, style: "kohya"),
      Suffix(".lora_up.weight", .up, style: "kohya"),
      Suffix(".alpha", .alpha, style: "kohya"),
      Suffix(".lora_A.weight", .down, style: "PEFT"),
      Suffix(".lora_B.weight", .up, style: "PEFT"),
      Suffix(".lora_linear_layer.down.weight", .down, style: "diffusers (legacy)"),
      Suffix(".lora_linear_layer.up.weight", .up, style: "diffusers (legacy)"),
      Suffix(".lora.down.weight", .down, style: "diffusers (legacy)"),
      Suffix(".lora.up.weight", .up, style: "diffusers (legacy)"),
    ]
    // The attention-processor layout names the LoRA after the projection (`attn1.processor.to_q_lora`,
    // text encoders `self_attn.to_q_lora`); a trailing `.processor` is dropped by `parse`.
    for (name, module) in [("to_q", "to_q"), ("to_k", "to_k"), ("to_v", "to_v"), ("to_out", "to_out.0")] {
      s.append(Suffix(".\(name)_lora.down.weight", .down, module: "." + module, style: "diffusers (attention processor)"))
      s.append(Suffix(".\(name)_lora.up.weight", .up, module: "." + module, style: "diffusers (attention processor)"))
    }
    // Longest first, so `.lora.down.weight` is not mistaken for a shorter suffix.
    return s.sorted { $0.text.count > $1.text.count }
  }()

  /// Key endings of networks that are not plain low-rank products, with their names.
  public static let unsupported: [(suffix: String, kind: String)] = [
    (".hada_w1_a", "LyCORIS LoHa"), (".hada_w1_b", "LyCORIS LoHa"),
    (".lokr_w1", "LyCORIS LoKr"), (".lokr_w1_a", "LyCORIS LoKr"), (".lokr_w2", "LyCORIS LoKr"),
    (".dora_scale", "DoRA"), (".lora_magnitude_vector", "DoRA"),
    (".lora_mid.weight", "LoCon with Tucker decomposition (lora_mid)"),
    (".diff", "full weight difference"), (".diff_b", "full weight difference"),
    (".oft_blocks", "OFT"), (".oft_diag", "OFT"), (".w_norm", "GLoRA/norm"), (".a1.weight", "GLoRA"),
  ]

  /// The parsed name of one file key.
  public struct ParsedKey: Sendable, Equatable {
    public var component: LoRAComponent
    /// The module path (dotted) or kohya's flattened name, without the component prefix.
    public var module: String
    public var flat: Bool
    public var role: Role
    public var style: String
  }

  /// Parses `key`, or returns nil for keys of no known layout.
  public static func parse(_ key: String) -> ParsedKey? {
    guard let suffix = suffixes.first(where: { key.hasSuffix($0.text) }) else { return nil }
    var name = String(key.dropLast(suffix.text.count))
    var component = LoRAComponent.unet
    var flat = false
    if let prefix = prefixes.first(where: { name.hasPrefix($0.text) }) {
      name = String(name.dropFirst(prefix.text.count))
      component = prefix.component
      flat = prefix.flat
    } else if !bareUNetRoots.contains(where: { name.hasPrefix($0) }) {
      return nil
    }
    if name.hasSuffix(".processor") { name = String(name.dropLast(".processor".count)) }
    guard !name.isEmpty else { return nil }
    return ParsedKey(component: component, module: name + suffix.module, flat: flat, role: suffix.role, style: suffix.style)
  }
}
