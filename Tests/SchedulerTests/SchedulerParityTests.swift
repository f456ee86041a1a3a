import Foundation
import Schedulers
import TensorCore
import TorchRandom
import Testing

/// Full denoising loops against diffusers 0.42.1: every case builds the scheduler the way the CLI
/// does (`SchedulerKind` + `scheduler_config.json`), feeds the recorded model outputs and compares
/// timesteps, sigmas, `init_noise_sigma`, `scale_model_input`, every `step` result (end to end:
/// each step consumes our own previous result) and `add_noise`.
///
/// Tolerance: max relative error `max|a − b| / max|b|` ≤ 1e-5 for tensors, ≤ 1e-6 for the
/// schedule tables; integral timesteps must match exactly.
@Suite("Schedulers match diffusers")
struct SchedulerParityTests {
  static let tensorTolerance = 1e-5
  static let tableTolerance = 1e-6

  @Test("DDIMScheduler", arguments: SchedulerFixtures.cases("ddim"))
  func ddim(_ c: SchedulerCase) throws { try Self.run(c) }

  @Test("PNDMScheduler", arguments: SchedulerFixtures.cases("pndm"))
  func pndm(_ c: SchedulerCase) throws { try Self.run(c) }

  @Test("EulerDiscreteScheduler", arguments: SchedulerFixtures.cases("euler"))
  func euler(_ c: SchedulerCase) throws { try Self.run(c) }

  @Test("EulerAncestralDiscreteScheduler (seeded noise every step)", arguments: SchedulerFixtures.cases("euler-a"))
  func eulerAncestral(_ c: SchedulerCase) throws { try Self.run(c) }

  @Test("DPMSolverMultistepScheduler dpmsolver++ order 2", arguments: SchedulerFixtures.cases("dpmpp-2m"))
  func dpmpp2m(_ c: SchedulerCase) throws { try Self.run(c) }

  @Test("DPMSolverMultistepScheduler dpmsolver++ order 2, Karras sigmas", arguments: SchedulerFixtures.cases("dpmpp-2m-karras"))
  func dpmpp2mKarras(_ c: SchedulerCase) throws { try Self.run(c) }

  @Test("LCMScheduler (few steps, seeded re-noising)", arguments: SchedulerFixtures.cases("lcm"))
  func lcm(_ c: SchedulerCase) throws { try Self.run(c) }

  @Test("TCDScheduler at eta 0, 0.3 and 1", arguments: SchedulerFixtures.cases("tcd"))
  func tcd(_ c: SchedulerCase) throws { try Self.run(c) }

  @Test("The folder's own class from _class_name", arguments: SchedulerFixtures.cases("folder"))
  func folderClass(_ c: SchedulerCase) throws { try Self.run(c) }

  @Test("Every fixture file decodes and has cases")
  func fixturesPresent() throws {
    for file in ["ddim", "pndm", "euler", "euler-a", "dpmpp-2m", "dpmpp-2m-karras", "lcm", "tcd", "folder"] {
      let cases = try SchedulerFixtures.loadCases(file)
      #expect(cases.count >= 5, "Tests/Fixtures/schedulers/\(file).json")
    }
  }

  static func makeScheduler(_ c: SchedulerCase) throws -> any Scheduler {
    if let kind = c.kind {
      return try Schedulers.makeScheduler(
        kind: SchedulerKind(cliName: kind), config: c.config, steps: c.steps, eta: c.eta.map { Float($0) })
    }
    return try Schedulers.makeScheduler(config: c.config, steps: c.steps)
  }

  static func run(_ c: SchedulerCase) throws {
    var scheduler = try makeScheduler(c)
    try checkSchedule(scheduler, c)

    // Image-to-image: the start index and the initial noised latents.
    if let strength = c.strength, let original = c.original, let noise = c.noise {
      #expect(try scheduler.startIndex(strength: strength) == c.beginIndex)
      let noised = try scheduler.addNoise(
        original: c.tensor(original), noise: c.tensor(noise), stepIndex: c.beginIndex)
      let err = Metrics.relativeError(noised, c.initialSample)
      #expect(err <= tensorTolerance, "initial add_noise: relative error \(err)")
    }

    var generator = TorchGenerator(seed: c.generatorSeed)
    var sample = try c.tensor(c.initialSample)
    for (i, step) in c.loop.enumerated() {
      let index = c.beginIndex + i
      let scaled = try scheduler.scaleModelInput(sample, stepIndex: index)
      if let expected = step.scaled {
        let err = Metrics.relativeError(scaled, expected)
        #expect(err <= tensorTolerance, "step \(index) scale_model_input: relative error \(err)")
      } else {
        #expect(scaled.scalars() == sample.scalars(), "step \(index): scale_model_input must be the identity")
      }
      sample = try scheduler.step(
        modelOutput: c.tensor(step.modelOutput), stepIndex: index, sample: sample, generator: &generator)
      let err = Metrics.relativeError(sample, step.prevSample)
      #expect(err <= tensorTolerance, "step \(index) (t = \(c.timesteps[index])): relative error \(err)")
      if err > tensorTolerance { return }  // later steps only repeat the first divergence

      if let renoised = step.renoised, let original = c.original, let noise = c.noise {
        let out = try scheduler.addNoise(
          original: c.tensor(original), noise: c.tensor(noise), stepIndex: index + 1)
        let e = Metrics.relativeError(out, renoised)
        #expect(e <= tensorTolerance, "re-noise at step \(index + 1): relative error \(e)")
      }
    }

    for check in c.addNoise.checks {
      let fresh = try makeScheduler(c)
      let out = try fresh.addNoise(
        original: c.tensor(c.addNoise.original), noise: c.tensor(c.addNoise.noise), stepIndex: check.stepIndex)
      let err = Metrics.relativeError(out, check.output)
      #expect(err <= tensorTolerance, "add_noise at step \(check.stepIndex): relative error \(err)")
    }
  }

  static func checkSchedule(_ scheduler: any Scheduler, _ c: SchedulerCase) throws {
    #expect(scheduler.order == c.order)
    #expect(scheduler.numInferenceSteps == c.steps)
    let expected = c.timesteps.map { Float($0) }
    try #require(scheduler.timesteps.count == expected.count, "timesteps \(scheduler.timesteps) vs \(expected)")
    if expected.allSatisfy({ $0 == $0.rounded() }) {
      #expect(scheduler.timesteps == expected)
    } else {
      let err = Metrics.relativeError(scheduler.timesteps, expected)
      #expect(err <= tableTolerance, "fractional timesteps: relative error \(err)")
    }
    let sigmaErr = Metrics.relativeError([scheduler.initNoiseSigma], [Float(c.initNoiseSigma)])
    #expect(sigmaErr <= tableTolerance, "init_noise_sigma \(scheduler.initNoiseSigma) vs \(c.initNoiseSigma)")
    if let sigmas = c.sigmas {
      let ours: [Float]? =
        (scheduler as? EulerDiscreteScheduler)?.sigmas
        ?? (scheduler as? EulerAncestralDiscreteScheduler)?.sigmas
        ?? (scheduler as? DPMSolverMultistepScheduler)?.sigmas
      let mine = try #require(ours, "\(c.className) should expose sigmas")
      let err = Metrics.relativeError(mine, sigmas)
      #expect(err <= tableTolerance, "sigmas: relative error \(err)")
    }
  }
}
