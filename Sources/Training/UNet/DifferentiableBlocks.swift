import Autograd
import Models
import NN
import TensorCore

/// A frozen linear layer on the tape: its forward pass is the engine's inference kernel (a
/// `Linear`, or a 1×1 `Conv2d` used per pixel), its backward pass the input gradient only, with the
/// float32 weight made when needed (`Tape.frozenLinear`); or, built from tensors, a float32 product.
struct FrozenLinear {
  let layer: Linear?
  let conv: Conv2d?
  let stored: (weight: Variable, bias: Variable?)?
  let inFeatures: Int, outFeatures: Int

  private init(layer: Linear?, conv: Conv2d?, stored: (weight: Variable, bias: Variable?)?, inFeatures: Int, outFeatures: Int) {
    (self.layer, self.conv, self.stored, self.inFeatures, self.outFeatures) = (layer, conv, stored, inFeatures, outFeatures)
  }

  init(_ layer: Linear) {
    self.init(layer: layer, conv: nil, stored: nil, inFeatures: layer.weight.shape[1], outFeatures: layer.weight.shape[0])
  }

  /// A per-pixel projection: a `Linear`, or a 1×1 `Conv2d`, as a transformer's `proj_in` / `proj_out`.
  init(projection module: any Module) throws {
    if let linear = module as? Linear {
      self.init(linear)
      return
    }
    guard let conv = module as? Conv2d, conv.weight.shape.count == 4, conv.weight.shape[2] == 1, conv.weight.shape[3] == 1,
      conv.stride == 1
    else { throw AutogradError.invalidArgument("a per-pixel projection must be a Linear or a 1×1 convolution") }
    self.init(layer: nil, conv: conv, stored: nil, inFeatures: conv.inChannels, outFeatures: conv.outChannels)
  }

  init(weight: Variable, bias: Variable?) {
    self.init(layer: nil, conv: nil, stored: (weight, bias), inFeatures: weight.shape[1], outFeatures: weight.shape[0])
  }

  /// The float32 weight `[out, in]`.
  var weightTensor: Tensor {
    if let stored { return stored.weight.value }
    if let layer { return layer.weight.value.asFloat32() }
    return conv!.weight.value.asFloat32().reshaped([outFeatures, inFeatures])
  }

  var biasTensor: Tensor? {
    if let stored { return stored.bias?.value }
    return (layer?.bias ?? conv?.bias).map { $0.value.asFloat32() }
  }

  func callAsFunction(_ x: Variable, on tape: Tape) throws -> Variable {
    if let stored { return try tape.linear(x, weight: stored.weight, bias: stored.bias) }
    let this = self
    if let layer {
      return try tape.frozenLinear(x, inFeatures: inFeatures, outFeatures: outFeatures, weight: { this.weightTensor }) { try layer($0) }
    }
    let conv = conv!
    let outFeatures = outFeatures
    return try tape.frozenLinear(x, inFeatures: inFeatures, outFeatures: outFeatures, weight: { this.weightTensor }) { value in
      let rows = value.count / value.shape.last!
      return try conv(value.reshaped([1, rows, 1, value.shape.last!])).reshaped(Array(value.shape.dropLast()) + [outFeatures])
    }
  }
}

/// A frozen convolution on the tape (square kernel, uniform padding): the forward pass is the
/// engine's inference convolution, the backward pass the input gradient only
/// (`Tape.frozenConv2d`).
struct FrozenConv {
  /// The input-gradient convolution (packed weights) or, for strided convolutions, the weight as
  /// a float32 matrix for `col2im`: made at the first backward pass and kept.
  final class AdjointCache {
    var kernel: Conv2DKernel?
    var matrix: Tensor?
  }
  let cache = AdjointCache()
  let layer: Conv2d
  let outChannels: Int
  let kernel: Int
  let stride: Int
  let padding: Int

  init(_ layer: Conv2d) throws {
    let p = layer.padding
    let w = layer.weight.value
    guard p.top == p.left, p.top == p.bottom, p.top == p.right, w.rank == 4, w.shape[2] == w.shape[3] else {
      throw AutogradError.invalidArgument("a frozen convolution needs a square kernel and uniform padding, got \(w.shape), \(p)")
    }
    self.layer = layer
    (outChannels, kernel, stride, padding) = (w.shape[0], w.shape[2], layer.stride, p.top)
  }

  func callAsFunction(_ x: Variable, on tape: Tape) throws -> Variable {
    let (layer, cache, padding) = (layer, cache, padding)
    return try tape.frozenConv2d(
      x, outChannels: outChannels, kernel: kernel, stride: stride, padding: padding,
      matrix: {
        if cache.matrix == nil { cache.matrix = Tape.convolutionMatrix(layer.weight.value) }
        return cache.matrix!
      },
      adjoint: { g in
        if cache.kernel == nil { cache.kernel = try Tape.adjointConvolution(layer.weight.value, padding: padding, precision: layer.precision) }
        return try cache.kernel!(g)
      }, forward: { try layer($0) })
  }
}

/// A frozen normalisation's affine weights on the tape.
struct FrozenNorm {
  let weight: Variable?
  let bias: Variable?
  let eps: Float
  let groups: Int?

  init(_ n: GroupNorm) {
    (weight, bias, eps, groups) = (Variable(constant: n.weight.value.asFloat32()), Variable(constant: n.bias.value.asFloat32()), n.eps, n.groups)
  }

  init(_ n: LayerNorm) {
    weight = n.weight.map { Variable(constant: $0.value.asFloat32()) }
    bias = n.bias.map { Variable(constant: $0.value.asFloat32()) }
    (eps, groups) = (n.eps, nil)
  }

  func callAsFunction(_ x: Variable, on tape: Tape) throws -> Variable {
    if let groups { return try tape.groupNorm(x, groups: groups, weight: weight, bias: bias, eps: eps) }
    return try tape.layerNorm(x, weight: weight, bias: bias, eps: eps)
  }
}

/// A UNet ResNet block with frozen weights, differentiable with respect to its input and the
/// time embedding (the path from the loss back to an adapter's tokens crosses these).
///
/// matches: diffusers `ResnetBlock2D` (default `time_embedding_norm`, eval mode):
/// `h = conv1(silu(norm1(x))) + time_emb_proj(silu(temb))`, `h = conv2(silu(norm2(h)))`,
/// `(shortcut(x) + h) / output_scale_factor`.
public final class DifferentiableResnetBlock {
  let block: ResnetBlock2D
  let norm1: FrozenNorm, conv1: FrozenConv, timeProj: FrozenLinear?, norm2: FrozenNorm, conv2: FrozenConv
  let shortcut: FrozenConv?
  let outputScaleFactor: Float

  public init(_ block: ResnetBlock2D) throws {
    self.block = block
    norm1 = FrozenNorm(block.norm1)
    conv1 = try FrozenConv(block.conv1)
    timeProj = block.timeEmbProj.map(FrozenLinear.init)
    norm2 = FrozenNorm(block.norm2)
    conv2 = try FrozenConv(block.conv2)
    shortcut = try block.convShortcut.map(FrozenConv.init)
    outputScaleFactor = block.outputScaleFactor
  }

  /// `x` `[B, H, W, C]`, `timeEmbedding` `[B, T]` (nil for blocks without one; `activated` when
  /// it has already been through the SiLU, as the UNet computes it once for all blocks). When
  /// neither input needs a gradient the engine's inference block computes the (constant) result.
  public func callAsFunction(_ x: Variable, timeEmbedding: Variable?, activated: Bool = false, on tape: Tape) throws -> Variable {
    if !x.requiresGrad, timeEmbedding?.requiresGrad != true {
      let t = timeEmbedding.map { activated ? $0.value : Ops.silu($0.value) }
      return Variable(constant: try block(x.value, timeEmbedding: t))
    }
    var h = try conv1(tape.silu(try norm1(x, on: tape)), on: tape)
    if let timeProj, let timeEmbedding {
      h = try tape.addPerSample(h, try timeProj(activated ? timeEmbedding : tape.silu(timeEmbedding), on: tape))
    }
    h = try conv2(tape.silu(try norm2(h, on: tape)), on: tape)
    let out = try tape.add(try shortcut?(x, on: tape) ?? x, h)
    return outputScaleFactor == 1 ? out : tape.scale(out, 1 / outputScaleFactor)
  }
}

/// A UNet transformer block with frozen weights and IP-Adapter's decoupled image branch in its
/// cross-attention (`to_k_ip`/`to_v_ip` trainable), differentiable with respect to its input,
/// the image tokens and those two weights.
///
/// matches: diffusers `BasicTransformerBlock` (`norm_type="layer_norm"`, GEGLU feed-forward) with
/// tencent-ailab/IP-Adapter's `IPAttnProcessor2_0` on `attn2` (`AttnProcessor2_0` on `attn1`):
/// `h = x + attn1(norm1(x))`, `h = h + attn2(norm2(h), text, image, λ)`, `h + ff(norm3(h))` with
/// `ff = net.2(a · gelu(gate))`, `[a, gate] = net.0.proj(·).chunk(2)`.
public final class DifferentiableTransformerBlock {
  let norm1: FrozenNorm, norm2: FrozenNorm, norm3: FrozenNorm
  let selfQ: FrozenLinear, selfK: FrozenLinear, selfV: FrozenLinear, selfOut: FrozenLinear, heads: Int
  public let crossAttention: TrainableDecoupledAttention
  let ffIn: FrozenLinear, ffOut: FrozenLinear

  public init(_ block: BasicTransformerBlock, toKIP: Tensor, toVIP: Tensor) throws {
    norm1 = FrozenNorm(block.norm1)
    norm2 = FrozenNorm(block.norm2)
    norm3 = FrozenNorm(block.norm3)
    heads = block.attn1.heads
    selfQ = FrozenLinear(block.attn1.toQ)
    selfK = FrozenLinear(block.attn1.toK)
    selfV = FrozenLinear(block.attn1.toV)
    selfOut = FrozenLinear(block.attn1.toOut)
    crossAttention = try TrainableDecoupledAttention(frozen: block.attn2, toKIP: toKIP, toVIP: toVIP)
    ffIn = FrozenLinear(block.ff.proj)
    ffOut = FrozenLinear(block.ff.out)
  }

  /// `x` `[B, L, C]`, `text` `[B, Lt, cross]`, `image` `[B, T, cross]`, λ = `scale`.
  public func callAsFunction(_ x: Variable, text: Variable, image: Variable, scale: Float, on tape: Tape) throws -> Variable {
    let n1 = try norm1(x, on: tape)
    let selfAttended = try tape.attention(try selfQ(n1, on: tape), try selfK(n1, on: tape), try selfV(n1, on: tape), heads: heads)
    var h = try tape.add(try selfOut(selfAttended, on: tape), x)
    h = try tape.add(try crossAttention(try norm2(h, on: tape), text: text, image: image, scale: scale, on: tape), h)
    let parts = try tape.chunkLast(try ffIn(try norm3(h, on: tape), on: tape), parts: 2)
    let ff = try ffOut(try tape.mul(parts[0], tape.gelu(parts[1])), on: tape)
    return try tape.add(ff, h)
  }
}
