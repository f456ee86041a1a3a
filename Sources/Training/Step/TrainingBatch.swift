import TensorCore

/// One batch of training examples after the data set's transforms, as `tutorial_train.py`'s
/// `collate_fn` hands it to the loop.
public struct TrainingBatch {
  /// The diffusion targets, NHWC `[B, R, R, 3]` in [−1, 1] (resize, centre crop, `Normalize(0.5, 0.5)`).
  public var images: Tensor
  /// The same images through the CLIP image processor, NHWC `[B, S, S, 3]` (the image prompts).
  public var clipPixels: Tensor
  /// The captions (replaced by "" where the text is dropped — see `StepRandomness`).
  public var texts: [String]
  /// SDXL's micro-conditioning per example (`add_time_ids`: original size, crop, target size —
  /// `TrainingDataset.targetPixelsSDXL`); nil for SD 1.x/2.x.
  public var timeIds: [[Float]]?
  /// The frozen encoders' outputs for these examples (a `TrainingFeatureCache`); when present,
  /// `images` and `clipPixels` are not read.
  public var precomputed: Precomputed?

  /// The frozen features of a batch, one row per example.
  public struct Precomputed {
    /// The VAE posterior, `[B, h, w, latent channels]` each.
    public var latentMean: Tensor
    public var latentLogVariance: Tensor
    /// The captions' text hidden states `[B, T, D]`.
    public var text: Tensor
    /// The image prompts' CLIP features, `[B, E]` or `[B, L, D]`.
    public var image: Tensor
    /// SDXL: the captions' pooled text embeddings `[B, P]` (nil for SD 1.x/2.x).
    public var pooled: Tensor?

    /// Stacks per-example features (no batch axis) into rows.
    public init(_ rows: [TrainingFeatureCache.Features]) throws {
      func stack(_ parts: [Tensor]) throws -> Tensor {
        try Ops.concatRows(parts.map { $0.reshaped([1] + $0.shape) })
      }
      latentMean = try stack(rows.map(\.latentMean))
      latentLogVariance = try stack(rows.map(\.latentLogVariance))
      text = try stack(rows.map(\.text))
      image = try stack(rows.map(\.image))
      let pooledRows = rows.compactMap(\.pooled)
      pooled = pooledRows.count == rows.count ? try stack(pooledRows) : nil
    }
  }

  public init(images: Tensor, clipPixels: Tensor, texts: [String], timeIds: [[Float]]? = nil) {
    self.images = images
    self.clipPixels = clipPixels
    self.texts = texts
    self.timeIds = timeIds
  }

  /// A batch of precomputed features (`--cache-dir`).
  public init(precomputed: Precomputed, texts: [String], timeIds: [[Float]]? = nil) {
    self.images = Tensor.zeros([0])
    self.clipPixels = Tensor.zeros([0])
    self.texts = texts
    self.timeIds = timeIds
    self.precomputed = precomputed
  }

  public var count: Int { texts.count }
}

/// Every random draw of one training step, explicit so that a step is reproducible (and a
/// resumed run bit-identical): drawn by `TrainingRandomness` in the CLI, fixed in tests.
public struct StepRandomness {
  /// The VAE posterior sample's noise, `[B, h, w, latent channels]` (`latent_dist.sample()`).
  public var vaeNoise: Tensor
  /// The diffusion noise ε, same shape.
  public var noise: Tensor
  /// `--noise-offset` noise `[B, latent channels]` (added as `offset · n[:, :, None, None]`), or nil.
  public var offsetNoise: Tensor?
  /// One timestep per sample in `0..<num_train_timesteps`.
  public var timesteps: [Int]
  /// Condition dropout per sample (classifier-free guidance training).
  public var dropText: [Bool]
  public var dropImage: [Bool]

  public init(
    vaeNoise: Tensor, noise: Tensor, offsetNoise: Tensor? = nil, timesteps: [Int], dropText: [Bool], dropImage: [Bool]
  ) {
    self.vaeNoise = vaeNoise
    self.noise = noise
    self.offsetNoise = offsetNoise
    self.timesteps = timesteps
    self.dropText = dropText
    self.dropImage = dropImage
  }
}
