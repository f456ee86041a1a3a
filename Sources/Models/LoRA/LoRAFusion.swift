import NN
import TensorCore

/// A LoRA file with the weight it is applied at (`<lora:name:weight>`).
public struct WeightedLoRA: Sendable {
  public var file: LoRAFile
  public var weight: Float
  public init(_ file: LoRAFile, weight: Float = 1) {
    self.file = file
    self.weight = weight
  }
}

/// What `LoRAFusion.apply` did.
public struct LoRAFusionReport: Sendable, Equatable {
  /// Layers whose weights now include LoRA products, per component.
  public var fusedLayers: [LoRAComponent: Int] = [:]
  /// Per file (in order): the LoRA layers (file keys) that matched no model layer and were skipped
  /// (only with `ignoreUnmatched`).
  public var unmatched: [[String]] = []
  public var totalFused: Int { fusedLayers.values.reduce(0, +) }
  public var totalUnmatched: Int { unmatched.reduce(0) { $0 + $1.count } }
}

/// Fuses LoRAs into the weights of loaded models: `W = W₀ + Σᵢ wᵢ · (alphaᵢ / rankᵢ) · upᵢ · downᵢ`,
/// computed in Float32 from the loaded weight `W₀` (kept, a view of the file), before the layers
/// pack their kernels again — so a denoising step costs exactly what it costs without LoRA, and
/// applying another set (or other weights) starts again from `W₀` without reading the model files.
///
/// matches: diffusers 0.42.1 `load_lora_weights` + `set_adapters(names, weights)` +
/// `fuse_lora()` (PEFT `merge`: `W += scaling · B·A`, `scaling = lora_alpha / r`; kohya `alpha`
/// becomes `lora_alpha`). Convolution LoRAs (LoCon): `up [out, r, 1, 1]` times `down [r, in, k, k]`.
public enum LoRAFusion {
  /// Makes the models' weights `W₀ + Σ` over exactly `loras` (an empty list restores `W₀`
  /// everywhere). Everything is validated before any weight changes: on error the models are
  /// left as they were.
  /// - Parameters:
  ///   - targets: the lookup table of each component present (a LoRA layer of an absent
  ///     component counts as unmatched).
  ///   - ignoreUnmatched: skip LoRA layers that name no model layer (reported) instead of
  ///     throwing `LoRAError.unmatchedKeys`.
  ///   - storage: the dtype the fused weights are kept in: Float32 (exact), or BFloat16 for
  ///     bf16 compute, whose kernels round to it anyway (half the memory, identical results).
  @discardableResult
  public static func apply(
    _ loras: [WeightedLoRA], to targets: [LoRAComponent: LoRATargetTable], ignoreUnmatched: Bool = false,
    storage: DType = .float32
  ) throws -> LoRAFusionReport {
    var updates: [String: Update] = [:]
    var order: [String] = []
    var report = LoRAFusionReport()
    for lora in loras {
      let file = lora.file
      guard lora.weight.isFinite else { throw LoRAError.badWeight(path: file.path, weight: lora.weight) }
      var unmatched = file.unrecognizedKeys
      // A component the model does not have (text_encoder_2 on SD1.5) says more than any shape.
      let absent = file.layers.filter { targets[$0.component] == nil }.map(\.key)
      if !absent.isEmpty && !ignoreUnmatched {
        throw LoRAError.unmatchedKeys(path: file.path, keys: absent, hint: hint(for: absent, targets: targets))
      }
      for l in file.layers {
        guard let table = targets[l.component], let layer = table.layer(for: l.module, flat: l.flat) else {
          unmatched.append(l.key)
          continue
        }
        try check(l, fits: layer, path: file.path)
        let id = l.component.rawValue + ":" + layer.path
        if updates[id] == nil {
          updates[id] = Update(layer: layer, terms: [])
          order.append(id)
        }
        updates[id]!.terms.append((l, lora.weight * l.scale))
      }
      if !unmatched.isEmpty && !ignoreUnmatched {
        throw LoRAError.unmatchedKeys(path: file.path, keys: unmatched, hint: hint(for: unmatched, targets: targets))
      }
      report.unmatched.append(unmatched)
    }
    // Fused values first (a NaN produced by the arithmetic still leaves the models untouched),
    // one layer per thread (each conversion and product single-threaded: hundreds of small
    // parallel regions would mostly spin-wait).
    let work = order.map { updates[$0]! }
    var results = [Result<Tensor, Error>?](repeating: nil, count: work.count)
    Runtime.useSingleThreadedBLAS()
    results.withUnsafeMutableBufferPointer { out in
      Parallel.forEach(work.count) { i in
        out[i] = Result { try fusedWeight(work[i], storage: storage) }
      }
    }
    var fusedValues: [(Update, Tensor)] = []
    for (u, result) in zip(work, results) { fusedValues.append((u, try result!.get())) }
    // …then restore every fused layer not in this set, and install the set.
    for (component, table) in targets {
      for (_, layer) in table.layers where layer.weight.unfusedValue != nil {
        if updates[component.rawValue + ":" + layer.path] == nil {
          layer.weight.unfuse()
          layer.module.releaseKernels()
        }
      }
    }
    for (u, fused) in fusedValues {
      try u.layer.weight.fuse(fused)
      u.layer.module.releaseKernels()
      report.fusedLayers[u.terms[0].0.component, default: 0] += 1
    }
    return report
  }

  /// One layer's sum of LoRA products.
  struct Update {
    var layer: LoRATargetLayer
    var terms: [(LoRALayerWeights, Float)]
  }

  /// `W₀ + Σ scale · up·down` of one layer in Float32 (then `storage`); the loaded weight's file
  /// pages are released once read (they are read again only to unfuse).
  static func fusedWeight(_ u: Update, storage: DType) throws -> Tensor {
    let loaded = u.layer.weight.loadedValue
    var fused = loaded.toFloat32(pooled: false)
    loaded.releaseResidentPages()
    for (l, scale) in u.terms where scale != 0 {
      try LowRankUpdate.add(
        into: &fused, rows: u.layer.rows, columns: u.layer.columns, rank: l.rank, up: l.up, down: l.down, scale: scale)
    }
    if let index = NonFinite.firstIndex(fused) {
      throw LoRAError.nonFinite(path: "fused weights", key: u.layer.path + ".weight", index: index)
    }
    return storage == .float32 ? fused : fused.converted(to: storage)
  }

  /// The LoRA layer's matrices must multiply to the layer's weight shape.
  static func check(_ l: LoRALayerWeights, fits layer: LoRATargetLayer, path: String) throws {
    let rank = l.rank
    let outRows = l.up.shape[0]
    let inColumns = l.down.count / rank
    let name = layer.path
    guard outRows == layer.rows else {
      throw LoRAError.shapeMismatch(
        path: path, key: l.key, layer: name,
        reason: "its up matrix \(l.up.shape) gives \(outRows) outputs, the layer has \(layer.rows) (weight \(layer.weight.shape))")
    }
    guard inColumns == layer.columns else {
      throw LoRAError.shapeMismatch(
        path: path, key: l.key, layer: name,
        reason: "its down matrix \(l.down.shape) takes \(inColumns) inputs, the layer takes \(layer.columns) (weight \(layer.weight.shape))")
    }
    // A k×k convolution needs a k×k (or matching flat) down kernel, not a 1×1 one of the same count.
    if layer.weight.shape.count == 4, l.down.rank == 4, Array(l.down.shape[1...]) != Array(layer.weight.shape[1...]) {
      throw LoRAError.shapeMismatch(
        path: path, key: l.key, layer: name, reason: "down kernel \(l.down.shape) does not match the weight \(layer.weight.shape)")
    }
  }

  /// A guess at why nothing matched: the LoRA's component or base model.
  static func hint(for keys: [String], targets: [LoRAComponent: LoRATargetTable]) -> String {
    if keys.contains(where: { $0.hasPrefix("lora_te2_") || $0.hasPrefix("text_encoder_2.") }), targets[.textEncoder2] == nil {
      return "it has text_encoder_2 layers, so it is an SDXL LoRA and this is not an SDXL model"
    }
    if keys.contains(where: { $0.contains("input_blocks_") || $0.contains("output_blocks_") }) {
      return "its UNet layers use the SDXL (SGM) block names, which this model's blocks do not have — is it a LoRA for another base model?"
    }
    return "is it a LoRA for another base model? (--lora-ignore-unmatched skips such layers)"
  }
}
