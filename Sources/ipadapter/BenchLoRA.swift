import Foundation
import Models
import NN
import TensorCore
import Weights

extension BenchModelsCommand {
  /// The LoRA cases (this file): `lora-overhead` is Swift only; the `lora-fuse-*` cases run side by
  /// side with `tools/reference/bench_torch.py`.
  static let loraCases = ["lora-overhead", "lora-fuse-sd15", "lora-fuse-sdxl"]
}

/// Random LoRAs in the kohya-ss layout users download (`lora_unet_…` / `lora_te_…`, fp16
/// `.lora_down.weight` / `.lora_up.weight`, a 0-dim `.alpha` of rank / 2 on every module), built
/// from the models' own layer tables. `bench_torch.py` (`kohya_lora`) writes the same keys and shapes.
enum BenchLoRA {
  /// Every transformer linear (attn1/attn2 `to_q`/`to_k`/`to_v`/`to_out.0`, `ff.net.0.proj`,
  /// `ff.net.2`) and every transformer's `proj_in`/`proj_out`.
  static let unetLayers = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out"]
  /// Every CLIP text-encoder linear.
  static let textLayers = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
  /// SD1.5: rank 128 on the UNet and the text encoder — 151 MB (144 MiB), the size of a kohya
  /// rank-128 SD1.5 LoRA (the UNet part alone is 109 MB).
  static let sd15Rank = 128
  /// SDXL: rank 32 on the UNet only, in kohya's SGM block names — 170 MB (162 MiB), a common civitai
  /// SDXL LoRA size (rank 32 with both text encoders would be 228 MB).
  static let sdxlRank = 32

  /// The tensors adapting the layers of `table` whose paths end with one of `layers`, named
  /// `prefix` + `name(path)` flattened (`.` → `_`).
  static func tensors(
    _ table: LoRATargetTable, prefix: String, layers: [String], rank: Int, seed: UInt64, name: (String) -> String = { $0 }
  ) throws -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    let alpha = try Tensor(shape: [], floats: [Float(rank) / 2]).converted(to: .float16)
    let paths = table.layers.keys.sorted().filter { path in layers.contains { path.hasSuffix("." + $0) } }
    for (i, path) in paths.enumerated() {
      let layer = table.layers[path]!
      let conv = layer.weight.shape.count == 4
      let key = prefix + name(path).replacingOccurrences(of: ".", with: "_")
      let s = seed &+ UInt64(2 * i)
      out[key + ".lora_down.weight"] = Tensor.random(
        conv ? [rank] + layer.weight.shape.dropFirst() : [rank, layer.columns], seed: s,
        scale: 1 / Float(layer.columns).squareRoot()
      ).converted(to: .float16)
      out[key + ".lora_up.weight"] = Tensor.random(
        conv ? [layer.rows, rank, 1, 1] : [layer.rows, rank], seed: s + 1, scale: 0.1 / Float(rank).squareRoot()
      ).converted(to: .float16)
      out[key + ".alpha"] = alpha
    }
    return out
  }

  /// The SD1.5 LoRA for the UNet and text-encoder tables of `targets`.
  static func sd15(_ targets: [LoRAComponent: LoRATargetTable]) throws -> [String: Tensor] {
    let unet = try tensors(targets[.unet]!, prefix: "lora_unet_", layers: unetLayers, rank: sd15Rank, seed: 41)
    let text = try tensors(
      targets[.textEncoder]!, prefix: "lora_te_", layers: textLayers, rank: sd15Rank, seed: 43, name: { "text_model." + $0 })
    return unet.merging(text) { a, _ in a }
  }

  /// The SDXL UNet LoRA, its layers named by their SGM/LDM module paths
  /// (`input_blocks.4.1.transformer_blocks.0.attn1.to_q`) as kohya's sd-scripts write them.
  static func sdxl(_ table: LoRATargetTable, config: UNet2DConditionConfig) throws -> [String: Tensor] {
    let rows = LDMKeyTable.unetRows(config)
    return try tensors(table, prefix: "lora_unet_", layers: unetLayers, rank: sdxlRank, seed: 45) { path in
      let row = rows.filter { path.hasPrefix($0.diffusers + ".") }.max { $0.diffusers.count < $1.diffusers.count }
      return row.map { $0.ldm + path.dropFirst($0.diffusers.count) } ?? path
    }
  }

  static func megabytes(_ tensors: [String: Tensor]) -> Double { Double(tensors.values.reduce(0) { $0 + $1.byteCount }) / 1e6 }
}

extension ModelBench {
  func runLoRA(_ name: String) throws -> Result {
    switch name {
    case "lora-overhead":
      return try loraOverhead()
    case "lora-fuse-sd15":
      let (_, targets, tableSeconds) = try sd15LoRATargets()
      return try fuseFromFile(try writeLoRA(try BenchLoRA.sd15(targets)), into: targets, tableSeconds: tableSeconds)
    case "lora-fuse-sdxl":
      let model = try sdxlUNet()
      var targets: [LoRAComponent: LoRATargetTable] = [:]
      let tableSeconds = Bench.seconds {
        targets[.unet] = LoRATargetTable(component: .unet, model: model, unetConfig: model.config)
      }
      let file = try writeLoRA(try BenchLoRA.sdxl(targets[.unet]!, config: model.config))
      return try fuseFromFile(file, into: targets, tableSeconds: tableSeconds)
    default:
      throw CLIError.invalid("--cases", "unknown case \(name)")
    }
  }

  /// The SD1.5 UNet and text encoder (random weights, memory-mapped) and their LoRA tables, with
  /// the time building the tables took.
  func sd15LoRATargets() throws -> (UNet2DConditionModel, [LoRAComponent: LoRATargetTable], Double) {
    let model = try unet()
    let text = try textEncoder()
    var targets: [LoRAComponent: LoRATargetTable] = [:]
    let seconds = Bench.seconds {
      targets[.unet] = LoRATargetTable(component: .unet, model: model, unetConfig: model.config)
      targets[.textEncoder] = LoRATargetTable(component: .textEncoder, model: text)
    }
    return (model, targets, seconds)
  }

  /// One SD1.5 UNet step (64×64 latents, CFG batch 2) timed alternately without and with the
  /// rank-128 LoRA fused (`LoRAFusion.apply([lora])` / `apply([])`; after every switch one call
  /// outside the medians packs the changed layers again). Reports the fused median and notes the
  /// unfused one (`base_s`), the overhead in percent (≈ 0 expected: the fused weights have the
  /// loaded ones' shapes), the median time of one `apply` (`fuse_s`), what the first step after
  /// fusing costs on top (`repack_s`) and the LoRA's size. Swift only (diffusers' fused step is its
  /// plain step).
  func loraOverhead() throws -> Result {
    let (model, targets, _) = try sd15LoRATargets()
    let tensors = try BenchLoRA.sd15(targets)
    let lora = WeightedLoRA(try LoRAFile(archive: TensorDictionary(tensors, name: "random LoRA"), path: "random-rank128-lora"))
    let conditioning = try model.makeConditioning(encoderHiddenStates: Tensor.random([2, 77, 768], seed: 7))
    let sample = Tensor.random([2, 64, 64, 4], seed: 10)
    let step: () throws -> Void = { _ = try model(sample, timestep: 500, conditioning: conditioning) }
    try step()
    var (base, fused, fuse, firstFused) = ([Double](), [Double](), [Double](), [Double]())
    for _ in 0..<max(3, repeats) {
      base.append(try Bench.seconds(step))
      fuse.append(try Bench.seconds { try LoRAFusion.apply([lora], to: targets) })
      firstFused.append(try Bench.seconds(step))
      fused.append(try Bench.seconds(step))
      try LoRAFusion.apply([], to: targets)
      try step()
    }
    let (b, f) = (Bench.median(of: base), Bench.median(of: fused))
    return Result(
      seconds: f, flops: 0,
      notes: [
        ("base_s", b), ("overhead_percent", 100 * (f - b) / b), ("fuse_s", Bench.median(of: fuse)),
        ("repack_s", Bench.median(of: firstFused) - f), ("lora_mb", BenchLoRA.megabytes(tensors)),
      ])
  }

  /// Writes `tensors` to a temporary LoRA file: its path, size and number of layers.
  func writeLoRA(_ tensors: [String: Tensor]) throws -> (path: String, megabytes: Double, layers: Int) {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ipadapter-bench-lora-\(getpid()).safetensors").path
    try SafeTensorsWriter.write(tensors, to: path)
    return (path, BenchLoRA.megabytes(tensors), tensors.count / 3)
  }

  /// Times reading the LoRA `file` and fusing it into `targets` (`LoRAFile(path:)` +
  /// `LoRAFusion.apply`, the weights restored with `apply([])` after each run): the median of
  /// `repeats` runs after a first one (`first_s`). The peak RSS counts from the loaded models on.
  /// `table_s` is the time building the lookup tables took (the pipeline's `applyLoRAs` builds
  /// them on every call).
  /// matches: `bench_torch.py` `lora_fuse`: diffusers 0.42.1 `load_lora_weights(file)` + `fuse_lora()`.
  func fuseFromFile(
    _ file: (path: String, megabytes: Double, layers: Int), into targets: [LoRAComponent: LoRATargetTable], tableSeconds: Double
  ) throws -> Result {
    defer { unlink(file.path) }
    Runtime.returnFreedMemory()
    Memory.resetPeak()
    var times: [Double] = []
    for _ in 0...max(1, repeats) {
      times.append(
        try Bench.seconds {
          let report = try LoRAFusion.apply([WeightedLoRA(try LoRAFile(path: file.path))], to: targets)
          guard report.totalFused == file.layers else {
            throw CLIError.invalid("--cases", "fused \(report.totalFused) of \(file.layers) LoRA layers")
          }
        })
      try LoRAFusion.apply([], to: targets)
    }
    return Result(
      seconds: Bench.median(of: Array(times.dropFirst())), flops: 0,
      notes: [("first_s", times[0]), ("table_s", tableSeconds), ("lora_mb", file.megabytes), ("layers", Double(file.layers))])
  }
}
