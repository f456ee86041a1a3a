import Foundation
import Imaging
import Models
import NN
import Pipelines
import Schedulers
import TensorCore
import Testing
import TestSupport
import Weights

/// Damaged weights, hostile checkpoints and oversized inputs end in typed errors before any output
/// is written.
@Suite struct HostileInputPipelineTests {
  /// A copy of the tiny pipeline whose UNet tensor `key` is filled with `value`.
  static func pipelineWithUNetTensor(_ key: String, filledWith value: Float) throws -> URL {
    let dir = try PipelineBadInputTests.scratchCopy()
    let file = dir.appendingPathComponent("unet/diffusion_pytorch_model.safetensors")
    let source = try SafeTensorsFile(path: file.path)
    var tensors: [String: Tensor] = [:]
    for k in source.keys { tensors[k] = try source.tensor(k).toFloat32(pooled: false) }
    let shape = try #require(tensors[key]).shape
    tensors[key] = try Tensor(shape: shape, floats: Array(repeating: value, count: shape.reduce(1, *)))
    try FileManager.default.removeItem(at: file)
    try SafeTensorsWriter.write(tensors, to: file.path)
    return dir
  }

  @Test("NaN weights are refused at load, naming the file and tensor; allowNonFiniteWeights accepts them")
  func nanWeightsAreRefused() throws {
    let dir = try Self.pipelineWithUNetTensor("conv_in.weight", filledWith: .nan)
    defer { try? FileManager.default.removeItem(at: dir) }
    let error = #expect(throws: WeightLoadingError.self) { _ = try StableDiffusionPipeline(folder: dir) }
    #expect(error?.nonFinite.first?.hasPrefix("conv_in.weight") == true)
    #expect(error?.source.hasSuffix("unet") == true)
    #expect(error?.description.contains("NaN or infinity") == true)
    _ = try StableDiffusionPipeline(folder: dir, allowNonFiniteWeights: true)
  }

  @Test("infinite weights are caught too, and a NaN generation stops at step 1 unless allowNaN")
  func nonFiniteLatentsStopTheRun() throws {
    let dir = try Self.pipelineWithUNetTensor("conv_out.bias", filledWith: .infinity)
    defer { try? FileManager.default.removeItem(at: dir) }
    #expect(throws: WeightLoadingError.self) { _ = try StableDiffusionPipeline(folder: dir) }
    let pipe = try StableDiffusionPipeline(folder: dir, allowNonFiniteWeights: true)
    var p = GenerationParameters(prompt: "a red cube")
    p.steps = 3
    p.scheduler = .ddim
    #expect(throws: PipelineError.nonFiniteLatents(model: dir.lastPathComponent, step: 1, total: 3)) {
      _ = try pipe.generate(p)
    }
    p.allowNaN = true
    let result = try pipe.generate(p)  // diffusers' behaviour: runs to the end, a black image
    #expect(result.image.pixels.allSatisfy { $0 == 0 })
  }

  @Test("an init image larger than maxPixels is refused as the output size before any work")
  func hugeInitImageOutputSize() throws {
    let pipe = try StableDiffusionPipeline(folder: Fixtures.url("tiny-sd15"))
    var p = GenerationParameters(prompt: "x")
    p.initImage = Image(width: 4104, height: 4104, format: .rgb)
    let error = #expect(throws: PipelineError.self) { _ = try pipe.generate(p) }
    guard case .invalidArgument("width × height", let reason)? = error else {
      Issue.record("\(String(describing: error))")
      return
    }
    #expect(reason.contains("4104×4104 (the init image's size)") && reason.contains("maxPixels = 16777216"))
    p.initImage = nil
    p.width = 8192
    p.height = 8192
    #expect(throws: PipelineError.self) { _ = try pipe.generate(p) }
    p.maxPixels = 64 * 64
    p.width = 72
    p.height = 64
    #expect(throws: PipelineError.self) { _ = try pipe.outputSize(for: p) }
  }

  @Test("a key wrapped in 100,000 nested state_dict prefixes is refused in linear time")
  func nestedStateDictPrefixes() throws {
    let key = String(repeating: "state_dict.", count: 100_000) + "model.diffusion_model.input_blocks.0.0.weight"
    let archive = TensorDictionary([key: Tensor.zeros([2])], name: "nested")
    #expect(throws: SingleFileError.tooDeeplyWrapped(path: "nested.ckpt", depth: 100_000, limit: 16)) {
      _ = try SingleFileCheckpoint(archive: archive, path: "nested.ckpt")
    }
  }

  @Test("state_dict wrapping is removed as diffusers does: only the deepest-wrapped keys are kept")
  func stateDictUnwrapping() throws {
    let source = try SafeTensorsFile(path: SingleFileFixtures.safetensors.path)
    var tensors: [String: Tensor] = [:]
    for k in source.keys { tensors["state_dict.state_dict." + k] = try source.tensor(k) }
    tensors["state_dict.epoch_marker"] = Tensor.zeros([1])  // one level only: dropped, as diffusers drops it
    tensors["top_level"] = Tensor.zeros([1])
    let checkpoint = try SingleFileCheckpoint(archive: TensorDictionary(tensors, name: "wrapped"), path: "wrapped")
    #expect(checkpoint.archive.keys.sorted() == source.keys.sorted())
  }
}
