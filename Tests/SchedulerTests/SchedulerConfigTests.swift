import Foundation
import Schedulers
import TensorCore
import TorchRandom
import Testing

/// Config decoding, the factory and typed errors for bad input.
@Suite("Scheduler configuration and errors")
struct SchedulerConfigTests {
  static let sd15JSON = """
    {
      "_class_name": "PNDMScheduler",
      "_diffusers_version": "0.6.0",
      "beta_end": 0.012,
      "beta_schedule": "scaled_linear",
      "beta_start": 0.00085,
      "num_train_timesteps": 1000,
      "set_alpha_to_one": false,
      "skip_prk_steps": true,
      "steps_offset": 1,
      "trained_betas": null,
      "clip_sample": false
    }
    """

  @Test("The SD1.5 scheduler_config.json decodes to SchedulerConfig.stableDiffusion15")
  func decodeSD15() throws {
    let config = try SchedulerConfig(jsonData: Data(Self.sd15JSON.utf8))
    #expect(config == SchedulerConfig.stableDiffusion15)
    #expect(config.timestepSpacing == nil)
    #expect(config.trainedBetas == nil)
  }

  @Test("Python's -Infinity literal and unknown keys are accepted")
  func decodePythonLiterals() throws {
    let json = #"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, "some_future_key": [1, 2]}"#
    let config = try SchedulerConfig(jsonData: Data(json.utf8))
    #expect(config.lambdaMinClipped == -.infinity)
    let scheduler = try makeScheduler(config: config, steps: 10)
    #expect(scheduler.timesteps.first == 999)
  }

  @Test("Malformed JSON and wrong value types throw invalidConfigJSON")
  func malformedJSON() {
    #expect {
      _ = try SchedulerConfig(jsonData: Data("{\"beta_start\": ".utf8))
    } throws: { error in
      if case SchedulerError.invalidConfigJSON = error { return true }
      return false
    }
    #expect {
      _ = try SchedulerConfig(jsonData: Data("{\"steps_offset\": \"one\"}".utf8))
    } throws: { error in
      guard case SchedulerError.invalidConfigJSON(let message) = error else { return false }
      return message.contains("steps_offset")
    }
  }

  @Test("CLI names round-trip and build the documented classes")
  func kinds() throws {
    #expect(SchedulerKind.allCases.map(\.cliName) == ["ddim", "pndm", "euler", "euler-a", "dpmpp-2m", "dpmpp-2m-karras", "lcm", "tcd"])
    let expected: [SchedulerKind: any Scheduler.Type] = [
      .ddim: DDIMScheduler.self, .pndm: PNDMScheduler.self, .euler: EulerDiscreteScheduler.self,
      .eulerAncestral: EulerAncestralDiscreteScheduler.self, .dpmpp2m: DPMSolverMultistepScheduler.self,
      .dpmpp2mKarras: DPMSolverMultistepScheduler.self, .lcm: LCMScheduler.self, .tcd: TCDScheduler.self,
    ]
    for kind in SchedulerKind.allCases {
      #expect(try SchedulerKind(cliName: kind.cliName) == kind)
      let s = try makeScheduler(kind: kind, config: .stableDiffusion15, steps: 20)
      #expect(type(of: s) == expected[kind], "\(kind)")
    }
    #expect(try type(of: makeScheduler(config: .stableDiffusion15, steps: 20)) == PNDMScheduler.self)
  }

  @Test("Unknown scheduler name → SchedulerError.unknownScheduler")
  func unknownName() {
    #expect(throws: SchedulerError.unknownScheduler(name: "lms", known: SchedulerKind.allCases.map(\.rawValue))) {
      try SchedulerKind(cliName: "lms")
    }
  }

  @Test("Unknown _class_name → SchedulerError.unknownSchedulerClass")
  func unknownClass() {
    var config = SchedulerConfig.stableDiffusion15
    config.className = "LMSDiscreteScheduler"
    #expect {
      _ = try makeScheduler(config: config, steps: 10)
    } throws: { error in
      guard case SchedulerError.unknownSchedulerClass(let name, _) = error else { return false }
      return name == "LMSDiscreteScheduler"
    }
  }

  @Test("Unknown beta_schedule → unsupportedValue naming the key, for every kind", arguments: SchedulerKind.allCases)
  func unknownBetaSchedule(_ kind: SchedulerKind) {
    var config = SchedulerConfig.stableDiffusion15
    config.betaSchedule = "cosine"
    #expect {
      _ = try makeScheduler(kind: kind, config: config, steps: 10)
    } throws: { error in
      guard case SchedulerError.unsupportedValue(_, let key, let value, let supported) = error else { return false }
      return key == "beta_schedule" && value == "cosine" && supported.contains("scaled_linear")
        && "\(error)".contains("beta_schedule")
    }
  }

  @Test("Unknown timestep_spacing → unsupportedValue naming the key, for every kind", arguments: SchedulerKind.allCases)
  func unknownSpacing(_ kind: SchedulerKind) {
    var config = SchedulerConfig.stableDiffusion15
    config.timestepSpacing = "uniform"
    #expect {
      _ = try makeScheduler(kind: kind, config: config, steps: 10)
    } throws: { error in
      guard case SchedulerError.unsupportedValue(_, let key, let value, _) = error else { return false }
      return key == "timestep_spacing" && value == "uniform"
    }
  }

  @Test("Unsupported options of a class throw; another class's options are ignored")
  func unsupportedOptions() throws {
    var config = SchedulerConfig.stableDiffusion15
    config.thresholding = true
    #expect(throws: SchedulerError.self) { try makeScheduler(kind: .ddim, config: config, steps: 10) }
    // Euler and PNDM have no `thresholding` key: from_config drops it.
    _ = try makeScheduler(kind: .euler, config: config, steps: 10)
    _ = try makeScheduler(kind: .pndm, config: config, steps: 10)

    var sde = SchedulerConfig.stableDiffusion15
    sde.className = "DPMSolverMultistepScheduler"
    sde.algorithmType = "sde-dpmsolver++"
    #expect(throws: SchedulerError.self) { try makeScheduler(config: sde, steps: 10) }
    // The dpmpp-2m kind overrides algorithm_type, as from_config(..., algorithm_type=...) does.
    _ = try makeScheduler(kind: .dpmpp2m, config: sde, steps: 10)

    var sample = SchedulerConfig.stableDiffusion15
    sample.predictionType = "sample"
    #expect(throws: SchedulerError.self) { try makeScheduler(kind: .eulerAncestral, config: sample, steps: 10) }
    #expect(throws: SchedulerError.self) { try makeScheduler(kind: .pndm, config: sample, steps: 10) }
  }

  @Test("Step counts outside 1...num_train_timesteps → invalidStepCount")
  func badStepCount() {
    for kind in SchedulerKind.allCases {
      #expect(throws: SchedulerError.invalidStepCount(steps: 0, numTrainTimesteps: 1000)) {
        try makeScheduler(kind: kind, config: .stableDiffusion15, steps: 0)
      }
      #expect(throws: SchedulerError.invalidStepCount(steps: 1001, numTrainTimesteps: 1000)) {
        try makeScheduler(kind: kind, config: .stableDiffusion15, steps: 1001)
      }
    }
  }

  @Test("Steps out of order, bad indices, shape mismatches and bad strengths throw")
  func loopMisuse() throws {
    var s = try makeScheduler(kind: .dpmpp2m, config: .stableDiffusion15, steps: 5)
    var g = TorchGenerator(seed: 0)
    let x = Tensor.zeros([1, 4, 2, 2])
    _ = try s.step(modelOutput: x, stepIndex: 0, sample: x, generator: &g)
    #expect(throws: SchedulerError.stepOutOfOrder(scheduler: "DPMSolverMultistepScheduler", expected: 1, got: 2)) {
      try s.step(modelOutput: x, stepIndex: 2, sample: x, generator: &g)
    }
    #expect(throws: SchedulerError.stepIndexOutOfRange(index: 5, count: 5)) {
      try s.scaleModelInput(x, stepIndex: 5)
    }
    #expect(throws: SchedulerError.shapeMismatch(operation: "DPMSolverMultistepScheduler.addNoise", expected: [1, 4, 2, 2], actual: [1, 4, 2, 3])) {
      try s.addNoise(original: x, noise: Tensor.zeros([1, 4, 2, 3]), stepIndex: 0)
    }
    #expect(throws: SchedulerError.invalidStrength(1.5)) { try s.startIndex(strength: 1.5) }
    #expect(try s.startIndex(strength: 1) == 0)
    #expect(try s.startIndex(strength: 0.3) == 4)  // int(5 * 0.3) = 1 step left
  }

  @Test("Pipeline fix-ups force steps_offset 1 and clip_sample false")
  func pipelineFixups() {
    var c = SchedulerConfig()
    c.clipSample = true
    let fixed = c.applyingPipelineFixups()
    #expect(fixed.stepsOffset == 1 && fixed.clipSample == false)
  }

  @Test("Euler-a with NHWC latents draws torch's NCHW noise, transposed")
  func ancestralLayout() throws {
    func nchwToNhwc(_ t: Tensor) throws -> Tensor {
      let (n, c, h, w) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
      let v = t.scalars()
      var out = [Float](repeating: 0, count: v.count)
      for b in 0..<n { for ch in 0..<c { for y in 0..<h { for x in 0..<w {
        out[((b * h + y) * w + x) * c + ch] = v[((b * c + ch) * h + y) * w + x]
      } } } }
      return try Tensor(shape: [n, h, w, c], floats: out)
    }
    var nchw = try makeScheduler(kind: .eulerAncestral, config: .stableDiffusion15, steps: 4)
    var nhwc = try makeScheduler(kind: .eulerAncestral, config: .stableDiffusion15, steps: 4, noiseLayout: .nhwc)
    var g1 = TorchGenerator(seed: 7)
    var g2 = TorchGenerator(seed: 7)
    var a = g1.randn([1, 4, 5, 3])
    var b = try nchwToNhwc(a)
    _ = g2.randn([1, 4, 5, 3])
    for i in 0..<4 {
      let m = try Tensor(shape: [1, 4, 5, 3], floats: (0..<60).map { Float($0 % 7) * 0.1 - 0.3 })
      a = try nchw.step(modelOutput: m, stepIndex: i, sample: a, generator: &g1)
      b = try nhwc.step(modelOutput: nchwToNhwc(m), stepIndex: i, sample: b, generator: &g2)
    }
    #expect(try nchwToNhwc(a).scalars() == b.scalars())
  }
}
