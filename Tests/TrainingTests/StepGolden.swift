import Foundation
import IPAdapter
import Pipelines
import TensorCore
import Training
import Weights

/// A training-step golden of tools/reference/gen_training.py (`step`, `step-sdxl`) and the frozen
/// models it was made with: the adapters as the official scripts start them, the fixed images,
/// captions and per-step draws.
struct StepGolden {
  let file: SafeTensorsFile
  let pipeline: StableDiffusionPipeline
  let encoder: ImagePromptEncoder
  let texts = ["a red square on grey", "two blue circles"]

  func tensor(_ key: String) throws -> Tensor { try file.tensor(key).asFloat32() }

  /// The `kind` adapter as the script starts it: `to_k_ip`/`to_v_ip` copies of `to_k`/`to_v`, the
  /// projection's initial weights from the golden.
  func trainer(_ kind: String) throws -> AdapterTrainer {
    let prefix = "\(kind).init.image_proj."
    var imageProj: [String: Tensor] = [:]
    for key in file.keys where key.hasPrefix(prefix) { imageProj[String(key.dropFirst(prefix.count))] = try tensor(key) }
    let variant = try IPAdapterVariant.detect(TensorDictionary(imageProj), path: file.path)
    let models = try FrozenTrainingModels(pipeline: pipeline, imageEncoder: encoder.model)
    return try AdapterTrainer(
      models: models, variant: variant, imageProj: imageProj,
      ipAdapter: AdapterInitialization.decoupledAttentionState(copying: pipeline.unet), learningRate: 1e-3)
  }

  /// Step `step`'s draws: VAE noise, noise, timesteps and the dropout codes (0 keep, 1 drop the
  /// image, 2 the text, 3 both).
  func randomness(_ step: Int) throws -> StepRandomness {
    let codes = try tensor("step\(step).drop").scalars().map { Int($0) }
    return StepRandomness(
      vaeNoise: try tensor("step\(step).vae_noise"), noise: try tensor("step\(step).noise"),
      timesteps: try tensor("step\(step).timesteps").scalars().map { Int($0) },
      dropText: codes.map { $0 >= 2 }, dropImage: codes.map { $0 == 1 || $0 == 3 })
  }
}
