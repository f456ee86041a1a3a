import Models
import NN
import TensorCore
import Weights

/// `lora`: LoRA files and face-embedding arrays. The first byte chooses:
/// - even: the rest is a NumPy `.npy` file (`NPYArray.parse`), then read as face embeddings
///   (`FaceEmbeddingFile` goes through the same parser);
/// - odd: the rest is a `.safetensors` LoRA file: `LoRAFile` pairs its tensors, then
///   `LoRAFusion.apply` fuses it (unmatched layers skipped) into a tiny fixed model — a linear,
///   a 3×3 and a 1×1 convolution under UNet names and a text-encoder linear — and removes it again;
///   the restored weights must equal the loaded ones.
enum LoRATarget {
  /// The model LoRAs are fused into: UNet-like and text-encoder-like layer names.
  final class TinyUNet: Module {
    let toQ = Linear(6, 5, bias: false)
    let convIn = Conv2d(3, 4, kernelSize: 3, padding: 1)
    let projIn = Conv2d(4, 4, kernelSize: 1)
    var children: [(String, any Module)] {
      [("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", toQ), ("conv_in", convIn),
       ("down_blocks.0.attentions.0.proj_in", projIn)]
    }
  }
  final class TinyText: Module {
    let q = Linear(3, 3)
    var children: [(String, any Module)] { [("encoder.layers.0.self_attn.q_proj", q)] }
  }

  nonisolated(unsafe) static var models: (TinyUNet, TinyText)? = nil

  static func run(_ input: [UInt8]) throws {
    guard let mode = input.first else { return }
    let body = Array(input.dropFirst())
    if mode & 1 == 0 {
      let t = try NPYArray.parse(body, path: "<fuzz>", maxElements: 1 << 16)
      check(t.count == t.shape.reduce(1, *), "NPY element count")
      TensorReading.touch(t)
      return
    }
    if models == nil {
      let unet = TinyUNet()
      let text = TinyText()
      try unet.fillWithRandomWeights(seed: 1)
      try text.fillWithRandomWeights(seed: 2)
      models = (unet, text)
    }
    let (unet, text) = models!
    let targets: [LoRAComponent: LoRATargetTable] = [
      .unet: LoRATargetTable(component: .unet, model: unet), .textEncoder: LoRATargetTable(component: .textEncoder, model: text),
    ]
    let loaded = unet.namedParameters().map { $0.1.loadedValue.scalars() } + text.namedParameters().map { $0.1.loadedValue.scalars() }
    let path = Scratch.write(body, name: "lora.safetensors")
    let file = try LoRAFile(path: path)
    for layer in file.layers { check(layer.rank > 0 && layer.up.shape[1] == layer.rank, "paired matrices disagree") }
    defer {
      _ = try? LoRAFusion.apply([], to: targets)
      let restored = unet.namedParameters().map { $0.1.value.scalars() } + text.namedParameters().map { $0.1.value.scalars() }
      check(zip(loaded, restored).allSatisfy { $0.elementsEqual($1) { $0.bitPattern == $1.bitPattern } }, "weights not restored")
    }
    let report = try LoRAFusion.apply([WeightedLoRA(file, weight: 0.75)], to: targets, ignoreUnmatched: true)
    check(report.totalFused <= 4, "more layers fused than the model has")
    _ = try unet.toQ(Tensor.zeros([1, 6]))
  }
}
