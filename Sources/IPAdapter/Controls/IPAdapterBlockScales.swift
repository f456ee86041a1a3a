import Foundation

/// diffusers' dictionary form of `set_ip_adapter_scale`, e.g. `{"down": {"block_2": [0.0, 1.0]},
/// "up": {"block_0": [0.0, 1.0, 0.0]}}`, resolved to one scale per cross-attention layer.
///
/// Semantics (for one adapter), exactly as `set_ip_adapter_scale(dict)` →
/// `_maybe_expand_lora_scales(unet, [dict], default_scale=0.0)` → processors matched by
/// `name.startswith(key)`:
/// - keys `down`, `mid`, `up`; **a part or block that is not named gets 0** (adapter off there);
/// - `down`/`up`: a number for every block of that part that has cross-attention, or
///   `{"block_i": v}` where `v` is a number (every attention of block i) or a list with one value
///   per `attentions.j` — `layers_per_block` values for down blocks, `layers_per_block + 1` for up
///   blocks; a one-element list is repeated;
/// - `mid`: a number or a one-element list;
/// - a value applies to every transformer block inside its `attentions.j` (SDXL: 2 or 10 layers).
///
/// matches: diffusers `_maybe_expand_lora_scales` (0.42.1, `loaders/unet_loader_utils.py`) and
/// `IPAdapterMixin.set_ip_adapter_scale`. Deliberate differences, all refusals of input diffusers
/// accepts but ignores: a `block_i` that does not exist or has no cross-attention (diffusers drops
/// it silently → `.unknownBlock`); flattened top-level keys such as `"down.block_0.0"` (diffusers
/// accepts then overwrites them with 0 → `.unknownPart`); booleans and strings as values (→
/// `.malformedScales`). Only the dictionary form of one adapter; lists of per-image scales (used
/// with masks) are the pipeline's business.
public struct IPAdapterBlockScales: Equatable, Sendable {
  /// The value given for one block or for `mid`.
  public enum Value: Equatable, Sendable {
    /// One number for every attention of the block.
    case all(Float)
    /// One number per `attentions.j` (a one-element list is repeated, as diffusers does).
    case perAttention([Float])
  }

  /// The value given for `down` or `up`.
  public enum PartValue: Equatable, Sendable {
    /// One number for every block of the part that has cross-attention.
    case all(Float)
    /// `{"block_i": value}`; blocks not listed get 0. Keys are kept as typed so that errors can
    /// name them.
    case blocks([String: Value])
  }

  public var down: PartValue?
  public var mid: Value?
  public var up: PartValue?

  public init(down: PartValue? = nil, mid: Value? = nil, up: PartValue? = nil) {
    self.down = down
    self.mid = mid
    self.up = up
  }

  /// Parses the JSON text of the dictionary (what `--ip-block-scales` takes); a bare number means
  /// that scale everywhere.
  public init(json: String) throws {
    let value: JSONNumberTree
    do {
      value = try JSONDecoder().decode(JSONNumberTree.self, from: Data(json.utf8))
    } catch {
      throw IPAdapterControlError.malformedScales(key: "", reason: "is not valid JSON (\(json))")
    }
    if case .number(let x) = value {  // a bare number: every layer, as set_ip_adapter_scale(float)
      down = .all(Float(x))
      mid = .all(Float(x))
      up = .all(Float(x))
      return
    }
    guard case .object(let top) = value else {
      throw IPAdapterControlError.malformedScales(key: "", reason: "must be a number or a JSON object with keys down/mid/up")
    }
    for key in top.keys.sorted() where IPAdapterLayerPosition.Part(rawValue: key) == nil {
      throw IPAdapterControlError.unknownPart(key: key)
    }
    func number(_ v: JSONNumberTree, _ key: String) throws -> Float {
      guard case .number(let x) = v else { throw IPAdapterControlError.malformedScales(key: key, reason: "must be a number") }
      return Float(x)
    }
    func blockValue(_ v: JSONNumberTree, _ key: String) throws -> Value {
      if case .array(let list) = v {
        return .perAttention(try list.enumerated().map { try number($0.element, "\(key)[\($0.offset)]") })
      }
      guard case .number(let x) = v else {
        throw IPAdapterControlError.malformedScales(key: key, reason: "must be a number or a list of numbers")
      }
      return .all(Float(x))
    }
    func part(_ name: String) throws -> PartValue? {
      guard let v = top[name] else { return nil }
      switch v {
      case .number(let x): return .all(Float(x))
      case .object(let blocks):
        var out: [String: Value] = [:]
        for (k, b) in blocks { out[k] = try blockValue(b, "\(name).\(k)") }
        return .blocks(out)
      default:
        throw IPAdapterControlError.malformedScales(key: name, reason: "must be a number or {\"block_i\": …}")
      }
    }
    down = try part("down")
    up = try part("up")
    mid = try top["mid"].map { try blockValue($0, "mid") }
  }

  /// One scale per slot, in slot order. Throws for names this UNet does not have and for list
  /// lengths that do not match its attentions (the error names the key).
  public func scales(for slots: [IPAdapterLayerSlot]) throws -> [Float] {
    let positions = try slots.map { try $0.position() }
    // Attentions per block that has cross-attention ("blocks_with_transformer", "transformer_per_block").
    var attentions: [IPAdapterLayerPosition.Part: [Int: Int]] = [:]
    for p in positions {
      attentions[p.part, default: [:]][p.block] = max(attentions[p.part]?[p.block] ?? 0, p.attention + 1)
    }
    var table: [String: Float] = [:]  // attention module → scale

    func expand(_ value: Value, key: String, count: Int) throws -> [Float] {
      switch value {
      case .all(let x): return Array(repeating: x, count: count)
      case .perAttention(let list) where list.count == 1: return Array(repeating: list[0], count: count)
      case .perAttention(let list):
        guard list.count == count else { throw IPAdapterControlError.wrongListLength(key: key, expected: count, got: list.count) }
        return list
      }
    }
    for part in [IPAdapterLayerPosition.Part.down, .up] {
      let blocks = attentions[part] ?? [:]
      let given = part == .down ? down : up
      var perBlock: [Int: Value] = [:]
      switch given {
      case nil: break
      case .all(let x): for b in blocks.keys { perBlock[b] = .all(x) }
      case .blocks(let named):
        for key in named.keys.sorted() {
          guard key.hasPrefix("block_"), let b = Int(key.dropFirst(6)), key == "block_\(b)", blocks[b] != nil else {
            throw IPAdapterControlError.unknownBlock(
              key: "\(part.rawValue).\(key)", available: blocks.keys.sorted().map { "\(part.rawValue).block_\($0)" })
          }
          perBlock[b] = named[key]
        }
      }
      for (b, count) in blocks.sorted(by: { $0.key < $1.key }) {
        let values = try expand(perBlock[b] ?? .all(0), key: "\(part.rawValue).block_\(b)", count: count)
        for (j, v) in values.enumerated() { table["\(part.rawValue)_blocks.\(b).attentions.\(j)"] = v }
      }
    }
    if let mid {
      let v = try expand(mid, key: "mid", count: 1)[0]
      for j in 0..<(attentions[.mid]?[0] ?? 0) { table["mid_block.attentions.\(j)"] = v }
    }
    return positions.map { table[$0.attentionModule] ?? 0 }
  }
}

/// A JSON value restricted to what block scales may contain; booleans and strings are kept apart
/// from numbers so that `true` is refused instead of read as 1.
enum JSONNumberTree: Decodable, Equatable {
  case number(Double)
  case array([JSONNumberTree])
  case object([String: JSONNumberTree])
  case other

  init(from decoder: Decoder) throws {
    let c = try decoder.singleValueContainer()
    if (try? c.decode(Bool.self)) != nil {
      self = .other
    } else if let x = try? c.decode(Double.self) {
      self = .number(x)
    } else if let a = try? c.decode([JSONNumberTree].self) {
      self = .array(a)
    } else if let o = try? c.decode([String: JSONNumberTree].self) {
      self = .object(o)
    } else {
      self = .other
    }
  }
}
