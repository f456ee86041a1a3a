import Autograd
import Foundation
import Imaging
import TensorCore

/// The settings of a training run (`ipadapter train`), defaults as IP-Adapter's `tutorial_train.py`.
public struct TrainingOptions: Sendable {
  /// Side of the square training images (`--resolution`, 512).
  public var resolution = 512
  public var batchSize = 1
  /// Micro-batches whose gradients add up before each optimiser step.
  public var gradientAccumulationSteps = 1
  /// Optimiser steps to reach (a resumed run continues to this count).
  public var steps = 1000
  /// Save a checkpoint every this many steps (nil: only at the end).
  public var saveSteps: Int?
  public var learningRateSchedule: LearningRateSchedule = .constant
  public var maxGradNorm: Double?
  public var noiseOffset: Float = 0
  public var seed: UInt64 = 42
  /// Skip (with a warning) examples whose image cannot be read, instead of stopping.
  public var skipBadImages = false
  public var gradientCheckpointing = false

  public init() {}

  func validate() throws {
    for (name, value, minimum) in [
      ("--resolution", resolution, 8), ("--batch-size", batchSize, 1), ("--gradient-accumulation-steps", gradientAccumulationSteps, 1),
      ("--steps", steps, 1), ("--save-steps", saveSteps ?? 1, 1),
    ] where value < minimum {
      throw TrainingError.invalidArgument(name: name, reason: "\(value) must be at least \(minimum)")
    }
    guard resolution <= 4096, batchSize <= 1024, gradientAccumulationSteps <= 1 << 16 else {
      throw TrainingError.invalidArgument(
        name: "--resolution/--batch-size", reason: "resolution \(resolution) (≤ 4096), batch \(batchSize) (≤ 1024) out of range")
    }
    guard noiseOffset.isFinite, noiseOffset >= 0 else {
      throw TrainingError.invalidArgument(name: "--noise-offset", reason: "\(noiseOffset) must be ≥ 0")
    }
  }
}

/// Where a training run is, for a progress display.
public struct TrainingProgress: Sendable {
  public var step: Int
  public var totalSteps: Int
  /// This step's loss (the mean over its micro-batches) and its exponential moving average (0.98).
  public var loss: Float
  public var averageLoss: Float
  public var learningRate: Double
  public var stepsPerSecond: Double
  /// Estimated seconds to the last step.
  public var remainingSeconds: Double
  /// A checkpoint saved at this step, if any.
  public var savedCheckpoint: URL?
  /// Examples skipped so far (`skipBadImages`), with the reason.
  public var warnings: [String]
}

/// A whole training run: batches from a data set, optimiser steps, the loss log, checkpoints and
/// resumption. Every random draw is a function of the seed and the position in the run
/// (`TrainingRandomness`), so a run resumed from a checkpoint reproduces the uninterrupted run bit
/// for bit.
///
/// Files in `output`: `checkpoint-<step>/` (see `TrainingCheckpoint`), `loss.jsonl` (one
/// `{"step", "loss", "lr"}` line per step) and, at the end, `ip_adapter.safetensors` and
/// `ip_adapter.bin` (the released layouts, for `ipadapter generate --ip-adapter` and diffusers'
/// `load_ip_adapter`).
public final class TrainingRun {
  public let trainer: AdapterTrainer
  public let dataset: TrainingDataset
  public let clipProcessor: CLIPImageProcessor
  public let options: TrainingOptions
  public let output: URL
  public var randomness: TrainingRandomness
  /// The frozen features of the examples kept on disk (`--cache-dir`; nil: computed every step).
  public var featureCache: TrainingFeatureCache?
  private var badExamples: [Int: String] = [:]

  public init(
    trainer: AdapterTrainer, dataset: TrainingDataset, clipProcessor: CLIPImageProcessor, options: TrainingOptions, output: URL
  ) throws {
    try options.validate()
    self.trainer = trainer
    self.dataset = dataset
    self.clipProcessor = clipProcessor
    self.options = options
    self.output = output
    randomness = TrainingRandomness(seed: options.seed)
    trainer.learningRateSchedule = options.learningRateSchedule
    trainer.maxGradNorm = options.maxGradNorm
    trainer.noiseOffset = options.noiseOffset
    trainer.unet.gradientCheckpointing = options.gradientCheckpointing
  }

  public var settings: TrainingCheckpoint.Settings {
    TrainingCheckpoint.Settings(
      seed: options.seed, batchSize: options.batchSize, gradientAccumulationSteps: options.gradientAccumulationSteps,
      resolution: options.resolution, projection: "\(trainer.variant)")
  }

  /// The latest `checkpoint-<step>` folder in `output`, if any.
  public func latestCheckpoint() -> URL? {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: output.path)) ?? []
    let steps = names.compactMap { name -> Int? in
      guard name.hasPrefix("checkpoint-") else { return nil }
      return Int(name.dropFirst("checkpoint-".count))
    }
    return steps.max().map { output.appendingPathComponent("checkpoint-\($0)") }
  }

  /// Runs to `options.steps`, from `resume` (a checkpoint folder) if given.
  /// - Returns: the final adapter file.
  @discardableResult
  public func run(resume: URL? = nil, progress: (TrainingProgress) -> Void = { _ in }) throws -> URL {
    let fm = FileManager.default
    do { try fm.createDirectory(at: output, withIntermediateDirectories: true) } catch {
      throw TrainingError.invalidArgument(name: "--output", reason: "cannot create \(output.path): \(error)")
    }
    var logLines: [String] = []
    if let resume {
      let step = try TrainingCheckpoint.restore(trainer, settings: settings, from: resume)
      logLines = readLog().filter { line in (Self.logStep(line) ?? Int.max) <= step }
    }
    let logPath = output.appendingPathComponent("loss.jsonl")
    try writeAtomically(logLines.map { $0 + "\n" }.joined(), to: logPath)
    let log = try FileHandle(forWritingTo: logPath)
    defer { try? log.close() }
    _ = try log.seekToEnd()

    let start = Date()
    let firstStep = trainer.step
    var average: Float?
    let latentSide = options.resolution / trainer.models.vae.config.scaleFactor
    let latentShape = [latentSide, latentSide, trainer.models.vae.config.latentChannels]
    while trainer.step < options.steps {
      let step = trainer.step
      trainer.optimizer.zeroGrad()
      var losses: [Float] = []
      var warnings: [String] = []
      for micro in 0..<options.gradientAccumulationSteps {
        let index = step * options.gradientAccumulationSteps + micro
        let draws = randomness.draws(
          micro: index, batchSize: options.batchSize, latentShape: latentShape, timesteps: trainer.models.schedule.timestepCount)
        let picks = randomness.examples(micro: index, batchSize: options.batchSize, count: dataset.count)
        guard let (batch, kept) = try loadBatch(picks, warnings: &warnings) else { continue }
        let r = Self.selecting(draws, kept)
        losses.append(try trainer.accumulate(batch, r, accumulationSteps: options.gradientAccumulationSteps))
      }
      let rate = trainer.learningRate * options.learningRateSchedule.factor(step: step)
      try trainer.applyUpdate()
      let loss = losses.isEmpty ? Float.nan : losses.reduce(0, +) / Float(losses.count)
      if loss.isFinite { average = average.map { 0.98 * $0 + 0.02 * loss } ?? loss }
      try log.write(contentsOf: Data("{\"step\": \(trainer.step), \"loss\": \(loss.isFinite ? "\(loss)" : "null"), \"lr\": \(rate)}\n".utf8))
      var saved: URL?
      if let every = options.saveSteps, trainer.step % every == 0 || trainer.step == options.steps {
        saved = output.appendingPathComponent("checkpoint-\(trainer.step)")
        try TrainingCheckpoint.save(trainer, settings: settings, to: saved!)
      }
      let elapsed = Date().timeIntervalSince(start)
      let done = Double(trainer.step - firstStep)
      let perSecond = elapsed > 0 ? done / elapsed : 0
      progress(
        TrainingProgress(
          step: trainer.step, totalSteps: options.steps, loss: loss, averageLoss: average ?? .nan, learningRate: rate,
          stepsPerSecond: perSecond, remainingSeconds: perSecond > 0 ? Double(options.steps - trainer.step) / perSecond : 0,
          savedCheckpoint: saved, warnings: warnings))
    }
    let final = output.appendingPathComponent("ip_adapter.safetensors")
    let (imageProj, ipAdapter) = trainer.state()
    try AdapterCheckpoint.write(imageProj: imageProj, ipAdapter: ipAdapter, to: final.path)
    try AdapterCheckpoint.writeBin(
      imageProj: imageProj, ipAdapter: ipAdapter, to: output.appendingPathComponent("ip_adapter.bin").path)
    return final
  }

  /// The examples `picks` as a batch; unreadable ones are skipped (`skipBadImages`) or stop the run.
  func loadBatch(_ picks: [Int], warnings: inout [String]) throws -> (TrainingBatch, [Int])? {
    var targets: [Tensor] = [], clips: [Tensor] = [], texts: [String] = [], kept: [Int] = []
    var timeIds: [[Float]] = []
    var cached: [TrainingFeatureCache.Features] = []
    let sdxl = trainer.models.isSDXL
    for (position, i) in picks.enumerated() {
      if badExamples[i] != nil { continue }
      do {
        if let featureCache {
          let f = try features(of: i, in: featureCache)
          if sdxl { timeIds.append(f.timeIds?.scalars() ?? []) }
          cached.append(f)
        } else {
          let image = try dataset.image(i)
          if sdxl {
            let (pixels, ids) = try TrainingDataset.targetPixelsSDXL(image, resolution: options.resolution)
            targets.append(pixels)
            timeIds.append(ids)
          } else {
            targets.append(try TrainingDataset.targetPixels(image, resolution: options.resolution))
          }
          clips.append(try clipProcessor.preprocess(image))
        }
        texts.append(dataset.entries[i].text)
        kept.append(position)
      } catch {
        guard options.skipBadImages else {
          throw error is TrainingError ? error : TrainingError.badImage(path: dataset.imagePath(i), entry: i, reason: "\(error)")
        }
        badExamples[i] = "\(error)"
        warnings.append("skipped \(dataset.imagePath(i)): \(error)")
      }
    }
    guard !kept.isEmpty else { return nil }
    let ids = sdxl ? timeIds : nil
    if featureCache != nil {
      return (TrainingBatch(precomputed: try TrainingBatch.Precomputed(cached), texts: texts, timeIds: ids), kept)
    }
    let r = options.resolution
    let images = try Ops.concatRows(targets.map { $0.reshaped([1, r, r, 3]) })
    let clipPixels = try Ops.concatRows(clips)
    return (TrainingBatch(images: images, clipPixels: clipPixels, texts: texts, timeIds: ids), kept)
  }

  /// Example `i`'s frozen features: read from `cache`, or computed and stored there.
  func features(of i: Int, in cache: TrainingFeatureCache) throws -> TrainingFeatureCache.Features {
    let path = dataset.imagePath(i)
    let text = dataset.entries[i].text
    let bytes: Data
    do {
      let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
      guard size <= ImageLimits.default.maxInputFileBytes else {
        throw ImageIOError.unsupported(path: path, reason: "\(size) bytes is above the \(ImageLimits.default.maxInputFileBytes)-byte limit")
      }
      bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
      throw TrainingError.badImage(path: path, entry: i, reason: "\(error)")
    }
    let key = TrainingFeatureCache.key(imageBytes: bytes, text: text)
    let shapes = trainer.featureShapes(text: text, resolution: options.resolution)
    if let stored = cache.load(key, latent: shapes.latent, text: shapes.text, image: shapes.image, pooled: shapes.pooled) {
      return stored
    }
    let image = try dataset.image(i)
    let target: Tensor
    var timeIds: [Float]?
    if trainer.models.isSDXL {
      (target, timeIds) = try TrainingDataset.targetPixelsSDXL(image, resolution: options.resolution)
    } else {
      target = try TrainingDataset.targetPixels(image, resolution: options.resolution)
    }
    let computed = try trainer.features(
      image: target, clipPixels: try clipProcessor.preprocess(image), text: text, timeIds: timeIds)
    try cache.store(key, computed)
    return computed
  }

  /// The draws of the batch rows that were kept.
  static func selecting(_ r: StepRandomness, _ rows: [Int]) -> StepRandomness {
    let n = r.timesteps.count
    guard rows.count != n else { return r }
    func pick(_ t: Tensor) -> Tensor {
      let per = t.count / n
      var out = Tensor(uninitializedShape: [rows.count] + t.shape.dropFirst())
      out.withUnsafeMutableFloats { d in
        for (k, row) in rows.enumerated() { d.baseAddress!.advanced(by: k * per).update(from: t.floatPointer + row * per, count: per) }
      }
      return out
    }
    return StepRandomness(
      vaeNoise: pick(r.vaeNoise), noise: pick(r.noise), offsetNoise: r.offsetNoise.map(pick), timesteps: rows.map { r.timesteps[$0] },
      dropText: rows.map { r.dropText[$0] }, dropImage: rows.map { r.dropImage[$0] })
  }

  func readLog() -> [String] {
    guard let text = try? String(contentsOf: output.appendingPathComponent("loss.jsonl"), encoding: .utf8) else { return [] }
    return text.split(separator: "\n").map(String.init)
  }

  static func logStep(_ line: String) -> Int? {
    guard let data = line.data(using: .utf8), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
    return object["step"] as? Int
  }

  func writeAtomically(_ text: String, to url: URL) throws {
    do { try Data(text.utf8).write(to: url, options: .atomic) } catch {
      throw TrainingError.invalidArgument(name: "--output", reason: "cannot write \(url.path): \(error)")
    }
  }
}

extension TrainingRun {
  /// `run(resume:progress:)` on a thread of its own, for async callers: a run holds its thread
  /// for minutes to days, which must not be one of Swift concurrency's few cooperative threads
  /// (on a 2-core machine, two) that every other task of the process shares.
  @discardableResult
  public func runDetached(resume: URL? = nil, progress: @escaping @Sendable (TrainingProgress) -> Void = { _ in }) async throws -> URL {
    struct Unchecked: @unchecked Sendable { let run: TrainingRun }
    let box = Unchecked(run: self)
    return try await withCheckedThrowingContinuation { continuation in
      let thread = Thread {
        do { continuation.resume(returning: try box.run.run(resume: resume, progress: progress)) } catch {
          continuation.resume(throwing: error)
        }
      }
      thread.stackSize = 16 << 20
      thread.start()
    }
  }
}
