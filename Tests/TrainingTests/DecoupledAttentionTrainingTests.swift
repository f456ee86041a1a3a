import Autograd
import Foundation
import IPAdapter
import Models
import TensorCore
import TestSupport
import Testing
import Training
import Weights

/// A UNet cross-attention layer with the decoupled image branch, trained: against the official
/// `IPAttnProcessor2_0` on a diffusers `Attention` under `torch.autograd`
/// (tools/reference/gen_training.py; 5 heads of 8, query 40, cross 50, 4 image tokens, λ 0.7):
/// output ≤ 1e-5, gradients of the hidden states, text, image tokens and `to_k_ip`/`to_v_ip`
/// ≤ 1e-5; the frozen weights get none.
@Suite struct DecoupledAttentionTrainingTests {
  static let golden = try! SafeTensorsFile(path: Fixtures.url("training/decoupled_attention.safetensors").path)

  func tensor(_ key: String) throws -> Tensor { try Self.golden.tensor(key).asFloat32() }

  func layer() throws -> TrainableDecoupledAttention {
    try TrainableDecoupledAttention(
      heads: 5, toQ: try tensor("to_q"), toK: try tensor("to_k"), toV: try tensor("to_v"), toOut: try tensor("to_out"),
      toOutBias: try tensor("to_out_bias"), toKIP: try tensor("to_k_ip"), toVIP: try tensor("to_v_ip"))
  }

  @Test func matchesTheOfficialProcessorUnderTorchAutograd() throws {
    let attention = try layer()
    let tape = Tape()
    let hidden = tape.leaf(try tensor("hidden"))
    let text = tape.leaf(try tensor("text"))
    let image = tape.leaf(try tensor("image"))
    let y = try attention(hidden, text: text, image: image, scale: 0.7, on: tape)
    #expect(Compare.relativeError(y.value, try tensor("y")) <= 1e-5)
    try tape.backward(y, seed: try tensor("dy"))
    for (name, v) in [("hidden", hidden), ("text", text), ("image", image), ("to_k_ip", attention.toKIP), ("to_v_ip", attention.toVIP)] {
      let error = Compare.relativeError(try #require(v.grad, "\(name)"), try tensor("d\(name)"))
      #expect(error <= 1e-5, "d\(name): relative error \(error)")
    }
    #expect(attention.toQ.grad == nil && attention.toK.grad == nil && attention.toOut.grad == nil)
  }

  /// λ = 0 is exactly the layer without the image branch, and `to_k_ip`/`to_v_ip` then get zero
  /// gradients.
  @Test func scaleZeroIsTheBaseLayer() throws {
    let attention = try layer()
    let tape = Tape()
    let hidden = Variable(constant: try tensor("hidden"))
    let text = Variable(constant: try tensor("text"))
    let y = try attention(hidden, text: text, image: Variable(constant: try tensor("image")), scale: 0, on: tape)
    let base = Tape()
    let q = try base.linear(hidden, weight: attention.toQ)
    let plain = try base.linear(
      try base.attention(q, try base.linear(text, weight: attention.toK), try base.linear(text, weight: attention.toV), heads: 5),
      weight: attention.toOut, bias: attention.toOutBias)
    #expect(y.value.scalars() == plain.value.scalars())
    try tape.backward(y, seed: try tensor("dy"))
    #expect(try #require(attention.toKIP.grad).scalars().allSatisfy { $0 == 0 })
  }
}

/// A new adapter starts as the training scripts start it, and a trained one is saved in the
/// released layout the engine loads.
@Suite struct AdapterCheckpointTests {
  @Test func newAdapterCopiesToKAndToVAndItsCheckpointLoadsForGeneration() throws {
    let unet = try ModelLoader.unet(Fixtures.url("tiny-sd15/unet"))
    let attention = AdapterInitialization.decoupledAttentionState(copying: unet)
    #expect(attention.count == 2 * unet.crossAttentionLayers.count)
    let first = unet.crossAttentionLayers[0].block.attn2
    #expect(try #require(attention["1.to_k_ip.weight"]).scalars() == first.toK.weight.value.asFloat32().scalars())
    #expect(try #require(attention["1.to_v_ip.weight"]).scalars() == first.toV.weight.value.asFloat32().scalars())
    // A Plus projection (from the tiny Plus adapter) trained zero steps, saved, loaded back.
    let source = try IPAdapter(path: Fixtures.url("tiny-ip-adapter/models/ip-adapter-plus_sd15.safetensors").path, unet: nil)
    var imageProj: [String: Tensor] = [:]
    for (key, p) in source.projection.namedParameters() { imageProj[key] = p.value.asFloat32() }
    let projection = try TrainableProjections.make(source.variant, state: imageProj)
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("trained-\(UUID().uuidString).safetensors").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try AdapterCheckpoint.write(imageProj: projection.state(), ipAdapter: attention, to: path)
    let loaded = try IPAdapter(path: path, unet: unet)
    #expect(loaded.variant == source.variant)
    var loadedAttention: [String: Tensor] = [:]
    for (key, p) in try #require(loaded.attention).namedParameters() { loadedAttention[key] = p.value.asFloat32() }
    #expect(Set(loadedAttention.keys) == Set(attention.keys))
    for (key, t) in attention { #expect(loadedAttention[key]?.scalars() == t.scalars(), "\(key)") }
  }
}
