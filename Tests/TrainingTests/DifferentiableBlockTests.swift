import Autograd
import Foundation
import IPAdapter
import Models
import NN
import TensorCore
import TestSupport
import Testing
import Training
import Weights

/// Frozen UNet blocks on the tape against diffusers' modules under `torch.autograd`
/// (tools/reference/gen_training.py, random weights): a `ResnetBlock2D` (6 → 8 channels, a 1×1
/// shortcut, time embedding) and a `BasicTransformerBlock` (GEGLU) with the official
/// `IPAttnProcessor2_0` on its cross-attention; outputs and every input gradient (and
/// `to_k_ip`/`to_v_ip`'s) ≤ 1e-5 relative.
@Suite struct DifferentiableBlockTests {
  static let golden = try! SafeTensorsFile(path: Fixtures.url("training/blocks.safetensors").path)

  func tensor(_ key: String) throws -> Tensor { try Self.golden.tensor(key).asFloat32() }

  func expectClose(_ a: Tensor?, _ key: String, _ tolerance: Float = 1e-5) throws {
    let error = Compare.relativeError(try #require(a, "\(key) missing"), try tensor(key))
    #expect(error <= tolerance, "\(key): relative error \(error)")
  }

  @Test func resnetBlockMatchesDiffusersUnderAutograd() throws {
    let block = ResnetBlock2D(inChannels: 6, outChannels: 8, timeEmbeddingChannels: 10, groups: 2, eps: 1e-5)
    try block.loadWeights(from: Self.golden, source: "blocks", options: LoadOptions(prefix: "resnet.param."))
    let differentiable = try DifferentiableResnetBlock(block)
    let tape = Tape()
    let x = tape.leaf(try tensor("resnet.x"))
    let temb = tape.leaf(try tensor("resnet.temb"))
    let y = try differentiable(x, timeEmbedding: temb, on: tape)
    try expectClose(y.value, "resnet.y")
    // The tape's forward agrees with the engine's inference block too (which takes silu(temb)).
    let activated = Tape().silu(Variable(constant: temb.value)).value
    #expect(Compare.relativeError(y.value, try block(x.value, timeEmbedding: activated)) <= 1e-5)
    try tape.backward(y, seed: try tensor("resnet.dy"))
    try expectClose(x.grad, "resnet.dx")
    try expectClose(temb.grad, "resnet.dtemb")
  }

  @Test func transformerBlockWithTheImageBranchMatchesDiffusersUnderAutograd() throws {
    let block = BasicTransformerBlock(dim: 16, heads: 2, contextDim: 12)
    try block.loadWeights(
      from: Self.golden, source: "blocks",
      options: LoadOptions(prefix: "transformer.param.", ignore: { $0.contains(".processor.") }))
    let differentiable = try DifferentiableTransformerBlock(
      block, toKIP: try tensor("transformer.param.attn2.processor.to_k_ip.weight"),
      toVIP: try tensor("transformer.param.attn2.processor.to_v_ip.weight"))
    let tape = Tape()
    let x = tape.leaf(try tensor("transformer.x"))
    let text = tape.leaf(try tensor("transformer.text"))
    let image = tape.leaf(try tensor("transformer.image"))
    let y = try differentiable(x, text: text, image: image, scale: 0.6, on: tape)
    try expectClose(y.value, "transformer.y")
    try tape.backward(y, seed: try tensor("transformer.dy"))
    try expectClose(x.grad, "transformer.dx")
    try expectClose(text.grad, "transformer.dtext")
    try expectClose(image.grad, "transformer.dimage")
    try expectClose(differentiable.crossAttention.toKIP.grad, "transformer.dto_k_ip")
    try expectClose(differentiable.crossAttention.toVIP.grad, "transformer.dto_v_ip")
  }
}
