import TensorCore
import TorchRandom

/// Every random choice of a training run as a pure function of the run's seed and the position
/// in the run: the order of the examples in each epoch and each micro-batch's draws. Nothing is
/// carried from one step to the next, so a run resumed at step `k` draws exactly what an
/// uninterrupted run draws from step `k` on (bit-identical resumption needs only the step).
///
/// Draws use torch's CPU generator (`TorchGenerator`: MT19937, `torch.randn`'s normals) seeded per
/// epoch and per micro-batch from the run seed. Condition dropout follows `tutorial_train.py`'s
/// `MyDataset`: one uniform number `u` per example, `u < p_image` drops the image, else
/// `u < p_image + p_text` the text, else `u < p_image + p_text + p_both` both.
public struct TrainingRandomness: Sendable {
  public let seed: UInt64
  /// `i_drop_rate`, `t_drop_rate`, `ti_drop_rate` (0.05 each in the official script).
  public var dropImage: Double = 0.05
  public var dropText: Double = 0.05
  public var dropBoth: Double = 0.05

  public init(seed: UInt64) { self.seed = seed }

  /// A generator for stream `stream` (0: epoch orders, 1: micro-batches) at `index`.
  func generator(_ stream: UInt64, _ index: Int) -> TorchGenerator {
    var z = seed &+ 0x9E37_79B9_7F4A_7C15 &* (UInt64(index) &* 2 &+ stream &+ 1)
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return TorchGenerator(seed: z ^ (z >> 31))
  }

  /// The order of the `count` examples in epoch `epoch` (a Fisher–Yates shuffle).
  public func order(epoch: Int, count: Int) -> [Int] {
    var g = generator(0, epoch)
    var order = Array(0..<count)
    guard count > 1 else { return order }
    for i in stride(from: count - 1, to: 0, by: -1) {
      let j = Int(UInt64(g.nextUInt32()) * UInt64(i + 1) >> 32)
      order.swapAt(i, j)
    }
    return order
  }

  /// The data-set indices of micro-batch `micro` (`batchSize` examples; epochs follow each other
  /// without a gap, so every batch is full).
  public func examples(micro: Int, batchSize: Int, count: Int) -> [Int] {
    var cached: (epoch: Int, order: [Int])?
    return (0..<batchSize).map { k in
      let position = micro * batchSize + k
      let epoch = position / count
      if cached?.epoch != epoch { cached = (epoch, order(epoch: epoch, count: count)) }
      return cached!.order[position % count]
    }
  }

  /// Micro-batch `micro`'s draws for `batchSize` latents of `latentShape` `[h, w, c]` (NHWC),
  /// timesteps in `0..<timesteps`.
  public func draws(micro: Int, batchSize: Int, latentShape: [Int], timesteps: Int) -> StepRandomness {
    var g = generator(1, micro)
    var textDropped: [Bool] = [], imageDropped: [Bool] = []
    for _ in 0..<batchSize {
      let u = Double(g.nextUInt32()) / 4_294_967_296
      let image = u < dropImage
      let text = !image && u < dropImage + dropText
      let both = !image && !text && u < dropImage + dropText + dropBoth
      imageDropped.append(image || both)
      textDropped.append(text || both)
    }
    let steps = (0..<batchSize).map { _ in Int(UInt64(g.nextUInt32()) * UInt64(timesteps) >> 32) }
    let (h, w, c) = (latentShape[0], latentShape[1], latentShape[2])
    let vaeNoise = g.randn(nchw: [batchSize, c, h, w], layout: .nhwc)
    let noise = g.randn(nchw: [batchSize, c, h, w], layout: .nhwc)
    let offset = g.randn(nchw: [batchSize, c], layout: .nchw)
    return StepRandomness(
      vaeNoise: vaeNoise, noise: noise, offsetNoise: offset, timesteps: steps, dropText: textDropped, dropImage: imageDropped)
  }
}
