import IPAdapter
import Models
import TensorCore
import TorchRandom
import Autograd

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

extension AdapterInitialization {
  /// The projection of a new adapter of `variant`, initialised as PyTorch initialises the
  /// official modules: linear weights and biases uniform in ±1/√fan_in (`nn.Linear`'s
  /// `kaiming_uniform_(a=√5)`), LayerNorm weights 1 and biases 0, the Resampler's `latents`
  /// `randn / √dim` — the same distributions, drawn from torch's CPU generator seeded with `seed`
  /// (not the same numbers as a Python run: the draw order differs).
  public static func projectionState(_ variant: IPAdapterVariant, seed: UInt64) throws -> [String: Tensor] {
    let shapes: [(String, [Int])]
    switch variant {
    case .global(let e, let c, let t): shapes = TrainableMLPProjection.parameterShapes(.global(embeddingDim: e, crossDim: c, tokens: t))
    case .fullFace(let e, let c): shapes = TrainableMLPProjection.parameterShapes(.fullFace(clipDim: e, crossDim: c))
    case .faceID(let f): shapes = TrainableMLPProjection.parameterShapes(.faceID(f))
    case .plus(let s): shapes = TrainableResampler.parameterShapes(s)
    case .faceIDPlus: throw AutogradError.invalidArgument("FaceID-Plus projections are not trainable yet")
    case .qwen(let s): return qwenState(s, seed: seed)
    }
    let byKey = Dictionary(uniqueKeysWithValues: shapes)
    var generator = TorchGenerator(seed: seed)
    var state: [String: Tensor] = [:]
    for (key, shape) in shapes {
      let count = shape.reduce(1, *)
      if key == "latents" {
        state[key] = Ops.scale(generator.randn(shape), 1 / Float(shape[2]).squareRoot())
        continue
      }
      let stem = key.hasSuffix(".bias") ? String(key.dropLast(5)) : String(key.dropLast(7))
      if let weight = byKey[stem + ".weight"], weight.count == 2 {
        let bound = 1 / Float(weight[1]).squareRoot()
        state[key] = try Tensor(shape: shape, floats: generator.rand(shape).scalars().map { ($0 * 2 - 1) * bound })
      } else {
        state[key] = try Tensor(shape: shape, floats: Array(repeating: key.hasSuffix(".weight") ? 1 : 0, count: count))
      }
    }
    return state
  }
}

extension AdapterInitialization {
  /// A new Qwen resampler, initialised as Qwen-VL's `Resampler._init_weights` and
  /// `VisionTransformer` do: `query` and the linear weights (`kv_proj`, `attn.out_proj`) normal
  /// with std 0.02 (trunc_normal_ at ±2 absolute: no effective truncation), biases 0,
  /// `attn.in_proj_weight` Xavier-uniform (`nn.MultiheadAttention`'s reset), LayerNorms 1 / 0,
  /// `proj` `randn · E^−½`, `pos_embed` the fixed sin-cos table.
  static func qwenState(_ s: QwenResampler.Shape, seed: UInt64) -> [String: Tensor] {
    var g = TorchGenerator(seed: seed)
    func normal(_ shape: [Int], _ std: Float) -> Tensor { Ops.scale(g.randn(shape), std) }
    let e = s.dim
    let bound = (6 / Float(4 * e)).squareRoot()
    var state: [String: Tensor] = [
      "query": normal([s.queries, e], 0.02), "pos_embed": QwenResampler.sinCosTable(dim: e, grid: s.grid),
      "attn.in_proj_weight": try! Tensor(shape: [3 * e, e], floats: g.rand([3 * e, e]).scalars().map { ($0 * 2 - 1) * bound }),
      "attn.in_proj_bias": Tensor.zeros([3 * e]), "attn.out_proj.weight": normal([e, e], 0.02),
      "attn.out_proj.bias": Tensor.zeros([e]), "proj": normal([e, s.outputDim], 1 / Float(e).squareRoot()),
    ]
    if s.kvDim != e { state["kv_proj.weight"] = normal([e, s.kvDim], 0.02) }
    for n in ["ln_q", "ln_kv", "ln_post"] {
      state[n + ".weight"] = try! Tensor(shape: [e], floats: Array(repeating: 1, count: e))
      state[n + ".bias"] = Tensor.zeros([e])
    }
    return state
  }
}
