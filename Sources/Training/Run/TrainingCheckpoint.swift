import Autograd
import Foundation
import TensorCore
import Weights

/// A training run's resumable state in a folder: the adapter (`ip_adapter.safetensors` and
/// `ip_adapter.bin`, the released layouts), the optimiser's moments (`optimizer.safetensors`: `exp_avg.<key>`,
/// `exp_avg_sq.<key>`) and `training_state.json` (the step, per-parameter optimiser steps and the
/// settings a bit-identical resumption depends on). Written into `<name>.partial` and renamed into
/// place, so an interrupted save (a full disk) leaves the previous checkpoint intact.
public enum TrainingCheckpoint {
  /// What a resumed run must share with the run that saved the checkpoint.
  public struct Settings: Codable, Equatable, Sendable {
    public var seed: UInt64
    public var batchSize: Int
    public var gradientAccumulationSteps: Int
    public var resolution: Int
    public var projection: String

    public init(seed: UInt64, batchSize: Int, gradientAccumulationSteps: Int, resolution: Int, projection: String) {
      (self.seed, self.batchSize, self.gradientAccumulationSteps) = (seed, batchSize, gradientAccumulationSteps)
      (self.resolution, self.projection) = (resolution, projection)
    }

    enum CodingKeys: String, CodingKey {
      case seed, batchSize = "batch_size", gradientAccumulationSteps = "gradient_accumulation_steps", resolution, projection
    }
  }

  struct State: Codable {
    var format: Int
    var step: Int
    var settings: Settings
    var optimizerSteps: [String: Int]

    enum CodingKeys: String, CodingKey { case format, step, settings, optimizerSteps = "optimizer_steps" }
  }

  /// Saves `trainer` to `folder` (replacing an older save of the same name).
  public static func save(_ trainer: AdapterTrainer, settings: Settings, to folder: URL) throws {
    let fm = FileManager.default
    let partial = folder.appendingPathExtension("partial")
    try? fm.removeItem(at: partial)
    do {
      try fm.createDirectory(at: partial, withIntermediateDirectories: true)
      let (imageProj, ipAdapter) = trainer.state()
      try AdapterCheckpoint.write(imageProj: imageProj, ipAdapter: ipAdapter, to: partial.appendingPathComponent("ip_adapter.safetensors").path)
      try AdapterCheckpoint.writeBin(imageProj: imageProj, ipAdapter: ipAdapter, to: partial.appendingPathComponent("ip_adapter.bin").path)
      var moments: [String: Tensor] = [:]
      var steps: [String: Int] = [:]
      let optimizer = trainer.optimizer
      for (i, (key, _)) in trainer.parameters.enumerated() {
        steps[key] = optimizer.steps[i]
        if let m = optimizer.firstMoments[i], let v = optimizer.secondMoments[i] {
          moments["exp_avg." + key] = m
          moments["exp_avg_sq." + key] = v
        }
      }
      try SafeTensorsWriter.write(moments, metadata: ["format": "pt"], to: partial.appendingPathComponent("optimizer.safetensors").path)
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      let state = State(format: 1, step: trainer.step, settings: settings, optimizerSteps: steps)
      try encoder.encode(state).write(to: partial.appendingPathComponent("training_state.json"), options: .atomic)
      if fm.fileExists(atPath: folder.path) {
        let old = folder.appendingPathExtension("old")
        try? fm.removeItem(at: old)
        try fm.moveItem(at: folder, to: old)
        try fm.moveItem(at: partial, to: folder)
        try? fm.removeItem(at: old)
      } else {
        try fm.moveItem(at: partial, to: folder)
      }
    } catch {
      try? fm.removeItem(at: partial)
      throw TrainingError.badCheckpoint(path: folder.path, reason: "could not save the checkpoint: \(error)")
    }
  }

  /// Restores `trainer` from `folder`; its settings must equal `settings`.
  /// - Returns: the step the checkpoint was saved at.
  @discardableResult
  public static func restore(_ trainer: AdapterTrainer, settings: Settings, from folder: URL) throws -> Int {
    let statePath = folder.appendingPathComponent("training_state.json")
    guard let data = FileManager.default.contents(atPath: statePath.path), data.count < 1 << 24 else {
      throw TrainingError.badCheckpoint(path: statePath.path, reason: "missing or unreadable (is this a checkpoint folder?)")
    }
    let state: State
    do { state = try JSONDecoder().decode(State.self, from: data) } catch {
      throw TrainingError.badCheckpoint(path: statePath.path, reason: "not a training state: \(error)")
    }
    guard state.format == 1, state.step >= 0 else {
      throw TrainingError.badCheckpoint(path: statePath.path, reason: "format \(state.format), step \(state.step) not supported")
    }
    guard state.settings == settings else {
      throw TrainingError.badCheckpoint(
        path: statePath.path,
        reason: "saved with \(state.settings), this run has \(settings); resume with the same seed, batch size, "
          + "accumulation, resolution and projection")
    }
    let adapterPath = folder.appendingPathComponent("ip_adapter.safetensors").path
    let optimizerPath = folder.appendingPathComponent("optimizer.safetensors").path
    let adapter: SafeTensorsFile, moments: SafeTensorsFile
    do {
      adapter = try SafeTensorsFile(path: adapterPath)
      moments = try SafeTensorsFile(path: optimizerPath)
    } catch {
      throw TrainingError.badCheckpoint(path: folder.path, reason: "\(error)")
    }
    var steps: [Int] = [], first: [Tensor?] = [], second: [Tensor?] = []
    var values: [Tensor] = []
    for (key, variable) in trainer.parameters {
      guard adapter.keys.contains(key), let n = state.optimizerSteps[key], n >= 0 else {
        throw TrainingError.badCheckpoint(path: adapterPath, reason: "\(key) is missing (a checkpoint of another adapter?)")
      }
      let value = try adapter.tensor(key).asFloat32()
      guard value.shape == variable.shape else {
        throw TrainingError.badCheckpoint(path: adapterPath, reason: "\(key) is \(value.shape), the adapter needs \(variable.shape)")
      }
      values.append(value)
      steps.append(n)
      if n > 0 {
        guard moments.keys.contains("exp_avg." + key), moments.keys.contains("exp_avg_sq." + key) else {
          throw TrainingError.badCheckpoint(path: optimizerPath, reason: "the moments of \(key) are missing")
        }
        first.append(try moments.tensor("exp_avg." + key).asFloat32())
        second.append(try moments.tensor("exp_avg_sq." + key).asFloat32())
      } else {
        first.append(nil)
        second.append(nil)
      }
    }
    do { try trainer.optimizer.restore(steps: steps, firstMoments: first, secondMoments: second) } catch {
      throw TrainingError.badCheckpoint(path: optimizerPath, reason: "\(error)")
    }
    for ((_, variable), value) in zip(trainer.parameters, values) { try variable.assign(value) }
    trainer.restoreStep(state.step)
    return state.step
  }
}
