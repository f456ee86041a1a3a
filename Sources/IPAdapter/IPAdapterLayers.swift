import Models
import NN
import TensorCore

/// Where an `ip_adapter.N` entry plugs into a UNet.
public struct IPAdapterLayerSlot: Equatable, Sendable {
  /// The checkpoint index `N` (`ip_adapter.N.to_k_ip.weight`).
  public var key: Int
  /// Index among the UNet's cross-attention layers (`CrossAttentionConditioning.sources`).
  public var layer: Int
  /// Key path of the UNet attention module (`down_blocks.0.attentions.0.transformer_blocks.0.attn2`).
  public var name: String
  /// Channels of that attention (rows of `to_k_ip`).
  public var hidden: Int
}

/// The `ip_adapter.N` → UNet layer table: N = 2k + 1 for the k-th cross-attention layer in
/// diffusers' attention-processor order (down blocks, then up blocks, then the mid block), because
/// the original checkpoints number every processor (self-attention included) in that order.
///
/// matches: tencent-ailab/IP-Adapter `ModuleList(unet.attn_processors.values())` and diffusers
/// `_convert_ip_adapter_attn_to_diffusers` (`key_id = 1; key_id += 2`). SD1.5: 1…11 down,
/// 13…29 up, 31 mid.
public enum IPAdapterLayerTable {
  public static func slots(for unet: UNet2DConditionModel) -> [IPAdapterLayerSlot] {
    unet.crossAttentionLayers.enumerated().map { k, layer in
      IPAdapterLayerSlot(key: 2 * k + 1, layer: k, name: layer.name, hidden: layer.block.attn2.toQ.outFeatures)
    }
  }
}

extension IPAdapterLayerTable {
  /// The attention module of processor `n` in diffusers' `unet.attn_processors` order: every
  /// transformer block contributes its self-attention (`attn1`, even n) then its cross-attention
  /// (`attn2`, odd n), blocks in the order of `slots` — how the FaceID LoRA keys
  /// (`n.to_q_lora.down.weight`) are numbered. Nil when `n` is out of range.
  public static func processorPath(_ n: Int, unet: UNet2DConditionModel) -> String? {
    let layers = unet.crossAttentionLayers
    guard n >= 0, n / 2 < layers.count else { return nil }
    let cross = layers[n / 2].name
    guard n % 2 == 0 else { return cross }
    guard cross.hasSuffix(".attn2") else { return nil }
    return String(cross.dropLast("attn2".count)) + "attn1"
  }
}

/// The decoupled key/value projections of one adapter: for every slot, `N.to_k_ip` and
/// `N.to_v_ip` (`Linear(cross_dim → hidden, bias=False)`).
///
/// matches: tencent-ailab/IP-Adapter `IPAttnProcessor.to_k_ip/to_v_ip`.
public final class IPAdapterAttentionWeights: Module {
  public let slots: [IPAdapterLayerSlot]
  public let toK: [Linear]
  public let toV: [Linear]

  public init(slots: [IPAdapterLayerSlot], crossDim: Int) {
    self.slots = slots
    toK = slots.map { Linear(crossDim, $0.hidden, bias: false) }
    toV = slots.map { Linear(crossDim, $0.hidden, bias: false) }
  }

  public var children: [(String, any Module)] {
    var c: [(String, any Module)] = []
    for (i, s) in slots.enumerated() {
      c.append(("\(s.key).to_k_ip", toK[i]))
      c.append(("\(s.key).to_v_ip", toV[i]))
    }
    return c
  }

  /// Keys and values of image-prompt tokens `[B, T, C]` for every slot (computed once per
  /// generation).
  public func keyValues(_ tokens: Tensor) throws -> [(key: Tensor, value: Tensor)] {
    try slots.indices.map { i in (try toK[i](tokens), try toV[i](tokens)) }
  }
}
