import CDNNL

/// Padding of a 2-D convolution, in pixels on each side.
public struct Padding2D: Hashable, Sendable {
  public var top: Int, left: Int, bottom: Int, right: Int

  public init(top: Int, left: Int, bottom: Int, right: Int) {
    (self.top, self.left, self.bottom, self.right) = (top, left, bottom, right)
  }

  /// The same padding on all four sides (PyTorch's `padding=p`).
  public static func uniform(_ p: Int) -> Padding2D { Padding2D(top: p, left: p, bottom: p, right: p) }
}

/// An activation oneDNN applies to a convolution's result in the same pass (after the bias and
/// any residual sum).
public enum ConvActivation: Sendable, Hashable {
  case none
  /// `max(x, 0)`.
  case relu
}

/// A 2-D convolution over NHWC Float32 activations, executed by oneDNN.
///
/// The weight keeps its checkpoint layout `[out, in, kh, kw]` (any storage dtype) until the first
/// call for a given input shape; then oneDNN picks its preferred blocked layout and the weight is
/// reordered into it **once** and cached (with the primitive) for every later call. A primitive for
/// which oneDNN picks a reference kernel is refused with `DNNLError.referenceImplementation`.
///
/// matches: `torch.nn.functional.conv2d` (any `groups`, `dilation`; equal or separate strides).
/// `@unchecked Sendable`: per-shape primitive caches are guarded by `KernelLock`; weights are immutable.
public final class Conv2DKernel: @unchecked Sendable {
  public let outChannels: Int
  public let inChannels: Int
  public let kernelSize: (height: Int, width: Int)
  /// Vertical stride (and horizontal, unless `strideWidth` differs).
  public let stride: Int
  /// Horizontal stride.
  public let strideWidth: Int
  public let padding: Padding2D
  public let precision: ComputePrecision
  /// Channel groups (`in` and `out` split into this many independent convolutions; depthwise when
  /// it equals the input channels).
  public let groups: Int
  /// Kernel dilation (height, width), 1 = none.
  public let dilation: (height: Int, width: Int)
  /// Applied to the result (after `accumulate` is added).
  public let activation: ConvActivation

  private let weight: Tensor
  private let bias: Tensor?

  private struct Key: Hashable {
    let n: Int, h: Int, w: Int
    let accumulate: Bool
  }

  private final class Plan {
    let primitive: DNNLPrimitive
    let weights: TensorStorage
    init(primitive: DNNLPrimitive, weights: TensorStorage) {
      self.primitive = primitive
      self.weights = weights
    }
  }

  private var plans: [Key: Plan] = [:]
  /// Packed weights per oneDNN layout, shared by the plans that want the same layout.
  private var packed: [(desc: dnnl_memory_desc_t, storage: TensorStorage)] = []
  private let lock = KernelLock()

  /// - Parameters:
  ///   - weight: `[out, in / groups, kh, kw]` in any dtype (a view into a checkpoint is fine).
  ///   - bias: `[out]` or nil.
  public init(
    weight: Tensor, bias: Tensor?, stride: Int = 1, strideWidth: Int? = nil, padding: Padding2D,
    precision: ComputePrecision = .float32, activation: ConvActivation = .none, groups: Int = 1,
    dilation: (height: Int, width: Int) = (1, 1)
  ) throws {
    guard weight.rank == 4 else {
      throw TensorError.invalidArgument("Conv2D weight must be [out, in, kh, kw], got \(weight.shape)")
    }
    if let bias, bias.shape != [weight.shape[0]] {
      throw TensorError.shapeMismatch(
        operation: "Conv2D bias", expected: [weight.shape[0]], actual: bias.shape)
    }
    guard stride >= 1, (strideWidth ?? stride) >= 1 else { throw TensorError.invalidArgument("Conv2D stride must be ≥ 1") }
    guard groups >= 1, weight.shape[0] % groups == 0 else {
      throw TensorError.invalidArgument("Conv2D: \(weight.shape[0]) output channels do not split into \(groups) groups")
    }
    guard dilation.height >= 1, dilation.width >= 1 else { throw TensorError.invalidArgument("Conv2D dilation must be ≥ 1") }
    self.groups = groups
    self.dilation = dilation
    self.outChannels = weight.shape[0]
    self.inChannels = weight.shape[1] * groups
    self.kernelSize = (weight.shape[2], weight.shape[3])
    self.stride = stride
    self.strideWidth = strideWidth ?? stride
    self.padding = padding
    self.precision = precision
    self.activation = activation
    self.weight = weight
    self.bias = bias?.asFloat32()
  }

  /// oneDNN's weight dimensions: `[out, in, kh, kw]`, or `[groups, out/g, in/g, kh, kw]`.
  private var weightDims: [Int] {
    groups == 1
      ? [outChannels, inChannels, kernelSize.height, kernelSize.width]
      : [groups, outChannels / groups, inChannels / groups, kernelSize.height, kernelSize.width]
  }

  /// Output spatial size for an input of `height × width`.
  public func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
    (
      (height + padding.top + padding.bottom - (kernelSize.height - 1) * dilation.height - 1) / stride + 1,
      (width + padding.left + padding.right - (kernelSize.width - 1) * dilation.width - 1) / strideWidth + 1
    )
  }

  /// Convolves `x` (`[N, H, W, in]`, Float32). When `accumulate` is given (`[N, Ho, Wo, out]`),
  /// the result is `conv(x) + accumulate` computed in one pass (residual connections).
  public func callAsFunction(_ x: Tensor, accumulate: Tensor? = nil) throws -> Tensor {
    guard x.rank == 4, x.shape[3] == inChannels else {
      throw TensorError.shapeMismatch(
        operation: "Conv2D input (NHWC)", expected: [-1, -1, -1, inChannels], actual: x.shape)
    }
    let (n, h, w) = (x.shape[0], x.shape[1], x.shape[2])
    let (ho, wo) = outputSize(height: h, width: w)
    guard ho > 0, wo > 0 else {
      throw TensorError.invalidArgument("Conv2D input \(h)×\(w) is smaller than the kernel")
    }
    if let accumulate, accumulate.shape != [n, ho, wo, outChannels] {
      throw TensorError.shapeMismatch(
        operation: "Conv2D residual", expected: [n, ho, wo, outChannels], actual: accumulate.shape)
    }
    let plan = try self.plan(for: Key(n: n, h: h, w: w, accumulate: accumulate != nil))

    var out: Tensor
    if let accumulate {
      out = accumulate.asFloat32()
      out.makeUnique()
    } else {
      out = Tensor(uninitializedShape: [n, ho, wo, outChannels])
    }
    let source = precision == .float32 ? x.asFloat32() : x.converted(to: .bfloat16)
    let p = plan.primitive
    let src = try DNNLMemory(p.memoryDesc(dnnl_query_src_md), pointer: UnsafeMutableRawPointer(mutating: source.rawPointer))
    let wei = try DNNLMemory(p.memoryDesc(dnnl_query_weights_md), pointer: plan.weights.pointer)
    let dst = try DNNLMemory(p.memoryDesc(dnnl_query_dst_md), pointer: out.mutableFloatPointer)
    var args: [(Int32, dnnl_memory_t)] = [
      (DNNL_ARG_SRC, src.handle), (DNNL_ARG_WEIGHTS, wei.handle), (DNNL_ARG_DST, dst.handle),
    ]
    var biasMemory: DNNLMemory?
    if let bias {
      let md = try DNNL.memoryDesc(dims: [outChannels], tag: dnnl_x, type: dnnl_f32)
      biasMemory = try DNNLMemory(md, pointer: UnsafeMutableRawPointer(mutating: bias.rawPointer))
      args.append((DNNL_ARG_BIAS, biasMemory!.handle))
    }
    try p.execute(args)
    withExtendedLifetime((source, biasMemory, src, wei, dst)) {}
    FlopCounter.add(2 * n * ho * wo * outChannels * (inChannels / groups) * kernelSize.height * kernelSize.width)
    return out
  }

  /// Name of the oneDNN implementation used for an input shape (for tests and the benchmark).
  public func implementation(batch: Int, height: Int, width: Int) throws -> String {
    try plan(for: Key(n: batch, h: height, w: width, accumulate: false)).primitive.implementation
  }

  private func plan(for key: Key) throws -> Plan {
    lock.lock()
    defer { lock.unlock() }
    if let plan = plans[key] { return plan }
    let (ho, wo) = outputSize(height: key.h, width: key.w)
    let t = DNNL.dataType(precision.dnnlType)
    var src = try DNNL.memoryDesc(dims: [key.n, inChannels, key.h, key.w], tag: dnnl_nhwc, type: t)
    var wei = try DNNL.memoryDesc(
      dims: weightDims, tag: dnnl_format_tag_any, type: t)
    var dst = try DNNL.memoryDesc(dims: [key.n, outChannels, ho, wo], tag: dnnl_nhwc, type: dnnl_f32)
    var biasDesc = try DNNL.memoryDesc(dims: [outChannels], tag: dnnl_x, type: dnnl_f32)
    var strides: [dnnl_dim_t] = [dnnl_dim_t(stride), dnnl_dim_t(strideWidth)]
    var padL: [dnnl_dim_t] = [dnnl_dim_t(padding.top), dnnl_dim_t(padding.left)]
    var padR: [dnnl_dim_t] = [dnnl_dim_t(padding.bottom), dnnl_dim_t(padding.right)]
    var dilates: [dnnl_dim_t] = [dnnl_dim_t(dilation.height - 1), dnnl_dim_t(dilation.width - 1)]
    var desc = dnnl_convolution_desc_t()
    let hasBias = bias != nil
    try withUnsafePointer(to: &biasDesc) { biasPointer in
      try DNNL.check(
        dnnl_dilated_convolution_forward_desc_init(
          &desc, dnnl_forward_inference, dnnl_convolution_direct, &src, &wei,
          hasBias ? biasPointer : nil, &dst, &strides, &dilates, &padL, &padR),
        "dnnl_dilated_convolution_forward_desc_init")
    }

    var attr: dnnl_primitive_attr_t?
    try DNNL.check(dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create")
    defer { dnnl_primitive_attr_destroy(attr) }
    if key.accumulate || activation != .none {
      var ops: dnnl_post_ops_t?
      try DNNL.check(dnnl_post_ops_create(&ops), "dnnl_post_ops_create")
      defer { dnnl_post_ops_destroy(ops) }
      if key.accumulate {
        try DNNL.check(dnnl_post_ops_append_sum(ops, 1.0), "dnnl_post_ops_append_sum")
      }
      if activation == .relu {
        try DNNL.check(dnnl_post_ops_append_eltwise(ops, 1.0, dnnl_eltwise_relu, 0, 0), "dnnl_post_ops_append_eltwise")
      }
      try DNNL.check(dnnl_primitive_attr_set_post_ops(attr, ops), "dnnl_primitive_attr_set_post_ops")
    }
    let what =
      "conv \(kernelSize.height)×\(kernelSize.width) \(inChannels)→\(outChannels) stride \(stride)×\(strideWidth) on [\(key.n), \(key.h), \(key.w)]"
    let primitive = try withUnsafePointer(to: &desc) {
      try DNNLPrimitive(operation: UnsafeRawPointer($0), attributes: attr, what: what)
    }
    let weights = try packedWeights(for: primitive.memoryDesc(dnnl_query_weights_md))
    let plan = Plan(primitive: primitive, weights: weights)
    plans[key] = plan
    return plan
  }

  private func packedWeights(for desc: dnnl_memory_desc_t) throws -> TensorStorage {
    if let hit = packed.first(where: { DNNL.equal($0.desc, desc) }) { return hit.storage }
    let plain = weight.asFloat32()  // pooled: the next layer's conversion reuses the block
    let from = try DNNL.memoryDesc(dims: weightDims, tag: groups == 1 ? dnnl_oihw : dnnl_goihw, type: dnnl_f32)
    let storage = TensorStorage(byteCount: DNNL.byteSize(desc), pooled: false)
    // `plain` is often a pooled conversion (half-precision checkpoints): it must outlive the
    // reorder that reads it, or its block could go back to the pool and be handed to another
    // thread mid-read (Swift may end a value's lifetime right after its last use).
    try withExtendedLifetime(plain) { try DNNL.reorder(from: from, plain.rawPointer, to: desc, storage.pointer) }
    packed.append((desc, storage))
    // The checkpoint's copy is not needed while the packed one lives: let a mapped file's pages go.
    weight.releaseResidentPages()
    return storage
  }
}
