import Autograd
import Foundation
import IPAdapter
import Imaging
import Pipelines
import TensorCore
import TestSupport
import Testing
import Training
import Weights

/// Whole training runs on the tiny SD1.5 fixture with a generated data set (coloured squares and
/// circles on grey): resumption is bit-identical, the loss goes down, the result loads in the
/// engine and generates, and bad data or settings are typed errors naming the file and entry.
@Suite(.serialized) struct TrainingRunTests {
  static let model = Fixtures.url("tiny-sd15")
  static let encoder = Fixtures.url("tiny-ip-adapter/models/image_encoder")

  static func makeDataSet(_ entries: [[String: String]]? = nil) throws -> URL { try TrainingData.make(entries) }

  static func setup(_ data: URL, output: URL, steps: Int, saveSteps: Int? = nil) -> TrainingSetup {
    var setup = TrainingSetup(
      model: .diffusersFolder(model), imageEncoder: encoder, data: data.appendingPathComponent("train.json"), imageRoot: data, output: output)
    setup.learningRate = 1e-3
    setup.options.resolution = 64
    setup.options.batchSize = 2
    setup.options.steps = steps
    setup.options.saveSteps = saveSteps
    setup.options.seed = 7
    return setup
  }

  static func output() -> URL { FileManager.default.temporaryDirectory.appendingPathComponent("train-out-\(UUID().uuidString)") }

  @Test func aResumedRunEndsBitIdenticalToAnUninterruptedOne() async throws {
    let data = try Self.makeDataSet()
    let straight = try await Self.setup(data, output: Self.output(), steps: 10).makeRun()
    try await straight.runDetached()
    let first = Self.output()
    try await Self.setup(data, output: first, steps: 5, saveSteps: 5).makeRun().runDetached()
    let resumed = try await Self.setup(data, output: first, steps: 10).makeRun()
    try await resumed.runDetached(resume: first.appendingPathComponent("checkpoint-5"))
    #expect(resumed.trainer.step == 10)
    for ((key, a), (_, b)) in zip(straight.trainer.parameters, resumed.trainer.parameters) {
      #expect(a.value.scalars() == b.value.scalars(), "\(key) differs after resuming")
    }
    let logs = [straight.output, first].map { try? String(contentsOf: $0.appendingPathComponent("loss.jsonl"), encoding: .utf8) }
    #expect(logs[0] != nil && logs[0] == logs[1], "the loss logs differ")
  }

  /// 200 steps (lr 1e-3, batch 2, 64²): the mean loss of the last 40 steps is at least 10 % below
  /// the first 40's; the saved adapter loads in `IPAdapter` and generates.
  @Test func twoHundredStepsLowerTheLossAndTheResultGenerates() async throws {
    let data = try Self.makeDataSet()
    var setup = Self.setup(data, output: Self.output(), steps: 200)
    setup.numTokens = 8
    let run = try await setup.makeRun()
    // Off the cooperative thread pool: 200 steps would starve the other suites' async tests.
    let final = try await run.runDetached()
    let losses = try LossPlot.read(logFile: run.output.appendingPathComponent("loss.jsonl")).map { Float($0.loss) }
    #expect(losses.count == 200)
    let early = losses.prefix(40).reduce(0, +) / 40, late = losses.suffix(40).reduce(0, +) / 40
    print("learning test: mean loss \(early) over the first 40 steps, \(late) over the last 40")
    #expect(late < 0.9 * early, "mean loss \(early) over the first 40 steps, \(late) over the last 40")
    let pipeline = try StableDiffusionPipeline(folder: Self.model)
    let adapter = try IPAdapter(path: final.path, unet: pipeline.unet)
    guard case .global(_, _, let tokens) = adapter.variant else { Issue.record("not a global adapter: \(adapter.variant)"); return }
    #expect(tokens == 8)
    // The .bin written beside it is the same adapter.
    let bin = try IPAdapter(path: final.deletingLastPathComponent().appendingPathComponent("ip_adapter.bin").path, unet: pipeline.unet)
    #expect(bin.variant == adapter.variant)
    var parameters = GenerationParameters(prompt: "a red square")
    (parameters.width, parameters.height, parameters.steps, parameters.seed) = (64, 64, 2, 1)
    var request = GenerationRequest(parameters: parameters)
    var spec = ImagePromptSpec(adapter: .local(final.path), images: [try Image(contentsOfFile: data.appendingPathComponent("0.png").path)])
    spec.imageEncoder = .local(Self.encoder.path)
    request.imagePrompts = [spec]
    let result = try await pipeline.generate(request)
    #expect(result.image.width == 64 && result.image.height == 64)
  }

  @Test func badDataIsATypedErrorNamingTheFileAndEntry() throws {
    let folder = try Self.makeDataSet()
    let json = folder.appendingPathComponent("bad.json")
    let cases: [(String, String)] = [
      ("{\"image_file\": \"0.png\"}", "expected a JSON list"),
      ("[{\"image_file\": \"0.png\", \"text\": \"a\"}, {\"text\": \"b\"}]", "entry 1 has no \"image_file\""),
      ("[{\"image_file\": \"0.png\"}]", "entry 0 has no \"text\""),
      ("[{\"image_file\": \"../0.png\", \"text\": \"a\"}]", "must be a path inside the image root"),
      ("[{\"image_file\": \"/etc/passwd\", \"text\": \"a\"}]", "must be a path inside the image root"),
      ("[]", "the list is empty"),
      ("[{\"image_file\": \"0.png\", \"text\": \"a\"", "not valid JSON"),
    ]
    for (text, message) in cases {
      try Data(text.utf8).write(to: json)
      #expect {
        _ = try TrainingDataset(jsonFile: json, imageRoot: folder)
      } throws: { error in
        "\(error)".contains(json.path) && "\(error)".contains(message)
      }
    }
  }

  @Test func aMissingImageStopsTheRunUnlessSkipped() async throws {
    let data = try Self.makeDataSet([
      ["image_file": "0.png", "text": "a red square"], ["image_file": "missing.png", "text": "nothing"],
      ["image_file": "1.png", "text": "a blue circle"],
    ])
    await #expect {
      try await Self.setup(data, output: Self.output(), steps: 4).makeRun().runDetached()
    } throws: { error in
      "\(error)".contains("missing.png") && "\(error)".contains("entry 1")
    }
    var setup = Self.setup(data, output: Self.output(), steps: 4)
    setup.options.skipBadImages = true
    final class Warnings: @unchecked Sendable {
      let lock = NSLock()
      var all: [String] = []
      func add(_ w: [String]) { lock.withLock { all += w } }
    }
    let warnings = Warnings()
    try await setup.makeRun().runDetached { warnings.add($0.warnings) }
    #expect(warnings.all.count == 1 && warnings.all[0].contains("missing.png"), "\(warnings.all)")
  }

  @Test func wrongSettingsAreRefusedBeforeTraining() async throws {
    let data = try Self.makeDataSet()
    var setup = Self.setup(data, output: Self.output(), steps: 2, saveSteps: 2)
    setup.options.resolution = 60
    await #expect { try await setup.makeRun() } throws: { "\($0)".contains("--resolution") && "\($0)".contains("multiple of") }
    setup.options.resolution = 64
    setup.options.batchSize = 0
    await #expect { try await setup.makeRun() } throws: { "\($0)".contains("--batch-size") }
    setup.options.batchSize = 2
    try await setup.makeRun().runDetached()
    // Resuming with another batch size would not reproduce the run: refused, naming the file.
    var other = setup
    other.options.batchSize = 1
    other.options.steps = 4
    await #expect {
      try await other.makeRun().runDetached(resume: setup.output.appendingPathComponent("checkpoint-2"))
    } throws: { "\($0)".contains("training_state.json") && "\($0)".contains("batch size") }
  }
}
