import Foundation
import IPAdapter
import Imaging
import Models
import NN
import TensorCore
import Testing
import TestSupport

/// FaceID inputs beyond the reference parity: the Resampler over raw face embeddings
/// (ip-adapter-faceid-portrait_sdxl_unnorm, as ComfyUI_IPAdapter_plus feeds it) and the input checks.
@Suite struct FaceIDBehaviourTests {
  /// A tiny random Resampler taking 24-d embeddings (the portrait-unnorm shape: 16 queries).
  static func unnormAdapter() throws -> IPAdapter {
    let shape = Resampler.Shape(dim: 32, depth: 2, heads: 1, queries: 16, embeddingDim: 24, outputDim: 20)
    let projection = Resampler(shape)
    try projection.fillWithRandomWeights(seed: 3, dtype: .float32)
    return IPAdapter(path: "portrait-unnorm", variant: .plus(shape), projection: projection, attention: nil)
  }

  @Test func resamplerOverFaceEmbeddingsReadsEachFaceAsAOneTokenSequence() throws {
    let adapter = try Self.unnormAdapter()
    var g = SeededGenerator(seed: 9)
    let faces = try Tensor(shape: [2, 24], floats: (0..<48).map { _ in Float.random(in: -2...2, using: &g) })
    let embeds = try ImagePrompt.faceEmbeds(adapter: adapter, faces: faces)
    #expect(embeds.conditional.shape == [1, 32, 20] && embeds.imageCount == 2)
    for i in 0..<2 {
      let one = try adapter.projection(faces.slice(rows: i..<(i + 1)).reshaped([1, 1, 24]))
      let block = Array(embeds.conditional.scalars()[(i * 16 * 20)..<((i + 1) * 16 * 20)])
      #expect(block == one.scalars())
    }
    let zero = try adapter.projection(Tensor.zeros([1, 1, 24])).scalars()
    #expect(Array(embeds.unconditional.scalars()[0..<(16 * 20)]) == zero)
  }

  @Test func faceInputsThatDoNotFitAreRefused() throws {
    let adapter = try IPAdapter(path: Fixtures.url("faceid/ip-adapter-faceid_sd15.bin").path, unet: nil)
    for faces in [Tensor.zeros([1, 23]), Tensor.zeros([24]), Tensor.full([1, 24], .nan)] {
      #expect(throws: IPAdapterError.self) { _ = try ImagePrompt.faceEmbeds(adapter: adapter, faces: faces) }
    }
    let plain = try IPAdapter(path: Fixtures.url("tiny-ip-adapter/models/ip-adapter_sd15.safetensors").path, unet: nil)
    #expect(throws: IPAdapterError.self) { _ = try ImagePrompt.faceEmbeds(adapter: plain, faces: Tensor.zeros([1, 24])) }
    let plus = try IPAdapter(path: Fixtures.url("faceid/ip-adapter-faceid-plus_sd15.bin").path, unet: nil)
    // FaceID-Plus without an encoder, or with a crop count that differs from the face count.
    #expect(throws: IPAdapterError.self) { _ = try ImagePrompt.faceEmbeds(adapter: plus, faces: Tensor.zeros([1, 24])) }
    let encoder = try ImagePromptEncoder(folder: Fixtures.url("tiny-ip-adapter/models/image_encoder"))
    let crop = try Image(contentsOfFile: Fixtures.url("faceid/face-crop.png").path)
    #expect(throws: IPAdapterError.self) {
      _ = try ImagePrompt.faceEmbeds(adapter: plus, faces: Tensor.zeros([2, 24]), encoder: encoder, faceImages: [crop])
    }
  }
}
