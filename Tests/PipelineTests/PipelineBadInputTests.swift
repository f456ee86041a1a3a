import Foundation
import Models
import Pipelines
import Schedulers
import Testing
import TestSupport

/// Bad input gives a typed error naming what is wrong (issue #3).
@Suite struct PipelineBadInputTests {
  /// A scratch copy of the tiny pipeline that a test may damage.
  static func scratchCopy() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ipa-\(UUID().uuidString)")
    try FileManager.default.copyItem(at: Fixtures.url("tiny-sd15"), to: dir)
    return dir
  }

  @Test func missingFolderIsReported() {
    #expect(throws: ModelFileError.missingFolder(path: "/nonexistent/model")) {
      _ = try StableDiffusionPipeline(folder: URL(fileURLWithPath: "/nonexistent/model"))
    }
  }

  @Test func folderWithoutModelIndexIsNotAPipeline() throws {
    let dir = try Self.scratchCopy()
    defer { try? FileManager.default.removeItem(at: dir) }
    try FileManager.default.removeItem(at: dir.appendingPathComponent("model_index.json"))
    #expect(throws: PipelineError.notAPipelineFolder(path: dir.path)) {
      _ = try StableDiffusionPipeline(folder: dir)
    }
  }

  @Test func missingSubfolderIsNamed() throws {
    let dir = try Self.scratchCopy()
    defer { try? FileManager.default.removeItem(at: dir) }
    try FileManager.default.removeItem(at: dir.appendingPathComponent("vae"))
    #expect(throws: PipelineError.missingComponent(folder: dir.path, component: "vae")) {
      _ = try StableDiffusionPipeline(folder: dir)
    }
  }

  @Test func missingWeightFileIsNamed() throws {
    let dir = try Self.scratchCopy()
    defer { try? FileManager.default.removeItem(at: dir) }
    try FileManager.default.removeItem(at: dir.appendingPathComponent("unet/diffusion_pytorch_model.safetensors"))
    do {
      _ = try StableDiffusionPipeline(folder: dir)
      Issue.record("expected an error")
    } catch let error as ModelFileError {
      guard case .noWeights(let folder, let tried) = error else { Issue.record("\(error)"); return }
      #expect(folder.hasSuffix("unet"))
      #expect(tried.contains("diffusion_pytorch_model.safetensors"))
    }
  }

  @Test func malformedConfigNamesFileAndField() throws {
    let dir = try Self.scratchCopy()
    defer { try? FileManager.default.removeItem(at: dir) }
    let config = dir.appendingPathComponent("unet/config.json")
    try Data(#"{"block_out_channels": "wide"}"#.utf8).write(to: config)
    do {
      _ = try StableDiffusionPipeline(folder: dir)
      Issue.record("expected an error")
    } catch let error as ModelConfigError {
      guard case .malformed(let path, let field, _) = error else { Issue.record("\(error)"); return }
      #expect(path == config.path)
      #expect(field == "block_out_channels")
    }
  }

  @Test func invalidJSONIsReported() throws {
    let dir = try Self.scratchCopy()
    defer { try? FileManager.default.removeItem(at: dir) }
    try Data("{not json".utf8).write(to: dir.appendingPathComponent("vae/config.json"))
    #expect(throws: ModelConfigError.self) { _ = try StableDiffusionPipeline(folder: dir) }
  }

  @Test func unsupportedBlockTypeNamesTheField() throws {
    let dir = try Self.scratchCopy()
    defer { try? FileManager.default.removeItem(at: dir) }
    let config = dir.appendingPathComponent("unet/config.json")
    var json = try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as! [String: Any]
    json["down_block_types"] = ["CrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D", "DownBlock2D"]
    try JSONSerialization.data(withJSONObject: json).write(to: config)
    #expect(
      throws: ModelConfigError.unsupported(
        path: config.path, field: "down_block_types[1]", value: "SimpleCrossAttnDownBlock2D",
        supported: "CrossAttnDownBlock2D, DownBlock2D")
    ) { _ = try StableDiffusionPipeline(folder: dir) }
  }

  @Test func widthNotAMultipleOf8IsRejected() throws {
    let pipe = try StableDiffusionPipeline(folder: Fixtures.url("tiny-sd15"))
    var p = GenerationParameters(prompt: "x")
    p.width = 60
    #expect(throws: PipelineError.invalidArgument(name: "width", reason: "60 is not a positive multiple of 8")) {
      _ = try pipe.generate(p)
    }
  }

  @Test func latentsOfTheWrongShapeAreRejected() throws {
    let pipe = try StableDiffusionPipeline(folder: Fixtures.url("tiny-sd15"))
    var p = GenerationParameters(prompt: "x")
    p.latents = .zeros([1, 4, 4, 4])
    #expect(throws: PipelineError.self) { _ = try pipe.generate(p) }
  }

  @Test func unknownSchedulerNameIsATypedError() {
    #expect(throws: SchedulerError.self) { _ = try SchedulerKind(cliName: "heun") }
  }
}
