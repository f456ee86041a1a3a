import Foundation
import Models
import NN
import TensorCore
import Testing
import TestSupport
import Weights

/// Parity of the tiny ControlNets with diffusers `ControlNetModel` (0.42.1)
/// (`tools/reference/gen_controlnet.py` → `Fixtures/tiny-controlnet*/`,
/// `Fixtures/goldens/controlnet-modules.safetensors`). Every weight of the fixtures is random,
/// the zero-initialised 1×1 convolutions included, so every residual is non-trivial.
///
/// Tolerance: relative error `max|Δ| / max|ref|` ≤ 1e-5 for every residual (fp32 compute of
/// fp16-stored weights, like the UNet parity tests).
@Suite struct ControlNetParityTests {
  static let tolerance: Float = 1e-5
  /// Golden case → (timestep, conditioning_scale, guess_mode), as in the generator's CASES.
  static let cases: [String: (Float, Float, Bool)] = [
    "s1": (999, 1.0, false), "s07": (999, 0.7, false), "guess": (946.4734, 0.8, true),
  ]

  let goldens: SafeTensorsFile
  init() throws { goldens = try Fixtures.archive("goldens/controlnet-modules.safetensors") }

  func g(_ key: String) throws -> Tensor { try goldens.tensor(key) }
  func controlNet(_ name: String = "tiny-controlnet") throws -> ControlNetModel {
    try ModelLoader.controlNet(Fixtures.url(name))
  }
  func unet() throws -> UNet2DConditionModel { try ModelLoader.unet(Fixtures.url("tiny-sd15/unet")) }

  /// Runs `model` on the golden inputs.
  func run(
    _ model: ControlNetModel, timestep: Float, scale: Float, guessMode: Bool, image: Tensor? = nil
  ) throws -> ControlResiduals {
    let conditioning = try model.makeConditioning(encoderHiddenStates: try g("cn.context"))
    return try model(
      try g("cn.sample").nhwc(), timestep: timestep, conditioning: conditioning,
      controlImage: try image ?? g("cn.image").nhwc(), scale: scale, guessMode: guessMode)
  }

  /// Compares every residual with `<prefix>.down.<i>` / `<prefix>.mid`; returns the worst error.
  @discardableResult
  func expectResiduals(_ r: ControlResiduals, _ prefix: String, pooled: Bool = false) throws -> Float {
    var worst: Float = 0
    let expected = r.down.count
    #expect(goldens.keys.filter { $0.hasPrefix("\(prefix).down.") }.count == expected)
    for (name, value) in r.down.enumerated().map({ ("\(prefix).down.\($0.offset)", $0.element) }) + [("\(prefix).mid", r.mid)] {
      var reference = try g(name).nhwc()
      if pooled { reference = broadcastSpatially(reference, to: value.shape) }
      #expect(value.shape == reference.shape, "\(name)")
      let error = Compare.relativeError(value, reference)
      #expect(error <= Self.tolerance, "\(name): relative error \(error)")
      worst = max(worst, error)
    }
    return worst
  }

  /// `[B, 1, 1, C]` repeated to `[B, H, W, C]`.
  func broadcastSpatially(_ x: Tensor, to shape: [Int]) -> Tensor {
    let v = x.scalars()
    let (b, hw, c) = (shape[0], shape[1] * shape[2], shape[3])
    var out = [Float](repeating: 0, count: b * hw * c)
    for i in 0..<b { for p in 0..<hw { for k in 0..<c { out[(i * hw + p) * c + k] = v[i * c + k] } } }
    return try! Tensor(shape: shape, floats: out)
  }

  @Test(arguments: ["s1", "s07", "guess"])
  func residualsMatchDiffusers(caseName: String) throws {
    let (t, scale, guess) = try #require(Self.cases[caseName])
    let r = try run(try controlNet(), timestep: t, scale: scale, guessMode: guess)
    #expect(r.down.count == 9)
    let worst = try expectResiduals(r, "cn.\(caseName)")
    print("ControlNet \(caseName): worst relative error \(worst)")
  }

  @Test func secondControlNetMatchesDiffusers() throws {
    let r = try run(try controlNet("tiny-controlnet-b"), timestep: 999, scale: 1, guessMode: false)
    print("ControlNet b s1: worst relative error \(try expectResiduals(r, "b.s1"))")
  }

  /// `global_pool_conditions`: spatial means, and guess mode ignored (golden: guess_mode=True).
  @Test func globalPoolMatchesDiffusers() throws {
    var config = try ConfigFile.load(ControlNetConfig.self, from: Fixtures.url("tiny-controlnet/config.json"))
    config.globalPoolConditions = true
    let model = try ControlNetModel(config: config)
    try model.loadWeights(
      from: try ModelLoader.openWeights(in: Fixtures.url("tiny-controlnet"), stem: "diffusion_pytorch_model"),
      source: "tiny-controlnet")
    let r = try run(model, timestep: 1, scale: 0.9, guessMode: true)
    print("ControlNet global pool: worst relative error \(try expectResiduals(r, "pool", pooled: true))")
  }

  /// The tiny UNet fed ControlNet residuals matches diffusers'
  /// `unet(..., down_block_additional_residuals=..., mid_block_additional_residual=...)`, both with
  /// the golden residuals and with ours end to end.
  @Test func unetWithResidualsMatchesDiffusers() throws {
    let unet = try unet()
    let context = try g("cn.context")
    let sample = try g("cn.sample").nhwc()
    let expected = try g("unet.controlled").nhwc()
    let golden = ControlResiduals(
      down: try (0..<9).map { try g("cn.s07.down.\($0)").nhwc() }, mid: try g("cn.s07.mid").nhwc())
    let conditioning = try unet.makeConditioning(encoderHiddenStates: context)
    let fromGolden = try unet(sample, timestep: 999, conditioning: conditioning, controlResiduals: golden)
    #expect(Compare.relativeError(fromGolden, expected) <= Self.tolerance)
    let ours = try run(try controlNet(), timestep: 999, scale: 0.7, guessMode: false)
    let endToEnd = try unet(sample, timestep: 999, conditioning: conditioning, controlResiduals: ours)
    let error = Compare.relativeError(endToEnd, expected)
    #expect(error <= Self.tolerance, "relative error \(error)")
    // The residuals matter: without them the output is far off.
    let plain = try unet(sample, timestep: 999, conditioning: conditioning)
    #expect(Compare.relativeError(plain, expected) > 1e-2)
    print("ControlNet → UNet end to end: relative error \(error)")
  }

  @Test func guessModeScalesAreTorchLogspace() {
    // torch.logspace(-1, 0, 10) (float32), printed by the generator.
    let torch: [Double] = [
      0.10000000149011612, 0.1291549652814865, 0.1668100506067276, 0.2154434621334076, 0.2782559394836426,
      0.35938137769699097, 0.46415889263153076, 0.5994842648506165, 0.7742636799812317, 1.0,
    ]
    #expect(ControlNetModel.guessModeScales(count: 10) == torch.map(Float.init))
  }

  /// "bgr" reverses the control image's channels: same as "rgb" on the flipped image.
  @Test func bgrChannelOrderFlipsTheControlImage() throws {
    let rgbModel = try controlNet()
    var config = rgbModel.config
    config.controlnetConditioningChannelOrder = "bgr"
    let bgrModel = try ControlNetModel(config: config)
    try bgrModel.loadWeights(
      from: try ModelLoader.openWeights(in: Fixtures.url("tiny-controlnet"), stem: "diffusion_pytorch_model"),
      source: "tiny-controlnet")
    let image = try g("cn.image").nhwc()
    let flipped = try Tensor(shape: image.shape, floats: stride(from: 0, to: image.count, by: 3).flatMap { i in
      let v = image.scalars()
      return [v[i + 2], v[i + 1], v[i]]
    })
    let a = try run(bgrModel, timestep: 500, scale: 1, guessMode: false, image: image)
    let b = try run(rgbModel, timestep: 500, scale: 1, guessMode: false, image: flipped)
    #expect(Compare.maxAbsDifference(a.mid, b.mid) == 0)
    #expect(zip(a.down, b.down).allSatisfy { Compare.maxAbsDifference($0, $1) == 0 })
    // The control image (and so its channel order) matters.
    let c = try run(rgbModel, timestep: 500, scale: 1, guessMode: false, image: image)
    #expect(Compare.relativeError(c.down[0], a.down[0]) > 1e-2)
  }

  /// One control image is shared by the whole batch, and a precomputed embedding gives the same
  /// residuals as the image.
  @Test func sharedControlImageAndPrecomputedEmbedding() throws {
    let model = try controlNet()
    let image = try g("cn.image").nhwc()
    let first = image.slice(rows: 0..<1)
    let both = try Ops.concatRows([first, first])
    let conditioning = try model.makeConditioning(encoderHiddenStates: try g("cn.context"))
    let sample = try g("cn.sample").nhwc()
    let a = try model(sample, timestep: 10, conditioning: conditioning, controlImage: both, scale: 1, guessMode: false)
    let b = try model(sample, timestep: 10, conditioning: conditioning, controlImage: first, scale: 1, guessMode: false)
    let c = try model(
      sample, timestep: 10, conditioning: conditioning, controlEmbedding: try model.embedControlImage(first),
      scale: 1, guessMode: false)
    for r in [b, c] {
      #expect(Compare.maxAbsDifference(a.mid, r.mid) == 0)
      #expect(zip(a.down, r.down).allSatisfy { Compare.maxAbsDifference($0, $1) == 0 })
    }
  }

  @Test func validatesAgainstTheUNet() throws {
    let unet = try unet()
    try controlNet().validate(against: unet)
    try controlNet("tiny-controlnet-b").validate(against: unet)
    let wrong = try controlNet("tiny-controlnet-wrong-dim")
    #expect(throws: ControlNetError.crossAttentionDimMismatch(controlNet: 24, unet: 20)) {
      try wrong.validate(against: unet)
    }
    let message = "\(ControlNetError.crossAttentionDimMismatch(controlNet: 24, unet: 20))"
    #expect(message.contains("24") && message.contains("20"))
    // Same text width, one layer per block: 6 residuals instead of the UNet's 9.
    var config = try controlNet().config
    config.layersPerBlock = 1
    let shallow = try ControlNetModel(config: config)
    #expect(throws: ControlNetError.residualLayoutMismatch(controlNet: [16, 16, 16, 24, 24, 32, 32], unet: [16, 16, 16, 16, 24, 24, 24, 32, 32, 32])) {
      try shallow.validate(against: unet)
    }
  }

  @Test func rejectsBadInputs() throws {
    let model = try controlNet()
    let conditioning = try model.makeConditioning(encoderHiddenStates: try g("cn.context"))
    let sample = try g("cn.sample").nhwc()
    func expectInvalid(_ what: String, _ body: () throws -> Void) {
      do {
        try body()
        Issue.record("\(what): no error")
      } catch ModuleError.invalidInput(let message) {
        #expect(message.contains("ControlNet"), "\(what): \(message)")
      } catch { Issue.record("\(what): unexpected \(error)") }
    }
    expectInvalid("image size") {
      _ = try model(sample, timestep: 1, conditioning: conditioning, controlImage: .zeros([2, 32, 32, 3]), scale: 1, guessMode: false)
    }
    expectInvalid("image channels") {
      _ = try model(sample, timestep: 1, conditioning: conditioning, controlImage: .zeros([2, 64, 64, 1]), scale: 1, guessMode: false)
    }
    expectInvalid("image batch") {
      _ = try model(sample, timestep: 1, conditioning: conditioning, controlImage: .zeros([3, 64, 64, 3]), scale: 1, guessMode: false)
    }
    expectInvalid("text width") { _ = try model.makeConditioning(encoderHiddenStates: .zeros([2, 77, 24])) }
    expectInvalid("UNet conditioning") {
      let unetConditioning = try unet().makeConditioning(encoderHiddenStates: try g("cn.context"))
      _ = try model(sample, timestep: 1, conditioning: unetConditioning, controlImage: .zeros([2, 64, 64, 3]), scale: 1, guessMode: false)
    }
    expectInvalid("scale") {
      _ = try model(sample, timestep: 1, conditioning: conditioning, controlImage: .zeros([2, 64, 64, 3]), scale: .nan, guessMode: false)
    }
  }

  @Test func configRejectsUnsupportedFields() throws {
    let base = try String(contentsOf: Fixtures.url("tiny-controlnet/config.json"), encoding: .utf8)
    func decode(_ replacing: String, with new: String) throws -> ControlNetConfig {
      #expect(base.contains(replacing), "fixture lacks \(replacing)")
      let text = base.replacingOccurrences(of: replacing, with: new)
      return try ConfigFile.decode(ControlNetConfig.self, from: Data(text.utf8), path: "config.json")
    }
    let cases: [(String, String, String)] = [
      (#""addition_embed_type": null"#, #""addition_embed_type": "text_image""#, "addition_embed_type"),
      (#""addition_embed_type": null"#, #""addition_embed_type": "text_time""#, "addition_time_embed_dim"),
      (#""controlnet_conditioning_channel_order": "rgb""#, #""controlnet_conditioning_channel_order": "rbg""#, "controlnet_conditioning_channel_order"),
      (#""mid_block_type": "UNetMidBlock2DCrossAttn""#, #""mid_block_type": null"#, "mid_block_type"),
      (#""mid_block_type": "UNetMidBlock2DCrossAttn""#, #""mid_block_type": "UNetMidBlock2D""#, "mid_block_type"),
      (#""only_cross_attention": false"#, #""only_cross_attention": [false, true, false]"#, "only_cross_attention"),
      (#""class_embed_type": null"#, #""class_embed_type": "timestep""#, "class_embed_type"),
      (#""norm_num_groups": 8"#, #""norm_num_groups": 7"#, "block_out_channels[0]"),
    ]
    for (old, new, field) in cases {
      let config = try decode(old, with: new)
      do {
        try config.validate(path: "config.json")
        Issue.record("\(new) accepted")
      } catch let error as ModelConfigError {
        switch error {
        case .unsupported(_, let f, _, _), .malformed(_, let f, _): #expect(f == field, "\(new): \(error)")
        default: Issue.record("\(new): \(error)")
        }
      }
    }
    // Absent fields take diffusers' defaults; an explicit null embedding list is rejected.
    let defaults = try ConfigFile.decode(ControlNetConfig.self, from: Data("{}".utf8), path: "config.json")
    #expect(defaults == ControlNetConfig())
    #expect(defaults.conditioningEmbeddingOutChannels == [16, 32, 96, 256] && defaults.crossAttentionDim == 1280)
    let noEmbedding = try decode(
      #""conditioning_embedding_out_channels": ["#, with: #""conditioning_embedding_out_channels": null, "x": ["#)
    #expect(throws: ModelConfigError.self) { try noEmbedding.validate(path: "config.json") }
  }
}
