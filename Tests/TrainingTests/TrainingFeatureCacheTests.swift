import Autograd
import Foundation
import TensorCore
import TestSupport
import Testing
import Training
import Weights

/// `--cache-dir`: the frozen encoders' outputs per example on disk. Precomputed features condition
/// a step as the encoders do, dropped captions and image prompts included (against the official
/// script's first loss, and ≤ 1e-5 against the uncached conditioning); a cached run trains as the
/// uncached one does (the encoders then run per example instead of per batch: ≤ 1e-5 relative on
/// every parameter after 4 steps); a second run reads every entry and is bit-identical to the
/// first cached run; a folder made for other settings is refused; an unreadable entry is computed
/// again.
@Suite(.serialized) struct TrainingFeatureCacheTests {
  static func setup(_ data: URL, cache: URL?, resolution: Int = 64, projection: TrainingSetup.Projection = .linear) -> TrainingSetup {
    var setup = TrainingRunTests.setup(data, output: TrainingRunTests.output(), steps: 4)
    setup.options.resolution = resolution
    setup.projection = projection
    setup.cacheDirectory = cache
    return setup
  }

  static func cacheFolder() -> URL { FileManager.default.temporaryDirectory.appendingPathComponent("feature-cache-\(UUID().uuidString)") }

  /// The golden steps 0 and 1 of `TrainingStepTests` drop nothing, the image, the text, and both.
  @Test(arguments: TrainingStepTests.kinds)
  func precomputedFeaturesConditionAStepAsTheEncodersDo(_ kind: String) async throws {
    try await OffPool.run {
      let steps = TrainingStepTests()
      let trainer = try steps.trainer(kind)
      let batch = try steps.batch()
      let rows = try (0..<batch.count).map { i in
        try trainer.features(
          image: batch.images.slice(rows: i..<i + 1), clipPixels: batch.clipPixels.slice(rows: i..<i + 1), text: batch.texts[i])
      }
      let shapes = trainer.featureShapes(text: batch.texts[0], resolution: batch.images.shape[1])
      #expect(rows[0].latentMean.shape == shapes.latent && rows[0].text.shape == shapes.text && rows[0].image.shape == shapes.image)
      let cached = TrainingBatch(precomputed: try TrainingBatch.Precomputed(rows), texts: batch.texts)
      for step in 0..<2 {
        let r = try steps.randomness(step)
        let (a, b) = (try trainer.condition(batch, r), try trainer.condition(cached, r))
        for (name, x, y) in [
          ("noisy latents", a.noisyLatents, b.noisyLatents), ("target", a.target, b.target), ("text", a.text, b.text),
          ("image features", a.imageFeatures, b.imageFeatures),
        ] {
          #expect(x.shape == y.shape && Compare.relativeError(y, x) <= 1e-5, "\(kind) step \(step) \(name)")
        }
      }
      let tape = Tape()
      let loss = try trainer.loss(try trainer.condition(cached, try steps.randomness(0)), timesteps: try steps.randomness(0).timesteps, on: tape)
      let expected = try steps.tensor("\(kind).losses").scalars()[0]
      #expect(abs(loss.value.scalars()[0] - expected) <= 1e-4 * abs(expected), "\(kind) loss from cached features")
    }
  }

  @Test func aCachedRunTrainsAsTheUncachedOneAndASecondRunReadsEveryEntry() async throws {
    let projection = TrainingSetup.Projection.linear
    let data = try TrainingData.make()
    let plain = try await Self.setup(data, cache: nil, projection: projection).makeRun()
    try await plain.runDetached()
    let folder = Self.cacheFolder()
    let first = try await Self.setup(data, cache: folder, projection: projection).makeRun()
    try await first.runDetached()
    let cache = try #require(first.featureCache)
    #expect(cache.misses == 4 && cache.hits == 8 - 4, "hits \(cache.hits), misses \(cache.misses)")
    for ((key, a), (_, b)) in zip(plain.trainer.parameters, first.trainer.parameters) {
      let error = Compare.relativeError(b.value, a.value)
      #expect(error <= 1e-5, "\(key): relative error \(error) between the cached and the uncached run")
    }
    let second = try await Self.setup(data, cache: folder, projection: projection).makeRun()
    try await second.runDetached()
    #expect(second.featureCache?.hits == 8 && second.featureCache?.misses == 0)
    for ((key, a), (_, b)) in zip(first.trainer.parameters, second.trainer.parameters) {
      #expect(a.value.scalars() == b.value.scalars(), "\(key) differs between two cached runs")
    }
    let entries = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".safetensors") }
    #expect(entries.count == 4)
    #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("cache.json").path))
  }

  @Test func aCacheMadeForOtherSettingsIsRefused() async throws {
    let data = try TrainingData.make()
    let folder = Self.cacheFolder()
    _ = try await Self.setup(data, cache: folder).makeRun()
    await #expect {
      _ = try await Self.setup(data, cache: folder, resolution: 32).makeRun()
    } throws: { error in
      guard case TrainingError.invalidArgument(let name, let reason) = error else { return false }
      return name == "--cache-dir" && reason.contains(folder.path) && reason.contains("\"resolution\" : 64")
        && reason.contains("\"resolution\" : 32")
    }
    try Data("not json".utf8).write(to: folder.appendingPathComponent("cache.json"))
    await #expect {
      _ = try await Self.setup(data, cache: folder).makeRun()
    } throws: { error in
      guard case TrainingError.invalidArgument(let name, let reason) = error else { return false }
      return name == "--cache-dir" && reason.contains("not a feature cache manifest")
    }
  }

  @Test func anUnreadableEntryIsComputedAgain() async throws {
    let data = try TrainingData.make()
    let folder = Self.cacheFolder()
    let first = try await Self.setup(data, cache: folder).makeRun()
    try await first.runDetached()
    let entries = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".safetensors") }.sorted()
    try Data([1, 2, 3]).write(to: folder.appendingPathComponent(entries[0]))
    // A readable entry with the wrong shapes is not used either.
    try SafeTensorsWriter.write(
      ["latent_mean": Tensor.zeros([2]), "latent_logvar": Tensor.zeros([2]), "text": Tensor.zeros([2]), "image": Tensor.zeros([2])],
      to: folder.appendingPathComponent(entries[1]).path)
    let second = try await Self.setup(data, cache: folder).makeRun()
    try await second.runDetached()
    #expect(second.featureCache?.misses == 2 && second.featureCache?.hits == 6)
    for ((key, a), (_, b)) in zip(first.trainer.parameters, second.trainer.parameters) {
      #expect(a.value.scalars() == b.value.scalars(), "\(key) differs after recomputing entries")
    }
  }
}
