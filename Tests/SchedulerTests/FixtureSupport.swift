import Foundation
import Schedulers
import TensorCore
import Testing

/// Golden data written by `tools/reference/gen_scheduler_fixtures.py` (diffusers 0.42.1, torch 2.13).
enum SchedulerFixtures {
  static let directory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/schedulers")

  static func data(_ name: String) throws -> Data {
    try Data(contentsOf: directory.appendingPathComponent(name))
  }

  /// The cases of `<file>.json`, or none if the file is missing (the test then fails on count).
  static func cases(_ file: String) -> [SchedulerCase] {
    guard let data = try? data("\(file).json"),
      let decoded = try? JSONDecoder().decode(SchedulerCaseFile.self, from: data)
    else { return [] }
    return decoded.cases
  }
}

struct SchedulerCaseFile: Decodable {
  let cases: [SchedulerCase]
}

struct AddNoiseCheck: Decodable, Sendable {
  let stepIndex: Int
  let output: [Double]
  enum CodingKeys: String, CodingKey {
    case stepIndex = "step_index"
    case output
  }
}

struct AddNoiseFixture: Decodable, Sendable {
  let original: [Double]
  let noise: [Double]
  let checks: [AddNoiseCheck]
}

struct LoopStep: Decodable, Sendable {
  let modelOutput: [Double]
  /// nil when diffusers' `scale_model_input` returned its input unchanged.
  let scaled: [Double]?
  let prevSample: [Double]
  /// Inpainting's re-noised original at the next timestep (image-to-image cases only).
  let renoised: [Double]?
  enum CodingKeys: String, CodingKey {
    case modelOutput = "model_output"
    case scaled
    case prevSample = "prev_sample"
    case renoised
  }
}

/// One denoising loop recorded from diffusers.
struct SchedulerCase: Decodable, Sendable, CustomTestStringConvertible {
  let name: String
  /// CLI name, or nil for "the folder's own class" (`_class_name`).
  let kind: String?
  let config: SchedulerConfig
  let steps: Int
  let shape: [Int]
  let className: String
  let timesteps: [Double]
  let sigmas: [Double]?
  let initNoiseSigma: Double
  let order: Int
  let strength: Double?
  let original: [Double]?
  let noise: [Double]?
  let beginIndex: Int
  let initialSample: [Double]
  let generatorSeed: UInt64
  let loop: [LoopStep]
  let addNoise: AddNoiseFixture

  var testDescription: String { name }

  enum CodingKeys: String, CodingKey {
    case name, kind, config, steps, shape, timesteps, sigmas, order, strength, original, noise, loop
    case className = "class"
    case initNoiseSigma = "init_noise_sigma"
    case beginIndex = "begin_index"
    case initialSample = "initial_sample"
    case generatorSeed = "generator_seed"
    case addNoise = "add_noise"
  }

  func tensor(_ values: [Double]) throws -> Tensor {
    try Tensor(shape: shape, floats: values.map { Float($0) })
  }
}

enum Metrics {
  /// `max|a − b| / max|b|`: the error relative to the reference tensor's scale.
  static func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "comparing \(a.count) with \(b.count) values")
    var diff = 0.0
    var scale = 0.0
    for i in 0..<a.count {
      diff = max(diff, abs(Double(a[i]) - Double(b[i])))
      scale = max(scale, abs(Double(b[i])))
    }
    if diff.isNaN || a.contains(where: \.isNaN) { return .infinity }
    return diff / max(scale, 1e-30)
  }

  static func relativeError(_ a: Tensor, _ b: [Double]) -> Double {
    relativeError(a.scalars(), b.map { Float($0) })
  }
}
