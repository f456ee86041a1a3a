import Autograd
import Foundation
import IPAdapter
import Imaging
import Models
import Pipelines
import Schedulers
import TensorCore
import Tokenizers
import Training

extension BenchModelsCommand {
  /// One optimiser step of adapter training (`tools/reference/bench_torch.py` runs the same step
  /// in PyTorch + diffusers).
  static let trainingCases = ["train-step-512", "train-step-512-checkpointing"]
}

extension ModelBench {
  /// One training step of a new SD1.5 Plus adapter (Resampler, 16 queries) at 512², batch 1, as
  /// `tutorial_train_plus.py` takes it: VAE encode and posterior sample, text encoder, ViT-H
  /// `hidden_states[-2]`, the UNet forward and backward with the decoupled image branch, AdamW.
  /// Real-size models with random weights; the frozen layers' forward passes run in `precision`.
  /// `checkpointing`: every ResNet and transformer recomputed in the backward pass (torch:
  /// `unet.enable_gradient_checkpointing()`).
  func trainStep(checkpointing: Bool = false) throws -> Result {
    let unetModel = try unet()
    let pipeline = try StableDiffusionPipeline(
      folder: BundledConfigs.stableDiffusion15, tokenizer: try CLIPTokenizer.bundledSD15(), textEncoder: try textEncoder(),
      unet: unetModel, vae: try vae(),
      schedulerConfig: try SchedulerConfig(
        contentsOf: BundledConfigs.stableDiffusion15.appendingPathComponent("scheduler/scheduler_config.json")),
      precision: precision)
    let models = try FrozenTrainingModels(pipeline: pipeline, imageEncoder: try imageEncoder())
    let variant = IPAdapterVariant.plus(
      Resampler.Shape(dim: 768, depth: 4, heads: 12, queries: 16, embeddingDim: 1280, outputDim: 768))
    let trainer = try AdapterTrainer(
      models: models, variant: variant, imageProj: try AdapterInitialization.projectionState(variant, seed: 5),
      ipAdapter: AdapterInitialization.decoupledAttentionState(copying: unetModel))
    trainer.unet.gradientCheckpointing = checkpointing
    let batch = TrainingBatch(
      images: Tensor.random([1, 512, 512, 3], seed: 13), clipPixels: Tensor.random([1, 224, 224, 3], seed: 14),
      texts: ["a photo of a cat"])
    let randomness = TrainingRandomness(seed: 1)
    if ProcessInfo.processInfo.environment["IPADAPTER_BENCH_PHASES"] != nil {
      // Where a step's time goes (printed to standard error).
      for i in 0..<2 {
        let r = randomness.draws(micro: 100 + i, batchSize: 1, latentShape: [64, 64, 4], timesteps: 1000)
        var c: AdapterTrainer.Conditioned?
        let tv = try Bench.seconds { _ = try models.vae.encode(batch.images) }
        let tt = try Bench.seconds { _ = try models.textEncoder([models.tokenizer("a photo of a cat").ids]) }
        let ti = try Bench.seconds { _ = try models.imageEncoder(batch.clipPixels, output: .penultimateHiddenState) }
        FileHandle.standardError.write(Data("condition parts: vae encode \(tv) s, text \(tt) s, image \(ti) s\n".utf8))
        let tc = try Bench.seconds { c = try trainer.condition(batch, r) }
        let tape = Tape()
        tape.startProfiling()
        var loss: Variable?
        let tf = try Bench.seconds { loss = try trainer.loss(c!, timesteps: r.timesteps, on: tape) }
        let tb = try Bench.seconds { try tape.backward(loss!) }
        let to = try Bench.seconds { try trainer.applyUpdate() }
        FileHandle.standardError.write(Data(
          "phases: condition \(tc) s, forward \(tf) s, backward \(tb) s, update \(to) s; rss \(Memory.currentRSS())\n".utf8))
        // Per tape operation (forward: the time since the previous operation was recorded).
        for (name, t) in (tape.profile ?? [:]).sorted(by: { $0.value.forwardSeconds + $0.value.backwardSeconds > $1.value.forwardSeconds + $1.value.backwardSeconds }).prefix(14) {
          let line = "  \(name): \(t.count)×, forward \(String(format: "%.2f", t.forwardSeconds)) s, backward \(String(format: "%.2f", t.backwardSeconds)) s\n"
          FileHandle.standardError.write(Data(line.utf8))
        }
      }
    }
    var step = 0
    let (t, f) = try time {
      let r = randomness.draws(micro: step, batchSize: 1, latentShape: [64, 64, 4], timesteps: 1000)
      step += 1
      _ = try trainer.step(batch, r)
    }
    return Result(seconds: t, flops: f)
  }
}
