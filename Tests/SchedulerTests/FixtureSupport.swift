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

  /// The cases of `<file>.json`; throws if the file is missing or malformed.
  static func loadCases(_ file: String) throws -> [SchedulerCase] {
    let decoded = try JSONDecoder().decode(SchedulerCaseFile.self, from: data("\(file).json"))
    return try decoded.cases.map { try SchedulerCase($0, in: decoded) }
  }

  /// The cases of `<file>.json`, or none if it cannot be read (`Every fixture file has cases`
  /// then reports why).
  static func cases(_ file: String) -> [SchedulerCase] {
    (try? loadCases(file)) ?? []
  }
}

/// Float32 values stored as a base64 string of their little-endian bytes (exact, and about a
/// third of the size of decimal text).
struct Float32Blob: Decodable, Sendable {
  let values: [Float]

  init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    let text = try container.decode(String.self)
    guard let data = Data(base64Encoded: text), data.count % 4 == 0 else {
      throw DecodingError.dataCorruptedError(
        in: container, debugDescription: "not base64 of little-endian float32 values")
    }
    values = data.withUnsafeBytes { raw in
      (0..<raw.count / 4).map { i in
        Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
      }
    }
  }
}

/// One `<kind>.json`: shared configs and input tensors, and the recorded loops.
struct SchedulerCaseFile: Decodable {
  struct AddNoiseInputs: Decodable {
    let original: Float32Blob
    let noise: Float32Blob
  }

  /// The scheduler configs by name; each case names one.
  let configs: [String: SchedulerConfig]
  /// `modelOutputs[k]` is fed to step k of every loop (k counted from the loop's first step).
  let modelOutputs: [Float32Blob]
  /// original and noise of every case's `add_noise` checks.
  let addNoiseInputs: AddNoiseInputs
  let cases: [RawSchedulerCase]

  enum CodingKeys: String, CodingKey {
    case configs, cases
    case modelOutputs = "model_outputs"
    case addNoiseInputs = "add_noise_inputs"
  }
}

struct AddNoiseCheck: Decodable, Sendable {
  let stepIndex: Int
  let output: Float32Blob
  enum CodingKeys: String, CodingKey {
    case stepIndex = "step_index"
    case output
  }
}

/// A case as stored: tensors that all cases share live in the file.
struct RawSchedulerCase: Decodable {
  let name: String
  let kind: String?
  let config: String
  let steps: Int
  let shape: [Int]
  let className: String
  let timesteps: [Double]
  let sigmas: Float32Blob?
  let initNoiseSigma: Double
  let order: Int
  let strength: Double?
  let original: Float32Blob?
  let noise: Float32Blob?
  let beginIndex: Int
  let initialSample: Float32Blob
  let generatorSeed: UInt64
  /// The `eta` passed to `step` (TCD cases).
  let eta: Double?
  /// Per loop step, or nil when `scale_model_input` is the identity throughout.
  let scaled: [Float32Blob?]?
  let prevSamples: [Float32Blob]
  /// Per loop step but the last (image-to-image only).
  let renoised: [Float32Blob]?
  let addNoise: [AddNoiseCheck]

  enum CodingKeys: String, CodingKey {
    case name, kind, config, steps, shape, timesteps, sigmas, order, strength, original, noise, scaled, renoised, eta
    case className = "class"
    case initNoiseSigma = "init_noise_sigma"
    case beginIndex = "begin_index"
    case initialSample = "initial_sample"
    case generatorSeed = "generator_seed"
    case prevSamples = "prev_samples"
    case addNoise = "add_noise"
  }
}

struct AddNoiseFixture: Sendable {
  struct Check: Sendable {
    let stepIndex: Int
    let output: [Float]
  }
  let original: [Float]
  let noise: [Float]
  let checks: [Check]
}

struct LoopStep: Sendable {
  let modelOutput: [Float]
  /// nil when diffusers' `scale_model_input` returned its input unchanged.
  let scaled: [Float]?
  let prevSample: [Float]
  /// Inpainting's re-noised original at the next timestep (image-to-image cases only).
  let renoised: [Float]?
}

struct FixtureError: Error, CustomStringConvertible {
  let description: String
}

/// One denoising loop recorded from diffusers, with the file's shared tensors filled in.
struct SchedulerCase: Sendable, CustomTestStringConvertible {
  let name: String
  /// CLI name, or nil for "the folder's own class" (`_class_name`).
  let kind: String?
  let config: SchedulerConfig
  let steps: Int
  let shape: [Int]
  let className: String
  let timesteps: [Double]
  let sigmas: [Float]?
  let initNoiseSigma: Double
  let order: Int
  let strength: Double?
  let original: [Float]?
  let noise: [Float]?
  let beginIndex: Int
  let initialSample: [Float]
  let generatorSeed: UInt64
  let eta: Double?
  let loop: [LoopStep]
  let addNoise: AddNoiseFixture

  var testDescription: String { name }

  /// Resolves the config name and the shared tensors; a case with fewer elements than the shared
  /// tensors uses the first `count` values of each. Throws on any inconsistency, so a malformed
  /// fixture cannot silently test less.
  init(_ raw: RawSchedulerCase, in file: SchedulerCaseFile) throws {
    let count = raw.shape.reduce(1, *)
    func check(_ values: [Float], _ what: String) throws -> [Float] {
      guard values.count == count else {
        throw FixtureError(description: "\(raw.name): \(what) has \(values.count) values, shape \(raw.shape) needs \(count)")
      }
      return values
    }
    func shared(_ blob: Float32Blob, _ what: String) throws -> [Float] {
      guard blob.values.count >= count else {
        throw FixtureError(description: "\(raw.name): shared \(what) has only \(blob.values.count) values")
      }
      return Array(blob.values.prefix(count))
    }
    guard let config = file.configs[raw.config] else {
      throw FixtureError(description: "\(raw.name): no config named \(raw.config)")
    }
    let loopCount = raw.prevSamples.count
    guard loopCount == raw.timesteps.count - raw.beginIndex, loopCount <= file.modelOutputs.count,
      raw.scaled.map({ $0.count == loopCount }) ?? true,
      raw.renoised.map({ $0.count == loopCount - 1 }) ?? true,
      (raw.renoised != nil) == (raw.strength != nil)
    else {
      throw FixtureError(description: "\(raw.name): per-step arrays do not match the loop of \(loopCount) steps")
    }

    name = raw.name
    kind = raw.kind
    self.config = config
    steps = raw.steps
    shape = raw.shape
    className = raw.className
    timesteps = raw.timesteps
    sigmas = raw.sigmas?.values
    initNoiseSigma = raw.initNoiseSigma
    order = raw.order
    strength = raw.strength
    original = try raw.original.map { try check($0.values, "original") }
    noise = try raw.noise.map { try check($0.values, "noise") }
    beginIndex = raw.beginIndex
    initialSample = try check(raw.initialSample.values, "initial_sample")
    generatorSeed = raw.generatorSeed
    eta = raw.eta
    var loop: [LoopStep] = []
    for k in 0..<loopCount {
      loop.append(
        LoopStep(
          modelOutput: try shared(file.modelOutputs[k], "model output \(k)"),
          scaled: try raw.scaled?[k].map { try check($0.values, "scaled \(k)") },
          prevSample: try check(raw.prevSamples[k].values, "prev_sample \(k)"),
          renoised: try raw.renoised.flatMap { k < $0.count ? try check($0[k].values, "renoised \(k)") : nil }))
    }
    self.loop = loop
    addNoise = AddNoiseFixture(
      original: try shared(file.addNoiseInputs.original, "add_noise original"),
      noise: try shared(file.addNoiseInputs.noise, "add_noise noise"),
      checks: try raw.addNoise.map {
        AddNoiseFixture.Check(stepIndex: $0.stepIndex, output: try check($0.output.values, "add_noise output"))
      })
  }

  func tensor(_ values: [Float]) throws -> Tensor {
    try Tensor(shape: shape, floats: values)
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

  static func relativeError(_ a: Tensor, _ b: [Float]) -> Double {
    relativeError(a.scalars(), b)
  }
}
