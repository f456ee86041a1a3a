import Foundation
import TensorCore

/// ComfyUI_IPAdapter_plus's `weight_type` names (`WEIGHT_TYPES` plus the internal
/// "strong style and composition" of the Style & Composition node with `expand_style`).
///
/// matches: ComfyUI_IPAdapter_plus WEIGHT_TYPES @ 9d076a3 (2025-02-26), `IPAdapterPlus.py`.
public enum ComfyWeightType: String, Sendable, CaseIterable {
  case linear
  case easeIn = "ease in"
  case easeOut = "ease out"
  case easeInOut = "ease in-out"
  case reverseInOut = "reverse in-out"
  case weakInput = "weak input"
  case weakOutput = "weak output"
  case weakMiddle = "weak middle"
  case strongMiddle = "strong middle"
  case styleTransfer = "style transfer"
  case composition
  case strongStyleTransfer = "strong style transfer"
  case styleAndComposition = "style and composition"
  case strongStyleAndComposition = "strong style and composition"
  case styleTransferPrecise = "style transfer precise"
  case compositionPrecise = "composition precise"

  /// Accepts ComfyUI's spelling and CLI spellings with `-`/`_` for spaces (`ease-in-out`,
  /// `style_transfer_precise`), plus the Simple node's aliases `standard` (linear) and
  /// `prompt is more important` (ease out).
  public init(name: String) throws {
    let n = name.lowercased().replacingOccurrences(of: "_", with: " ").replacingOccurrences(of: "-", with: " ")
    let aliases = ["standard": ComfyWeightType.linear, "prompt is more important": .easeOut]
    if let a = aliases[n] {
      self = a
      return
    }
    guard let t = Self.allCases.first(where: { $0.rawValue.replacingOccurrences(of: "-", with: " ") == n }) else {
      throw IPAdapterControlError.unknownName(kind: "weight type", name: name, known: Self.allCases.map(\.rawValue))
    }
    self = t
  }
}

/// What a layer-scale choice decides for one layer: its weight and, for ComfyUI's precise types,
/// whether the guidance branches are swapped.
///
/// matches: ComfyUI_IPAdapter_plus @ 9d076a3 `ipadapter_attention` (`weight`, and
/// `uncond = cond; cond = cond * 0` for the precise types); diffusers/InstantStyle choices never swap.
public struct IPAdapterLayerControl: Equatable, Sendable {
  /// The layer's weight λ (0: the layer gets no image prompt).
  public var scale: Float
  /// ComfyUI "precise" types: in this layer the unconditional branch attends to the image tokens
  /// and the conditional branch to zero tokens (K = V = 0, so it adds nothing), which makes
  /// classifier-free guidance push *away* from the reference there. Apply with
  /// `swappedBranches(_:)` to the keys and values.
  public var swapBranches: Bool

  public init(scale: Float, swapBranches: Bool = false) {
    self.scale = scale
    self.swapBranches = swapBranches
  }

  /// Keys or values `[B, Lk, C]` with the batch laid out `[unconditional, conditional]` (B = 2)
  /// rebuilt as `[conditional, 0]`; with B = 1 (no guidance, conditional only) all zeros.
  /// Equivalent to ComfyUI's `uncond = cond; cond = cond * 0` because `to_k_ip`/`to_v_ip` have no
  /// bias.
  public static func swappedBranches(_ t: Tensor) throws -> Tensor {
    guard t.rank == 3, t.shape[0] == 1 || t.shape[0] == 2 else {
      throw IPAdapterControlError.badShape(name: "image-prompt keys/values", expected: "[1 or 2, tokens, channels]", got: t.shape)
    }
    var out = Tensor.zeros(t.shape)
    if t.shape[0] == 2 {
      let row = t.count / 2
      let src = t.asFloat32().floatPointer + row
      out.withUnsafeMutableFloats { dst in
        for i in 0..<row { dst[i] = src[i] }
      }
    }
    return out
  }
}

/// ComfyUI_IPAdapter_plus weight types resolved to one `IPAdapterLayerControl` per slot.
///
/// ComfyUI numbers cross-attention *stacks* (`transformer_index`, t) in LDM order input → middle
/// → output, one per `Transformer2DModel`; every transformer block of a stack shares its t. L = 16
/// (SD1.5) or 11 (SDXL); w = `weight`, w_c = `weightComposition`. Our slots come in diffusers'
/// order (down → up → mid), so:
///
/// | SD1.5 slot | diffusers module | ComfyUI block | t | IP key |
/// |---|---|---|---|---|
/// | 0–1 | down_blocks.0.attentions.0–1 | input 1, 2 | 0–1 | 1, 3 |
/// | 2–3 | down_blocks.1.attentions.0–1 | input 4, 5 | 2–3 | 5, 7 |
/// | 4–5 | down_blocks.2.attentions.0–1 | input 7, 8 | 4–5 | 9, 11 |
/// | 6–8 | up_blocks.1.attentions.0–2 | output 3–5 | 7–9 | 13–17 |
/// | 9–11 | up_blocks.2.attentions.0–2 | output 6–8 | 10–12 | 19–23 |
/// | 12–14 | up_blocks.3.attentions.0–2 | output 9–11 | 13–15 | 25–29 |
/// | 15 | mid_block.attentions.0 | middle 1 | 6 | 31 |
///
/// | SDXL slots | diffusers module (transformer blocks) | ComfyUI block | t |
/// |---|---|---|---|
/// | 0–1, 2–3 | down_blocks.1.attentions.0, .1 (2 each) | input 4, 5 | 0, 1 |
/// | 4–13, 14–23 | down_blocks.2.attentions.0, .1 (10 each) | input 7, 8 | 2, 3 |
/// | 24–33, 34–43, 44–53 | up_blocks.0.attentions.0–2 (10 each) | output 0–2 | 5–7 |
/// | 54–55, 56–57, 58–59 | up_blocks.1.attentions.0–2 (2 each) | output 3–5 | 8–10 |
/// | 60–69 | mid_block.attentions.0 (10) | middle 1 | 4 |
///
/// Per-layer weight (`CrossAttentionPatch.ipadapter_attention`): ease in w·(0.05 + 0.95·(1 − t/L));
/// ease out w·(0.05 + 0.95·t/L); ease in-out w·(0.05 + 0.95·(1 − |t − L/2|/(L/2))); reverse
/// in-out w·(0.05 + 0.95·|t − L/2|/(L/2)); weak input/middle/output 0.2w on that block group and
/// w elsewhere; strong middle 0.2w on input and output, w on the middle; linear w. The
/// block-selective types use `ipadapter_execute`'s tables (t → weight; unlisted t → 0):
///
/// | type | SD1.5 | SDXL |
/// |---|---|---|
/// | style transfer | 0–3, 9–15 → w | 6 → w |
/// | composition | 4 → 0.25w, 5 → w | 3 → w |
/// | strong style transfer | 0–3, 6–15 → w | 0–2, 4–10 → w |
/// | style and composition | 0–3, 9–15 → w; 4 → 0.25w_c; 5 → w_c | 3 → w_c; 6 → w |
/// | strong style and composition | 0–3, 6–15 → w; 4, 5 → w_c | 3 → w_c; others → w |
/// | style transfer precise (s = styleBoost ?? w) | 0–3, 9–15 → w; 4 → 0.25s; 5 → s; **swap 4, 5** | 3 → s; 6 → w; **swap 3** |
/// | composition precise (b = compositionBoost ?? w) | 0–3, 9–15 → b; 4 → 0.25w; 5 → w; 6–8 → 0.1b; **swap all but 4, 5** | 3 → w; 6 → b; others → 0.1b; **swap all but 3** |
///
/// `layerWeights` (the Mad Scientist node's `"t:w, t:w"`) replaces the table with t → value·w and
/// turns every type but the two precise ones into linear. A `styleBoost`/`compositionBoost` forces
/// the matching precise type, as the Precise nodes do.
///
/// **The middle block.** ComfyUI registers the middle-block patch under `("middle", 1)` while the
/// UNet looks it up as `("middle", 0)`, so current ComfyUI never injects the image prompt in the
/// middle block (cubiq/ComfyUI_IPAdapter_plus#806, #810). By default we patch it with its table
/// entry (t = 6 SD1.5, t = 4 SDXL), as the code intends; `comfyCompatibleMiddle = true` reproduces
/// ComfyUI's output (middle layers get 0).
///
/// matches: ComfyUI_IPAdapter_plus @ 9d076a3 `IPAdapterPlus.py` `ipadapter_execute` (tables,
/// boosts, `layer_weights`) and `CrossAttentionPatch.py` `ipadapter_attention` (curves, swap).
/// Known limitations: the family is detected from the slot count (ComfyUI's `layers` rule) where
/// ComfyUI's tables test `cross_attention_dim == 2048` — identical for real SD1.5/SDXL adapters;
/// the Style & Composition node's separate composition image (`cond_alt`, layer t = 3) is the
/// pipeline's business; per-frame weight lists (batch nodes) are not modelled.
public struct ComfyWeighting: Equatable, Sendable {
  public var type: ComfyWeightType
  public var weight: Double
  public var weightComposition: Double
  public var styleBoost: Double?
  public var compositionBoost: Double?
  public var layerWeights: [Int: Double]?
  public var comfyCompatibleMiddle: Bool

  public init(
    type: ComfyWeightType, weight: Double = 1, weightComposition: Double = 1, styleBoost: Double? = nil,
    compositionBoost: Double? = nil, layerWeights: [Int: Double]? = nil, comfyCompatibleMiddle: Bool = false
  ) {
    self.type = type
    self.weight = weight
    self.weightComposition = weightComposition
    self.styleBoost = styleBoost
    self.compositionBoost = compositionBoost
    self.layerWeights = layerWeights
    self.comfyCompatibleMiddle = comfyCompatibleMiddle
  }

  /// ComfyUI's block group of a slot.
  public enum BlockGroup: String, Sendable { case input, middle, output }

  /// ComfyUI's `transformer_index` and block group of every slot (see the table above).
  public static func comfyIndices(for slots: [IPAdapterLayerSlot]) throws -> [(t: Int, group: BlockGroup)] {
    let positions = try slots.map { try $0.position() }
    func order(_ p: IPAdapterLayerPosition) -> [Int] {
      [p.part == .down ? 0 : p.part == .mid ? 1 : 2, p.block, p.attention]
    }
    let stacks = Set(positions.map(order)).sorted { $0.lexicographicallyPrecedes($1) }
    let index = Dictionary(uniqueKeysWithValues: stacks.enumerated().map { ($0.element, $0.offset) })
    return positions.map { p in
      (index[order(p)]!, p.part == .down ? .input : p.part == .mid ? .middle : .output)
    }
  }

  /// Parses the Mad Scientist node's `layer_weights` text, `"0:0, 3:0.8, 6:0.35"`.
  public static func parseLayerWeights(_ text: String) throws -> [Int: Double] {
    var out: [Int: Double] = [:]
    for item in text.split(separator: ",") {
      let kv = item.split(separator: ":", omittingEmptySubsequences: false)
      guard kv.count == 2, let t = Int(kv[0].trimmingCharacters(in: .whitespaces)),
        let w = Double(kv[1].trimmingCharacters(in: .whitespaces))
      else {
        throw IPAdapterControlError.malformedScales(key: String(item), reason: "must be 'index:weight'")
      }
      out[t] = w
    }
    return out
  }

  /// The effective type and the t → weight table (`ipadapter_execute`), nil for the curve types.
  func table(family: IPAdapterUNetFamily) -> (ComfyWeightType, [Int: Double]?) {
    var type = type
    if styleBoost != nil { type = .styleTransferPrecise } else if compositionBoost != nil { type = .compositionPrecise }
    let xl = family == .sdxl, w = weight, wc = weightComposition
    func all(_ ts: [Int], _ v: Double) -> [Int: Double] { Dictionary(uniqueKeysWithValues: ts.map { ($0, v) }) }
    func merge(_ parts: [Int: Double]...) -> [Int: Double] { parts.reduce(into: [:]) { $0.merge($1) { $1 } } }
    if let lw = layerWeights, !lw.isEmpty {
      let precise = type == .styleTransferPrecise || type == .compositionPrecise
      return (precise ? type : .linear, lw.mapValues { $0 * w })
    }
    switch type {
    case .styleTransfer:
      return (type, xl ? [6: w] : all([0, 1, 2, 3] + Array(9...15), w))
    case .composition:
      return (type, xl ? [3: w] : [4: w * 0.25, 5: w])
    case .strongStyleTransfer:
      return (type, xl ? all([0, 1, 2] + Array(4...10), w) : all([0, 1, 2, 3] + Array(6...15), w))
    case .styleAndComposition:
      return (type, xl ? [3: wc, 6: w] : merge(all([0, 1, 2, 3] + Array(9...15), w), [4: wc * 0.25, 5: wc]))
    case .strongStyleAndComposition:
      return (type, xl ? merge(all(Array(0...10), w), [3: wc]) : merge(all([0, 1, 2, 3] + Array(6...15), w), [4: wc, 5: wc]))
    case .styleTransferPrecise:
      let s = styleBoost ?? w
      return (type, xl ? [3: s, 6: w] : merge(all([0, 1, 2, 3] + Array(9...15), w), [4: s * 0.25, 5: s]))
    case .compositionPrecise:
      let b = compositionBoost ?? w
      return (
        type,
        xl ? merge(all(Array(0...10), b * 0.1), [3: w, 6: b])
          : merge(all([0, 1, 2, 3] + Array(9...15), b), all([6, 7, 8], b * 0.1), [4: w * 0.25, 5: w]))
    default:
      return (type, nil)
    }
  }

  /// One control per slot.
  public func layers(for slots: [IPAdapterLayerSlot]) throws -> [IPAdapterLayerControl] {
    let family = IPAdapterUNetFamily.detect(slots)
    let L = family == .sdxl ? 11.0 : 16.0
    let (type, table) = table(family: family)
    return try Self.comfyIndices(for: slots).map { t, group in
      if comfyCompatibleMiddle && group == .middle { return IPAdapterLayerControl(scale: 0) }
      let td = Double(t)
      var value = weight, swap = false
      switch type {
      case .easeIn: value = weight * (0.05 + 0.95 * (1 - td / L))
      case .easeOut: value = weight * (0.05 + 0.95 * (td / L))
      case .easeInOut: value = weight * (0.05 + 0.95 * (1 - abs(td - L / 2) / (L / 2)))
      case .reverseInOut: value = weight * (0.05 + 0.95 * (abs(td - L / 2) / (L / 2)))
      case .weakInput where group == .input, .weakMiddle where group == .middle, .weakOutput where group == .output:
        value = weight * 0.2
      case .strongMiddle where group != .middle: value = weight * 0.2
      default:
        if let table {
          guard let v = table[t] else { return IPAdapterLayerControl(scale: 0) }
          value = v
          if type == .styleTransferPrecise {
            swap = L == 11 ? t == 3 : (t == 4 || t == 5)
          } else if type == .compositionPrecise {
            swap = L == 11 ? t != 3 : (t != 4 && t != 5)
          }
        }
      }
      return value == 0 ? IPAdapterLayerControl(scale: 0) : IPAdapterLayerControl(scale: Float(value), swapBranches: swap)
    }
  }

  /// The per-slot weights alone (drops the precise types' branch swap).
  public func scales(for slots: [IPAdapterLayerSlot]) throws -> [Float] { try layers(for: slots).map(\.scale) }
}
