import CDNNL

/// Elementwise functions oneDNN can apply to a matmul result in the same pass.
public enum FusedActivation: Sendable, Hashable {
  case none
  /// Exact (erf) GELU, `torch.nn.functional.gelu(approximate="none")`.
  case gelu
  /// `x * sigmoid(x)`.
  case silu
}

/// `y = x · Wᵀ + b` over the last dimension of `x`, executed by oneDNN's matmul.
///
/// The weight keeps its checkpoint layout `[out, in]` (any storage dtype) until the first call
/// for a given row count; oneDNN then picks a packed layout and the weight is reordered into it
/// **once** and cached. Reference kernels are refused (`DNNLError.referenceImplementation`).
///
/// matches: `torch.nn.Linear` (optionally followed by GELU/SiLU and a residual add).
/// `@unchecked Sendable`: per-shape primitive caches are guarded by `KernelLock`; weights are immutable.
public final class LinearKernel: @unchecked Sendable {
  public let inFeatures: Int
  public let outFeatures: Int
  public let precision: ComputePrecision
  public let activation: FusedActivation

  private let weight: Tensor
  private let bias: Tensor?

  private struct Key: Hashable {
    let rows: Int
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
  private var packed: [(desc: dnnl_memory_desc_t, storage: TensorStorage)] = []
  private let lock = KernelLock()

  /// - Parameters:
  ///   - weight: `[out, in]` in any dtype.
  ///   - bias: `[out]` or nil.
  ///   - activation: applied after the bias (and before `accumulate` is added).
  public init(
    weight: Tensor, bias: Tensor?, activation: FusedActivation = .none,
    precision: ComputePrecision = .float32
  ) throws {
    guard weight.rank == 2 else {
      throw TensorError.invalidArgument("Linear weight must be [out, in], got \(weight.shape)")
    }
    if let bias, bias.shape != [weight.shape[0]] {
      throw TensorError.shapeMismatch(
        operation: "Linear bias", expected: [weight.shape[0]], actual: bias.shape)
    }
    self.outFeatures = weight.shape[0]
    self.inFeatures = weight.shape[1]
    self.weight = weight
    self.bias = bias?.asFloat32()
    self.activation = activation
    self.precision = precision
  }

  /// Applies the layer to `x` (`[..., in]`, Float32) giving `[..., out]`. With `accumulate`
  /// (same shape as the output) the result is `act(x·Wᵀ + b) + accumulate`.
  public func callAsFunction(_ x: Tensor, accumulate: Tensor? = nil) throws -> Tensor {
    guard x.rank >= 1, x.shape[x.rank - 1] == inFeatures else {
      throw TensorError.shapeMismatch(
        operation: "Linear input", expected: [-1, inFeatures], actual: x.shape)
    }
    var outShape = x.shape
    outShape[outShape.count - 1] = outFeatures
    if let accumulate, accumulate.shape != outShape {
      throw TensorError.shapeMismatch(
        operation: "Linear residual", expected: outShape, actual: accumulate.shape)
    }
    let rows = x.count / inFeatures
    var out: Tensor
    if let accumulate {
      out = accumulate.asFloat32()
      out.makeUnique()
    } else {
      out = Tensor(uninitializedShape: outShape)
    }
    if rows == 0 { return out }
    let plan = try self.plan(for: Key(rows: rows, accumulate: accumulate != nil))
    let source = precision == .float32 ? x.asFloat32() : x.converted(to: .bfloat16)
    let p = plan.primitive
    let src = try DNNLMemory(
      p.memoryDesc(dnnl_query_src_md), pointer: UnsafeMutableRawPointer(mutating: source.rawPointer))
    let wei = try DNNLMemory(p.memoryDesc(dnnl_query_weights_md), pointer: plan.weights.pointer)
    let dst = try DNNLMemory(p.memoryDesc(dnnl_query_dst_md), pointer: out.mutableFloatPointer)
    var args: [(Int32, dnnl_memory_t)] = [
      (DNNL_ARG_SRC, src.handle), (DNNL_ARG_WEIGHTS, wei.handle), (DNNL_ARG_DST, dst.handle),
    ]
    var biasMemory: DNNLMemory?
    if let bias {
      let md = try DNNL.memoryDesc(dims: [1, outFeatures], tag: dnnl_ab, type: dnnl_f32)
      biasMemory = try DNNLMemory(md, pointer: UnsafeMutableRawPointer(mutating: bias.rawPointer))
      args.append((DNNL_ARG_BIAS, biasMemory!.handle))
    }
    try p.execute(args)
    withExtendedLifetime((source, biasMemory, src, wei, dst)) {}
    FlopCounter.add(2 * rows * inFeatures * outFeatures)
    return out
  }

  /// Name of the oneDNN implementation used for `rows` input rows.
  public func implementation(rows: Int) throws -> String {
    try plan(for: Key(rows: rows, accumulate: false)).primitive.implementation
  }

  private func plan(for key: Key) throws -> Plan {
    lock.lock()
    defer { lock.unlock() }
    if let plan = plans[key] { return plan }
    let t = DNNL.dataType(precision.dnnlType)
    var src = try DNNL.memoryDesc(dims: [key.rows, inFeatures], tag: dnnl_ab, type: t)
    var wei = try DNNL.memoryDesc(dims: [inFeatures, outFeatures], tag: dnnl_format_tag_any, type: t)
    var dst = try DNNL.memoryDesc(dims: [key.rows, outFeatures], tag: dnnl_ab, type: dnnl_f32)
    var biasDesc = try DNNL.memoryDesc(dims: [1, outFeatures], tag: dnnl_ab, type: dnnl_f32)
    var desc = dnnl_matmul_desc_t()
    let hasBias = bias != nil
    try withUnsafePointer(to: &biasDesc) { biasPointer in
      try DNNL.check(
        dnnl_matmul_desc_init(&desc, &src, &wei, hasBias ? biasPointer : nil, &dst),
        "dnnl_matmul_desc_init")
    }
    var attr: dnnl_primitive_attr_t?
    try DNNL.check(dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create")
    defer { dnnl_primitive_attr_destroy(attr) }
    if activation != .none || key.accumulate {
      var ops: dnnl_post_ops_t?
      try DNNL.check(dnnl_post_ops_create(&ops), "dnnl_post_ops_create")
      defer { dnnl_post_ops_destroy(ops) }
      switch activation {
      case .none: break
      case .gelu:
        try DNNL.check(
          dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_gelu_erf, 0, 0), "append gelu")
      case .silu:
        try DNNL.check(
          dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_swish, 1, 0), "append swish")
      }
      if key.accumulate {
        try DNNL.check(dnnl_post_ops_append_sum(ops, 1.0), "dnnl_post_ops_append_sum")
      }
      try DNNL.check(dnnl_primitive_attr_set_post_ops(attr, ops), "dnnl_primitive_attr_set_post_ops")
    }
    let what = "linear \(inFeatures)→\(outFeatures) on \(key.rows) rows"
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
    // PyTorch stores [out, in]; as the [in, out] matrix oneDNN multiplies by, that is layout `ba`.
    let from = try DNNL.memoryDesc(dims: [inFeatures, outFeatures], tag: dnnl_ba, type: dnnl_f32)
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
