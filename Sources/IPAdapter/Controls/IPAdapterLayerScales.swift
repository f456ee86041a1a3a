/// How an adapter's strength is spread over the UNet's cross-attention layers: the one choice the
/// pipeline resolves into one `IPAdapterLayerControl` (scale, and for ComfyUI's precise types a
/// branch swap) per `IPAdapterLayerSlot`.
///
/// - `uniform(λ)`: λ in every layer (diffusers `set_ip_adapter_scale(float)`).
/// - `blocks(d)`: diffusers' dictionary form, unlisted blocks 0 (`IPAdapterBlockScales`).
/// - `preset(p, λ)`: InstantStyle's style / composition blocks at λ, 0 elsewhere
///   (`IPAdapterBlockPreset`).
/// - `comfy(w)`: a ComfyUI_IPAdapter_plus weight type (`ComfyWeighting`).
///
/// matches: diffusers `_maybe_expand_lora_scales` (0.42.1), InstantStyle `target_blocks`,
/// ComfyUI_IPAdapter_plus WEIGHT_TYPES @ 9d076a3 — see each type for details and limitations.
public enum IPAdapterLayerScales: Equatable, Sendable {
  case uniform(Float)
  case blocks(IPAdapterBlockScales)
  case preset(IPAdapterBlockPreset, scale: Float)
  case comfy(ComfyWeighting)

  /// One control per slot, in slot order.
  public func layers(for slots: [IPAdapterLayerSlot]) throws -> [IPAdapterLayerControl] {
    switch self {
    case .comfy(let w): return try w.layers(for: slots)
    default: return try scales(for: slots).map { IPAdapterLayerControl(scale: $0) }
    }
  }

  /// One scale per slot, in slot order (a ComfyUI precise type's branch swap is in `layers`).
  public func scales(for slots: [IPAdapterLayerSlot]) throws -> [Float] {
    switch self {
    case .uniform(let s): return Array(repeating: s, count: slots.count)
    case .blocks(let b): return try b.scales(for: slots)
    case .preset(let p, let s): return try p.scales(for: slots, scale: s)
    case .comfy(let w): return try w.scales(for: slots)
    }
  }
}
