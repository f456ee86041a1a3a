import Autograd
import Foundation
import Imaging
import Schedulers
import TensorCore
import TestSupport
import Testing
@testable import Training
import Weights

/// The small pieces of a training step against their references (tools/reference/gen_training.py
/// `data`): `tutorial_train.py`'s image transform (torchvision), `clip_grad_norm_`, diffusers'
/// `get_scheduler` learning-rate schedules, and the noising targets (`add_noise`, `get_velocity`,
/// the noise offset of diffusers' training scripts).
@Suite struct TrainingPiecesParityTests {
  static let golden = try! SafeTensorsFile(path: Fixtures.url("training/data.safetensors").path)
  func tensor(_ key: String) throws -> Tensor { try Self.golden.tensor(key).asFloat32() }

  /// torchvision `Resize(r, BILINEAR)` → `CenterCrop(r)` → `ToTensor` → `Normalize([0.5], [0.5])`
  /// on PIL images: downscaled (wide and tall, with an alpha channel), upscaled (grey), crop only,
  /// and a 7-pixel target. PIL's bilinear filter is fixed-point 8-bit arithmetic that ours
  /// reproduces, and the scaling is the same float32 operations: every value is identical.
  @Test(arguments: [("wide", 16), ("tall", 16), ("gray", 40), ("wide", 23), ("tall", 7)])
  func targetPixelsMatchTorchvision(_ name: String, _ resolution: Int) throws {
    let image = try Image(contentsOfFile: Fixtures.url("training/images/\(name).png").path).convertedToRGB()
    let ours = try TrainingDataset.targetPixels(image, resolution: resolution)
    let expected = try tensor("pixels.\(name).\(resolution)")
    #expect(ours.shape == [resolution, resolution, 3])
    #expect(expected.shape == ours.shape)
    #expect(Compare.maxAbsDifference(ours, expected) == 0, "\(name) at \(resolution)")
  }

  /// `clip_grad_norm_(parameters, 0.5)`: the total norm returned and the gradients after, for
  /// gradients above the limit (scaled) and below it (unchanged); a parameter without a gradient
  /// is skipped.
  @Test(arguments: ["clip", "noclip"])
  func gradientClippingMatchesTorch(_ case_: String) throws {
    let tape = Tape()
    let shapes = [[4, 3], [5], [2, 2, 3]]
    let parameters = shapes.map { tape.leaf(Tensor.zeros($0)) }
    for i in [0, 2] { try tape.backward(parameters[i], seed: try tensor("\(case_).grad\(i)")) }
    let total = try GradientClipping.clipNorm(parameters, maxNorm: 0.5)
    let expected = Double(try tensor("\(case_).total").floatPointer[0])
    #expect(abs(total - expected) <= 1e-6 * expected, "total norm \(total), torch \(expected)")
    #expect(parameters[1].grad == nil)
    for i in [0, 2] {
      let error = Compare.relativeError(try #require(parameters[i].grad), try tensor("\(case_).clipped\(i)"))
      #expect(error <= 1e-6, "gradient \(i): relative error \(error)")
    }
  }

  /// Every schedule's rate at optimiser steps 0…14 of a 12-step run with 3 warm-up steps (past
  /// the end too), against diffusers' `get_scheduler` stepping a `LambdaLR` (stored as float32).
  @Test(arguments: LearningRateSchedule.names)
  func learningRateScheduleMatchesDiffusers(_ name: String) throws {
    let schedule = try LearningRateSchedule(name: name, warmupSteps: 3, totalSteps: 12, learningRate: 1)
    let expected = try tensor("lr.\(name)")
    #expect(expected.count == 15)
    for step in 0..<15 {
      let want = Double(expected.floatPointer[step])
      #expect(abs(schedule.factor(step: step) - want) <= 1e-7, "\(name) step \(step): \(schedule.factor(step: step)) vs \(want)")
    }
  }

  @Test func badScheduleSettingsAreRefused() throws {
    #expect(throws: AutogradError.self) { try LearningRateSchedule(name: "exponential", warmupSteps: 0, totalSteps: 10, learningRate: 1e-4) }
    #expect(throws: AutogradError.self) { try LearningRateSchedule(name: "linear", warmupSteps: -1, totalSteps: 10, learningRate: 1e-4) }
    #expect(throws: AutogradError.self) { try LearningRateSchedule(name: "polynomial", warmupSteps: 0, totalSteps: 10, learningRate: 1e-8) }
    #expect(throws: AutogradError.self) { try LearningRateSchedule(name: "polynomial", warmupSteps: 10, totalSteps: 10, learningRate: 1e-4) }
  }

  /// The tiny SD1.5 DDPM schedule at timesteps 0, 517 and 999: `add_noise`, the v-prediction
  /// target (`get_velocity`) and the offset noise, all ≤ 1e-6 relative.
  @Test func noisingTargetsMatchDiffusers() throws {
    var config = try SchedulerConfig(contentsOf: Fixtures.url("tiny-sd15/scheduler/scheduler_config.json"))
    let (x, n) = (try tensor("noise.latents"), try tensor("noise.noise"))
    let timesteps = try tensor("noise.timesteps")
    let t = (0..<timesteps.count).map { Int(timesteps.floatPointer[$0]) }
    let epsilon = try TrainingNoiseSchedule(config: config)
    #expect(epsilon.target == .epsilon)
    #expect(Compare.relativeError(try epsilon.addNoise(x, noise: n, timesteps: t), try tensor("noise.noisy")) <= 1e-6)
    #expect(Compare.maxAbsDifference(try epsilon.target(x, noise: n, timesteps: t), n) == 0)
    config.predictionType = "v_prediction"
    let velocity = try TrainingNoiseSchedule(config: config)
    #expect(Compare.relativeError(try velocity.target(x, noise: n, timesteps: t), try tensor("noise.velocity")) <= 1e-6)
    let offset = try AdapterTrainer.addingOffset(n, try tensor("noise.offset"), 0.1)
    #expect(Compare.relativeError(offset, try tensor("noise.offset_noise")) <= 1e-6)
  }
}
