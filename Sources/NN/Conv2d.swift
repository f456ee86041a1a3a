import TensorCore

/// A 2-D convolution over NHWC activations with keys `weight` `[out, in, k, k]` and `bias`.
///
/// matches: `torch.nn.Conv2d(in, out, k, stride, padding)` (groups 1, dilation 1) applied to the
/// NCHW equivalent of the input. `padding` may be asymmetric (diffusers' VAE encoder pads only the
/// bottom/right before its stride-2 convolutions).
public final class Conv2d: Module {
  public let weight: Parameter
  public let bias: Parameter?
  public let stride: Int
  public let padding: Padding2D
  private var kernel: Conv2DKernel?
  private var options = PrepareOptions()

  public init(
    _ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1,
    padding: Padding2D = .uniform(0), bias: Bool = true
  ) {
    self.weight = Parameter([outChannels, inChannels, kernelSize, kernelSize])
    self.bias = bias ? Parameter([outChannels]) : nil
    self.stride = stride
    self.padding = padding
  }

  public convenience init(
    _ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int, bias: Bool = true
  ) {
    self.init(
      inChannels, outChannels, kernelSize: kernelSize, stride: stride, padding: .uniform(padding), bias: bias)
  }

  public var inChannels: Int { weight.shape[1] }
  public var outChannels: Int { weight.shape[0] }

  public var parameters: [(String, Parameter)] {
    [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
  }

  /// The arithmetic the last `prepare` chose for the convolution (fp32 before any).
  public var precision: ComputePrecision { options.precision }

  public func prepare(_ options: PrepareOptions) throws {
    self.options = options
    kernel = try Conv2DKernel(
      weight: weight.value, bias: bias?.value, stride: stride, padding: padding,
      precision: options.precision)
  }

  /// Drops the packed weights; the next call packs them again.
  public func release() { kernel = nil }

  /// `conv(x) (+ accumulate)` for NHWC `x`.
  public func callAsFunction(_ x: Tensor, accumulate: Tensor? = nil) throws -> Tensor {
    if kernel == nil {
      guard weight.storedValue != nil else { throw ModuleError.notPrepared("Conv2d \(inChannels)→\(outChannels)") }
      try prepare(options)
    }
    return try kernel!(x, accumulate: accumulate)
  }
}
