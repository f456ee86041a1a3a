import IPAdapter
import Models
import TensorCore

/// How a new adapter starts, as IP-Adapter's training scripts start it.
public enum AdapterInitialization {
  /// The `ip_adapter` part of a new adapter for `unet`: every cross-attention layer's `to_k_ip` /
  /// `to_v_ip` a copy of that layer's `to_k` / `to_v`, under the released numbering
  /// (`1.to_k_ip.weight`, `3.to_k_ip.weight`, …; `IPAdapterLayerTable`).
  ///
  /// matches: `tutorial_train.py`'s `weights = {"to_k_ip.weight": unet_sd[layer_name + ".to_k.weight"], …}`.
  public static func decoupledAttentionState(copying unet: UNet2DConditionModel) -> [String: Tensor] {
    var state: [String: Tensor] = [:]
    for (slot, layer) in zip(IPAdapterLayerTable.slots(for: unet), unet.crossAttentionLayers) {
      state["\(slot.key).to_k_ip.weight"] = layer.block.attn2.toK.weight.value.asFloat32()
      state["\(slot.key).to_v_ip.weight"] = layer.block.attn2.toV.weight.value.asFloat32()
    }
    return state
  }
}
