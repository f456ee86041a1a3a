import Autograd
import Foundation
import IPAdapter
import Imaging
import Models
import Pipelines
import TensorCore
import TestSupport
import Testing
import Training
import Weights

/// SDXL adapter training against IP-Adapter's `tutorial_train_sdxl.py` run with the official
/// modules on the tiny SDXL and its image encoder (tools/reference/gen_training.py `step-sdxl`):
/// both text encoders' `hidden_states[-2]` concatenated, `text_encoder_2`'s pooled output and
/// `add_time_ids` as `added_cond_kwargs`, "" for both tokenizers where the text is dropped, zero
/// image embeds where the image is; the same images, noises, timesteps and dropout decisions
/// (every combination occurs). Checked as the SD1.5 steps: the first prediction and loss, every
/// gradient (≤ 1e-4 relative), then 20 AdamW steps (lr 1e-3): every loss and final parameter
/// ≤ 1e-4. And the script's data transform (`MyDataset`: resize, crop at Δ // 2) with its time ids.
@Suite(.serialized) struct SDXLTrainingStepTests {
  static let golden = StepGolden(
    file: try! SafeTensorsFile(path: Fixtures.url("training/step_sdxl.safetensors").path),
    pipeline: try! StableDiffusionPipeline(folder: Fixtures.url("tiny-sdxl")),
    encoder: try! ImagePromptEncoder(folder: Fixtures.url("tiny-ip-adapter/sdxl_models/image_encoder")))
  static var pipeline: StableDiffusionPipeline { golden.pipeline }
  static var texts: [String] { golden.texts }

  func tensor(_ key: String) throws -> Tensor { try Self.golden.tensor(key) }
  func randomness(_ step: Int) throws -> StepRandomness { try Self.golden.randomness(step) }

  func trainer() throws -> AdapterTrainer {
    let trainer = try Self.golden.trainer("linear")
    #expect(trainer.models.isSDXL)
    return trainer
  }

  func batch() throws -> TrainingBatch {
    let ids = try tensor("time_ids").scalars()
    return TrainingBatch(
      images: try tensor("images"), clipPixels: try tensor("clip_pixels"), texts: Self.texts,
      timeIds: [Array(ids[0..<6]), Array(ids[6..<12])])
  }

  @Test func oneStepsPredictionLossAndGradientsMatchTheOfficialScript() async throws {
    try await OffPool.run {
      let trainer = try trainer()
      let r = try randomness(0)
      let conditioned = try trainer.condition(try batch(), r)
      let textTime = try #require(conditioned.textTime)
      #expect(textTime.timeIds == [[96, 64, 16, 0, 64, 64], [64, 100, 0, 18, 64, 64]])
      let tape = Tape()
      let loss = try trainer.loss(conditioned, timesteps: r.timesteps, on: tape)
      let expected = try tensor("linear.losses").scalars()[0]
      let value = loss.value.scalars()[0]
      #expect(abs(value - expected) <= 1e-4 * abs(expected), "loss \(value) vs \(expected)")
      try tape.backward(loss)
      for (key, p) in trainer.parameters {
        let error = Compare.relativeError(try #require(p.grad, "\(key) has no gradient"), try tensor("linear.grad0.\(key)"))
        #expect(error <= 1e-4, "\(key): gradient relative error \(error)")
      }
    }
  }

  @Test func twentyAdamWStepsStayWithTheOfficialScript() async throws {
    try await OffPool.run {
      let trainer = try trainer()
      let losses = try tensor("linear.losses").scalars()
      for step in 0..<20 {
        let loss = try trainer.step(try batch(), try randomness(step))
        #expect(abs(loss - losses[step]) <= 1e-4 * abs(losses[step]), "step \(step): loss \(loss) vs \(losses[step])")
      }
      for (key, p) in trainer.parameters {
        let error = Compare.relativeError(p.value, try tensor("linear.final.\(key)"))
        #expect(error <= 1e-4, "\(key) after 20 steps: relative error \(error)")
      }
    }
  }

  /// `MyDataset` of `tutorial_train_sdxl.py`: torchvision `Resize(r)`, then the crop at
  /// `(Δh // 2, Δw // 2)` (floor, where `CenterCrop` rounds) — identical values — and
  /// `add_time_ids` = original (h, w), crop (top, left), (r, r).
  @Test(arguments: [("wide", 16), ("tall", 16), ("gray", 40), ("wide", 23), ("tall", 7)])
  func sdxlTargetTransformMatchesTheScript(_ name: String, _ r: Int) throws {
    let image = try Image(contentsOfFile: Fixtures.url("training/images/\(name).png").path).convertedToRGB()
    let (pixels, ids) = try TrainingDataset.targetPixelsSDXL(image, resolution: r)
    let expected = try tensor("sdxl_pixels.\(name).\(r)")
    #expect(pixels.shape == expected.shape)
    #expect(pixels.scalars() == expected.scalars(), "\(name) at \(r): pixels differ")
    #expect(ids == (try tensor("sdxl_time_ids.\(name).\(r)").scalars()))
  }

  @Test func trainingRefusesAnSDXLBatchWithoutTimeIds() throws {
    let trainer = try trainer()
    let batch = TrainingBatch(images: try tensor("images"), clipPixels: try tensor("clip_pixels"), texts: Self.texts)
    #expect(throws: AutogradError.self) { _ = try trainer.condition(batch, try randomness(0)) }
  }

  /// Precomputed features (`--cache-dir`) condition an SDXL step as the encoders do — text,
  /// pooled text and time ids, dropped captions included — and give the script's first loss.
  @Test func precomputedFeaturesConditionAnSDXLStepAsTheEncodersDo() async throws {
    try await OffPool.run {
      let trainer = try trainer()
      let batch = try batch()
      let rows = try (0..<batch.count).map { i in
        try trainer.features(
          image: batch.images.slice(rows: i..<i + 1), clipPixels: batch.clipPixels.slice(rows: i..<i + 1), text: batch.texts[i],
          timeIds: batch.timeIds![i])
      }
      let shapes = trainer.featureShapes(text: batch.texts[0], resolution: batch.images.shape[1])
      #expect(rows[0].text.shape == shapes.text && rows[0].pooled?.shape == shapes.pooled && shapes.pooled == [14])
      let cached = TrainingBatch(precomputed: try TrainingBatch.Precomputed(rows), texts: batch.texts, timeIds: batch.timeIds)
      for step in 0..<2 {
        let r = try randomness(step)
        let (a, b) = (try trainer.condition(batch, r), try trainer.condition(cached, r))
        let (pa, pb) = (try #require(a.textTime), try #require(b.textTime))
        for (name, x, y) in [("text", a.text, b.text), ("pooled", pa.textEmbeds, pb.textEmbeds), ("image", a.imageFeatures, b.imageFeatures)] {
          #expect(x.shape == y.shape && Compare.relativeError(y, x) <= 1e-5, "step \(step) \(name)")
        }
        #expect(pa.timeIds == pb.timeIds)
      }
      let r = try randomness(0)
      let tape = Tape()
      let loss = try trainer.loss(try trainer.condition(cached, r), timesteps: r.timesteps, on: tape)
      let expected = try tensor("linear.losses").scalars()[0]
      #expect(abs(loss.value.scalars()[0] - expected) <= 1e-4 * abs(expected), "loss from cached features")
    }
  }

  /// `ipadapter train` on an SDXL base model: a run with `--cache-dir` trains as the uncached one
  /// (≤ 1e-5 per parameter after 4 steps), and its checkpoint loads and generates with the SDXL
  /// pipeline.
  @Test func anSDXLRunCachesLikeTheUncachedOneAndItsAdapterGenerates() async throws {
    let data = try TrainingData.make()
    func setup(_ cache: URL?) -> TrainingSetup {
      var setup = TrainingFeatureCacheTests.setup(data, cache: cache)
      setup.model = .diffusersFolder(Fixtures.url("tiny-sdxl"))
      setup.imageEncoder = Fixtures.url("tiny-ip-adapter/sdxl_models/image_encoder")
      return setup
    }
    let plain = try await setup(nil).makeRun()
    let final = try await plain.runDetached()
    let cachedRun = try await setup(TrainingFeatureCacheTests.cacheFolder()).makeRun()
    try await cachedRun.runDetached()
    #expect(cachedRun.featureCache?.misses == 4)
    for ((key, a), (_, b)) in zip(plain.trainer.parameters, cachedRun.trainer.parameters) {
      let error = Compare.relativeError(b.value, a.value)
      #expect(error <= 1e-5, "\(key): relative error \(error) between the cached and the uncached run")
    }
    var parameters = GenerationParameters(prompt: "a red square")
    (parameters.width, parameters.height, parameters.steps, parameters.seed) = (64, 64, 2, 1)
    var request = GenerationRequest(parameters: parameters)
    var spec = ImagePromptSpec(adapter: .local(final.path), images: [try Image(contentsOfFile: data.appendingPathComponent("0.png").path)])
    spec.imageEncoder = .local(Fixtures.url("tiny-ip-adapter/sdxl_models/image_encoder").path)
    request.imagePrompts = [spec]
    let result = try await Self.pipeline.generate(request)
    #expect(result.image.width == 64 && result.image.height == 64)
  }
}
