/// Why an IP-Adapter control (per-layer scales, weight type, step window, mask, combine mode,
/// embeds scaling, negative image) could not be applied, worded for the person who typed it.
///
/// Every case names the offending key, value or count. Several cases are stricter than the
/// reference tools: diffusers silently ignores a `block_i` that does not exist or has no
/// cross-attention; we refuse it (`.unknownBlock`) because an ignored key is almost always a typo.
///
/// matches: the `ValueError` messages of diffusers 0.42.1 (`_maybe_expand_lora_scales`, the mask
/// checks of `IPAdapterAttnProcessor2_0`) where one exists, reworded to name the key.
public enum IPAdapterControlError: Error, CustomStringConvertible, Equatable, Sendable {
  /// `--ip-block-scales` text that is not JSON, or JSON of the wrong shape.
  case malformedScales(key: String, reason: String)
  /// A top-level key other than `down`, `mid`, `up`.
  case unknownPart(key: String)
  /// `down.block_i` / `up.block_i` that is not a block of this UNet with cross-attention.
  case unknownBlock(key: String, available: [String])
  /// A per-attention list whose length is not `layers_per_block` (down), `layers_per_block + 1` (up)
  /// or 1 (mid).
  case wrongListLength(key: String, expected: Int, got: Int)
  /// A preset, weight type or mode name we do not know.
  case unknownName(kind: String, name: String, known: [String])
  /// A preset or weight type that names a layer this UNet does not have.
  case presetNeedsMissingLayer(preset: String, layer: String)
  /// A value outside its allowed range (step window fractions, noise strength, blur…).
  case outOfRange(name: String, value: Double, range: String)
  /// Masks that do not fit the adapters/images they are given for (diffusers' checks).
  case maskMismatch(String)
  /// Tensors with shapes the control cannot work on.
  case badShape(name: String, expected: String, got: [Int])
  /// Something the reference tool offers that this engine does not reproduce.
  case unsupported(String)

  public var description: String {
    switch self {
    case .malformedScales(let key, let reason):
      "IP-Adapter block scales: \(key.isEmpty ? "the value" : "'\(key)'") \(reason)"
    case .unknownPart(let key):
      "IP-Adapter block scales: unknown key '\(key)' (use \"down\", \"mid\" and \"up\")"
    case .unknownBlock(let key, let available):
      "IP-Adapter block scales: '\(key)' is not a UNet block with cross-attention (this UNet has: \(available.joined(separator: ", ")))"
    case .wrongListLength(let key, let expected, let got):
      "IP-Adapter block scales: '\(key)' needs \(expected) value\(expected == 1 ? "" : "s") (one per attention), got \(got)"
    case .unknownName(let kind, let name, let known):
      "unknown \(kind) '\(name)' (known: \(known.joined(separator: ", ")))"
    case .presetNeedsMissingLayer(let preset, let layer):
      "the '\(preset)' setting needs \(layer), which this UNet does not have"
    case .outOfRange(let name, let value, let range):
      "\(name) = \(value) is out of range (\(range))"
    case .maskMismatch(let message): message
    case .badShape(let name, let expected, let got): "\(name) must be \(expected), got \(got)"
    case .unsupported(let message): message
    }
  }
}
