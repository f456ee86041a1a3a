import Foundation
import IPAdapter
import Imaging
import Models
import Schedulers
import TorchRandom
import TensorCore
import Weights

/// `config`: every config JSON decoder, followed by what the engine does with the config before
/// any weight is read. The first byte chooses the decoder (byte % 7); the rest is the JSON text.
///
/// 0 `unet/config.json`: `ConfigFile.decode` → `validate` → `UNet2DConditionModel(config:)`
/// 1 `vae/config.json`: → `AutoencoderKL(config:)`
/// 2 ControlNet `config.json`: → `ControlNetModel(config:)`
/// 3 `text_encoder/config.json`: → `CLIPTextModel(config:)`
/// 4 `image_encoder/config.json`: → `CLIPVisionModel(config:)`
/// 5 `scheduler/scheduler_config.json`: `SchedulerConfig(jsonData:)` → every scheduler kind and the
///   config's own class (`makeScheduler`, i.e. `set_timesteps`) for a few step counts, then
///   `scaleModelInput`, `step` and `addNoise` on a tiny latent at the first and last index
/// 6 `feature_extractor/preprocessor_config.json`: `CLIPImageProcessor` → `preprocess` of a
///   small image
/// 7 a sharded checkpoint's `*.safetensors.index.json`: `ModelLoader.openSharded` in a scratch
///   folder holding three one-tensor shards (two distinct keys, one repeated), then every tensor
/// 8 `--ip-block-scales` JSON: `IPAdapterBlockScales(json:)` → `scales(for:)` the SD1.5 layers
/// Models are built from the config only: parameters are shapes until weights are loaded.
enum ConfigTarget {
  static let decoders = 9
  static let shardNames = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "extra.safetensors"]
  nonisolated(unsafe) static var shardFolder: String? = nil
  static let sd15Slots = IPAdapterLayerTable.slots(for: UNet2DConditionConfig())

  static func run(_ input: [UInt8]) throws {
    guard let selector = input.first else { return }
    let json = Data(input.dropFirst())
    switch Int(selector) % decoders {
    case 0:
      let config = try ConfigFile.decode(UNet2DConditionConfig.self, from: json, path: "unet/config.json")
      try config.validate(path: "unet/config.json")
      let model = try UNet2DConditionModel(config: config)
      _ = model.parameterCount
    case 1:
      let config = try ConfigFile.decode(AutoencoderKLConfig.self, from: json, path: "vae/config.json")
      try config.validate(path: "vae/config.json")
      let model = try AutoencoderKL(config: config)
      _ = model.parameterCount
    case 2:
      let config = try ConfigFile.decode(ControlNetConfig.self, from: json, path: "controlnet/config.json")
      try config.validate(path: "controlnet/config.json")
      let model = try ControlNetModel(config: config)
      _ = model.parameterCount
    case 3:
      let config = try ConfigFile.decode(CLIPTextConfig.self, from: json, path: "text_encoder/config.json")
      _ = try config.validate(path: "text_encoder/config.json")
      let model = try CLIPTextModel(config: config)
      _ = model.parameterCount
    case 4:
      let config = try ConfigFile.decode(CLIPVisionConfig.self, from: json, path: "image_encoder/config.json")
      _ = try config.validate(path: "image_encoder/config.json")
      let model = try CLIPVisionModel(config: config)
      _ = model.parameterCount
    case 5:
      try schedulers(SchedulerConfig(jsonData: json))
    case 7:
      _ = shards()
      let index = Scratch.write(json, name: "shards/model.safetensors.index.json")
      let archive = try ModelLoader.openSharded(index: URL(fileURLWithPath: index))
      for key in archive.keys {
        _ = archive.info(key)
        if let tensor = try? archive.tensor(key) { TensorReading.touch(tensor) }
      }
    case 8:
      let scales = try IPAdapterBlockScales(json: String(decoding: json, as: UTF8.self))
      _ = try scales.scales(for: sd15Slots)
    default:
      let processor = try JSONDecoder().decode(CLIPImageProcessor.self, from: json)
      let image = try Image(
        width: 7, height: 5, format: .rgb, pixels: (0..<(7 * 5 * 3)).map { UInt8(truncatingIfNeeded: $0 * 37) })
      let pixels = try processor.preprocess(image)
      _ = pixels.count
    }
  }

  /// The scratch folder with the shards (written once): `a` [2] F32, `b` [1] F16, and `a` again.
  static func shards() -> String {
    if let shardFolder { return shardFolder }
    let folder = Scratch.makeFolder("shards")
    for (name, (key, dtype, bytes)) in zip(shardNames, [("a", "F32", 8), ("b", "F16", 2), ("a", "F32", 8)]) {
      Scratch.write(tinySafeTensors(key: key, dtype: dtype, byteCount: bytes), name: "shards/" + name)
    }
    shardFolder = folder
    return folder
  }

  /// A safetensors file with one tensor of `byteCount` bytes (header padded to 8 bytes).
  static func tinySafeTensors(key: String, dtype: String, byteCount: Int) -> [UInt8] {
    let elements = byteCount / (dtype == "F32" ? 4 : 2)
    var header = Array(#"{"\#(key)":{"dtype":"\#(dtype)","shape":[\#(elements)],"data_offsets":[0,\#(byteCount)]}}"#.utf8)
    while header.count % 8 != 0 { header.append(0x20) }
    var out = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
    out += header
    out += (0..<byteCount).map { UInt8(truncatingIfNeeded: $0 &* 61 &+ 7) }
    return out
  }

  static func schedulers(_ config: SchedulerConfig) throws {
    for steps in [1, 2, 3, 10] {
      var built: [any Scheduler] = []
      for kind in SchedulerKind.allCases {
        if let s = try? makeScheduler(kind: kind, config: config, steps: steps) { built.append(s) }
      }
      if config.className != nil, let s = try? makeScheduler(config: config, steps: steps) { built.append(s) }
      for var scheduler in built {
        exercise(&scheduler)
      }
    }
  }

  /// One step at the first and last index, as the denoising loop calls them.
  static func exercise(_ scheduler: inout any Scheduler) {
    let count = scheduler.timesteps.count
    _ = scheduler.initNoiseSigma
    _ = try? scheduler.startIndex(strength: 0.5)
    guard count > 0 else { return }
    var generator = TorchGenerator(seed: 0)
    let shape = [1, 4, 2, 2]
    let sample = generator.randn(shape)
    let noise = generator.randn(shape)
    for index in Set([0, count - 1]).sorted() {
      _ = try? scheduler.scaleModelInput(sample, stepIndex: index)
      _ = try? scheduler.addNoise(original: sample, noise: noise, stepIndex: index)
    }
    // Steps must be consecutive: run the first two (multistep solvers keep state).
    for index in 0..<min(count, 2) {
      _ = try? scheduler.step(modelOutput: noise, stepIndex: index, sample: sample, generator: &generator)
    }
  }
}
