import ArgumentParser
import Autograd
import Foundation
import Pipelines
import TensorCore
import Training

/// `ipadapter train`: trains an IP-Adapter on a data set (see docs/training.md).
struct TrainCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Train an IP-Adapter (the image projection and to_k_ip/to_v_ip) on your images.",
    discussion: """
      The data is IP-Adapter's format: a JSON list of {"image_file": …, "text": …} objects, image paths \
      relative to --image-root. Writes checkpoint-<step>/ folders every --save-steps, loss.jsonl (one line \
      per step) and, at the end, ip_adapter.safetensors to --output; use it with 'generate --ip-adapter'. \
      '--resume latest' (or a checkpoint folder) continues a run exactly where it stopped. \
      '--plot' draws loss.jsonl of --output as text and exits.
      """)

  @Option(help: "Base model: a diffusers folder, a hub repository or a single-file checkpoint (SD 1.x/2.x or SDXL base).")
  var model: String?

  @Option(help: "The CLIP image encoder folder (config.json, model.safetensors).")
  var imageEncoder: String?

  @Option(help: "The training data: a JSON list of {\"image_file\": …, \"text\": …}.")
  var data: String?

  @Option(help: "The folder the image_file paths are relative to.")
  var imageRoot: String?

  @Option(help: "Projection of a new adapter: linear (ip-adapter), plus (Resampler), full-face, qwen (Qwen-VL resampler).")
  var projection: String = "linear"

  @Option(help: "Query grid side of a new qwen projection (grid² tokens).")
  var gridSize = 4

  @Option(help: "Tokens of a new adapter (default 4 for linear, 16 for plus).")
  var numTokens: Int?

  @Option(help: "Fine-tune this adapter file instead of starting a new one.")
  var initAdapter: String?

  @Option(help: "Training image side (resize, centre crop).")
  var resolution = 512

  @Option(help: "Examples per micro-batch.")
  var batchSize = 1

  @Option(help: "Micro-batches per optimiser step.")
  var gradientAccumulationSteps = 1

  @Option(help: "Optimiser steps to train to.")
  var steps = 1000

  @Option(help: "Save a checkpoint every N steps (default: only at the end).")
  var saveSteps: Int?

  @Option(help: "AdamW learning rate.")
  var learningRate = 1e-4

  @Option(help: "AdamW weight decay.")
  var weightDecay = 1e-2

  @Option(help: "Learning-rate schedule as diffusers' get_scheduler: constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial (default constant, or constant_with_warmup with --lr-warmup-steps).")
  var lrScheduler: String?

  @Option(help: "Linear learning-rate warm-up over this many steps (default none).")
  var lrWarmupSteps = 0

  @Option(help: "Clip the gradient norm to this value (default no clipping).")
  var maxGradNorm: Double?

  @Option(help: "Noise offset (0.05–0.1 helps very dark or bright images).")
  var noiseOffset: Float = 0

  @Option(help: "Seed of every random draw (data order, dropout, noise, timesteps).")
  var seed: UInt64 = 42

  @Option(help: "Arithmetic of the frozen model's forward passes (bf16: master weights, gradients and AdamW stay float32).")
  var precision: ComputePrecision = .float32

  @Flag(help: "Recompute each UNet block's activations in the backward pass (less memory, more time).")
  var gradientCheckpointing = false

  @Flag(help: "Skip examples whose image cannot be read (reported) instead of stopping.")
  var skipBadImages = false

  @Option(help: "Keep the VAE latents, text and image features per example in this folder: after the first epoch a step costs only the UNet.")
  var cacheDir: String?

  @Option(help: "Continue from a checkpoint folder, or 'latest' in --output.")
  var resume: String?

  @Option(help: "Output folder.")
  var output: String

  @Flag(help: "Draw the loss log of --output as text and exit.")
  var plot = false

  @Flag(help: "No progress line.")
  var quiet = false

  func run() async throws {
    do {
      if plot {
        print(try LossPlot.render(logFile: URL(fileURLWithPath: output).appendingPathComponent("loss.jsonl")))
        return
      }
      let run = try await makeRun()
      var resumeFolder: URL?
      if let resume {
        if resume == "latest" {
          resumeFolder = run.latestCheckpoint()
          if resumeFolder == nil { FileHandle.standardError.write(Data("warning: no checkpoint in \(output); starting anew\n".utf8)) }
        } else {
          resumeFolder = URL(fileURLWithPath: resume)
        }
      }
      let bar = quiet ? nil : TrainingProgressLine()
      let final = try await run.runDetached(resume: resumeFolder) { bar?.update($0) }
      bar?.finish()
      print(final.path)
    } catch let error as ExitCode {
      throw error
    } catch {
      FileHandle.standardError.write(Data("error: \(CLIError.oneLine(error))\n".utf8))
      throw ExitCode(1)
    }
  }

  func makeRun() async throws -> TrainingRun {
    func required(_ value: String?, _ flag: String) throws -> String {
      guard let value else { throw CLIError.invalid(flag, "required for training") }
      return value
    }
    let (modelPath, encoderPath) = (try required(model, "--model"), try required(imageEncoder, "--image-encoder"))
    let (dataPath, rootPath) = (try required(data, "--data"), try required(imageRoot, "--image-root"))
    guard let kind = TrainingSetup.Projection(rawValue: projection) else {
      throw CLIError.invalid("--projection", "'\(projection)' is not one of linear, plus, full-face, qwen")
    }
    for (flag, path) in [("--data", dataPath), ("--image-root", rootPath), ("--image-encoder", encoderPath)]
    where !FileManager.default.fileExists(atPath: path) {
      throw CLIError.invalid(flag, "not found: \(path)")
    }
    for (flag, value) in [("--learning-rate", learningRate), ("--weight-decay", weightDecay)] where !(value.isFinite && value >= 0) {
      throw CLIError.invalid(flag, "\(value) must be a finite number ≥ 0")
    }
    if let maxGradNorm, !(maxGradNorm.isFinite && maxGradNorm > 0) {
      throw CLIError.invalid("--max-grad-norm", "\(maxGradNorm) must be a positive number")
    }
    guard lrWarmupSteps >= 0 else { throw CLIError.invalid("--lr-warmup-steps", "\(lrWarmupSteps) must be ≥ 0") }
    var setup = TrainingSetup(
      model: try ModelSource.parse(modelPath), imageEncoder: URL(fileURLWithPath: encoderPath), data: URL(fileURLWithPath: dataPath),
      imageRoot: URL(fileURLWithPath: rootPath), output: URL(fileURLWithPath: output))
    setup.projection = kind
    setup.numTokens = numTokens
    setup.gridSize = gridSize
    setup.initialAdapter = initAdapter
    setup.learningRate = learningRate
    setup.weightDecay = weightDecay
    var options = TrainingOptions()
    options.resolution = resolution
    options.batchSize = batchSize
    options.gradientAccumulationSteps = gradientAccumulationSteps
    options.steps = steps
    options.saveSteps = saveSteps
    do {
      let name = lrScheduler ?? (lrWarmupSteps > 0 ? "constant_with_warmup" : "constant")
      options.learningRateSchedule = try LearningRateSchedule(
        name: name, warmupSteps: lrWarmupSteps, totalSteps: steps, learningRate: learningRate)
    } catch let AutogradError.invalidArgument(reason) {
      throw CLIError.invalid("--lr-scheduler", reason)
    }
    options.maxGradNorm = maxGradNorm
    options.noiseOffset = noiseOffset
    options.seed = seed
    options.skipBadImages = skipBadImages
    options.gradientCheckpointing = gradientCheckpointing
    setup.options = options
    setup.cacheDirectory = cacheDir.map { URL(fileURLWithPath: $0, isDirectory: true) }
    setup.load.precision = precision
    return try await setup.makeRun()
  }
}

/// A one-line training progress display on standard error: step, loss (moving average),
/// steps per second and time left; warnings and saved checkpoints on their own lines.
/// `@unchecked Sendable`: it holds no mutable state (it writes to standard error).
final class TrainingProgressLine: @unchecked Sendable {
  private let isTerminal = isatty(2) != 0

  func update(_ p: TrainingProgress) {
    for w in p.warnings { emit("warning: \(w)", own: true) }
    let line = String(
      format: "step %d/%d  loss %.4f (avg %.4f)  %.2f steps/s  ETA %@", p.step, p.totalSteps, p.loss, p.averageLoss,
      p.stepsPerSecond, ProgressBar.clock(p.remainingSeconds))
    if let saved = p.savedCheckpoint { emit("saved \(saved.path)", own: true) }
    if isTerminal {
      FileHandle.standardError.write(Data("\r\u{1B}[2K\(line)".utf8))
    } else if p.step == p.totalSteps || p.step == 1 || p.step % 10 == 0 {
      FileHandle.standardError.write(Data("\(line)\n".utf8))
    }
  }

  private func emit(_ text: String, own: Bool) {
    FileHandle.standardError.write(Data(((isTerminal ? "\r\u{1B}[2K" : "") + text + "\n").utf8))
  }

  func finish() {
    if isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
  }
}
