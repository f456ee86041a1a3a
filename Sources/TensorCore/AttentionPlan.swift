import CDNNL

/// The oneDNN primitives of one attention geometry, created once and cached.
///
/// For one head and one block of `rows` queries:
/// - `scores`: `S[rows × Lk] = scale · Q_blk[rows × D] · Kᵀ[D × Lk]` (brgemm matmul; `Kᵀ` is packed
///   once per head into the layout the kernel wants, by `packKey`);
/// - `mix` / `mixAccumulate`: `O[rows × D] (+)= P[rows × Lk] · V[Lk × D]` writing straight into the
///   strided output (`V` packed by `packValue`).
/// Primitives run single-threaded inside TensorCore's parallel loop (one head/block per thread),
/// each thread with its own scratchpad and stream.
/// `@unchecked Sendable`: immutable after init except oneDNN handles, which are thread-safe to execute.
final class AttentionPlan: @unchecked Sendable {
  let rows: Int
  let keys: Int
  let headDim: Int
  let scores: DNNLPrimitive
  let mix: DNNLPrimitive
  let mixAccumulate: DNNLPrimitive
  /// Row softmax over `S` in place (oneDNN's vectorised kernel; used when no causal mask applies).
  let softmax: DNNLPrimitive
  let keyPackedDesc: dnnl_memory_desc_t
  let valuePackedDesc: dnnl_memory_desc_t
  let keyPlainDesc: dnnl_memory_desc_t
  let valuePlainDesc: dnnl_memory_desc_t
  let packKey: DNNLReorder
  let packValue: DNNLReorder
  let scratchpadBytes: Int

  struct Key: Hashable {
    let rows: Int, keys: Int, headDim: Int, queryStride: Int, keyStride: Int, outStride: Int
    let scale: Float
  }

  init(_ key: Key) throws {
    rows = key.rows
    keys = key.keys
    headDim = key.headDim
    let (m, n, d) = (key.rows, key.keys, key.headDim)
    let f32 = dnnl_f32

    func matmul(
      src: dnnl_memory_desc_t, weights: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, scale: Float?,
      accumulate: Bool, what: String
    ) throws -> DNNLPrimitive {
      var s = src
      var w = weights
      var o = dst
      var desc = dnnl_matmul_desc_t()
      try DNNL.check(dnnl_matmul_desc_init(&desc, &s, &w, nil, &o), "dnnl_matmul_desc_init")
      var attr: dnnl_primitive_attr_t?
      try DNNL.check(dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create")
      defer { dnnl_primitive_attr_destroy(attr) }
      try DNNL.check(
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "set_scratchpad_mode")
      if var scale {
        try DNNL.check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale), "set_output_scales")
      }
      if accumulate {
        var ops: dnnl_post_ops_t?
        try DNNL.check(dnnl_post_ops_create(&ops), "dnnl_post_ops_create")
        defer { dnnl_post_ops_destroy(ops) }
        try DNNL.check(dnnl_post_ops_append_sum(ops, 1.0), "dnnl_post_ops_append_sum")
        try DNNL.check(dnnl_primitive_attr_set_post_ops(attr, ops), "dnnl_primitive_attr_set_post_ops")
      }
      return try withUnsafePointer(to: &desc) {
        try DNNLPrimitive(operation: UnsafeRawPointer($0), attributes: attr, what: what)
      }
    }

    let q = try DNNL.memoryDesc(dims: [m, d], strides: [key.queryStride, 1], type: f32)
    let kAny = try DNNL.memoryDesc(dims: [d, n], tag: dnnl_format_tag_any, type: f32)
    let s = try DNNL.memoryDesc(dims: [m, n], tag: dnnl_ab, type: f32)
    scores = try matmul(
      src: q, weights: kAny, dst: s, scale: key.scale, accumulate: false,
      what: "attention scores [\(m)×\(d)]·[\(d)×\(n)]")
    let vAny = try DNNL.memoryDesc(dims: [n, d], tag: dnnl_format_tag_any, type: f32)
    let o = try DNNL.memoryDesc(dims: [m, d], strides: [key.outStride, 1], type: f32)
    mix = try matmul(
      src: s, weights: vAny, dst: o, scale: nil, accumulate: false,
      what: "attention values [\(m)×\(n)]·[\(n)×\(d)]")
    mixAccumulate = try matmul(
      src: s, weights: vAny, dst: o, scale: nil, accumulate: true,
      what: "attention values (accumulate) [\(m)×\(n)]·[\(n)×\(d)]")

    var sm = dnnl_softmax_v2_desc_t()
    var sDesc = s
    try DNNL.check(
      dnnl_softmax_v2_forward_desc_init(&sm, dnnl_forward_inference, dnnl_softmax_accurate, &sDesc, &sDesc, 1),
      "dnnl_softmax_v2_forward_desc_init")
    var smAttr: dnnl_primitive_attr_t?
    try DNNL.check(dnnl_primitive_attr_create(&smAttr), "dnnl_primitive_attr_create")
    defer { dnnl_primitive_attr_destroy(smAttr) }
    try DNNL.check(dnnl_primitive_attr_set_scratchpad_mode(smAttr, dnnl_scratchpad_mode_user), "scratchpad mode")
    softmax = try withUnsafePointer(to: &sm) {
      try DNNLPrimitive(operation: UnsafeRawPointer($0), attributes: smAttr, what: "attention softmax [\(m)×\(n)]")
    }
    keyPackedDesc = scores.memoryDesc(dnnl_query_weights_md)
    valuePackedDesc = mix.memoryDesc(dnnl_query_weights_md)
    guard DNNL.equal(valuePackedDesc, mixAccumulate.memoryDesc(dnnl_query_weights_md)) else {
      throw DNNLError.status(call: "attention value layouts differ between mix primitives", code: -1)
    }
    // Kᵀ as stored: element (dd, j) of head h at K[j·ld + h·D + dd] → strides [1, ld].
    keyPlainDesc = try DNNL.memoryDesc(dims: [d, n], strides: [1, key.keyStride], type: f32)
    valuePlainDesc = try DNNL.memoryDesc(dims: [n, d], strides: [key.keyStride, 1], type: f32)
    packKey = try DNNLReorder(from: keyPlainDesc, to: keyPackedDesc)
    packValue = try DNNLReorder(from: valuePlainDesc, to: valuePackedDesc)
    scratchpadBytes = max(
      scores.scratchpadBytes, mix.scratchpadBytes, mixAccumulate.scratchpadBytes, softmax.scratchpadBytes,
      packKey.scratchpadBytes, packValue.scratchpadBytes)
  }

  var keyPackedBytes: Int { DNNL.byteSize(keyPackedDesc) }
  var valuePackedBytes: Int { DNNL.byteSize(valuePackedDesc) }

  nonisolated(unsafe) private static var cache: [Key: AttentionPlan] = [:]
  private static let lock = KernelLock()

  static func plan(_ key: Key) throws -> AttentionPlan {
    lock.lock()
    defer { lock.unlock() }
    if let p = cache[key] { return p }
    let p = try AttentionPlan(key)
    cache[key] = p
    return p
  }
}

/// A cached oneDNN reorder (layout conversion) primitive.
/// `@unchecked Sendable`: wraps a oneDNN primitive (an opaque C handle, safe to execute concurrently).
final class DNNLReorder: @unchecked Sendable {
  let descriptor: dnnl_primitive_desc_t
  let primitive: dnnl_primitive_t

  init(from: dnnl_memory_desc_t, to: dnnl_memory_desc_t) throws {
    var f = from
    var t = to
    var attr: dnnl_primitive_attr_t?
    try DNNL.check(dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create")
    defer { dnnl_primitive_attr_destroy(attr) }
    try DNNL.check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad mode")
    var pd: dnnl_primitive_desc_t?
    try DNNL.check(
      dnnl_reorder_primitive_desc_create(&pd, &f, DNNL.engine, &t, DNNL.engine, attr),
      "dnnl_reorder_primitive_desc_create")
    var p: dnnl_primitive_t?
    let status = dnnl_primitive_create(&p, pd)
    if status != dnnl_success {
      dnnl_primitive_desc_destroy(pd)
      throw DNNLError.status(call: "dnnl_primitive_create(reorder)", code: Int(status.rawValue))
    }
    descriptor = pd!
    primitive = p!
  }

  var scratchpadBytes: Int { DNNL.byteSize(dnnl_primitive_desc_query_md(descriptor, dnnl_query_scratchpad_md, 0).pointee) }

  deinit {
    dnnl_primitive_destroy(primitive)
    dnnl_primitive_desc_destroy(descriptor)
  }
}

/// Per-thread execution context for oneDNN primitives run inside a parallel loop: its own stream,
/// scratchpad and reusable memory objects (handles are re-pointed per call).
final class DNNLWorker {
  let stream: dnnl_stream_t
  let scratchpad: UnsafeMutableRawPointer
  let scratchpadBytes: Int
  private var memories: [DNNLMemory] = []

  init(scratchpadBytes: Int) throws {
    var s: dnnl_stream_t?
    try DNNL.check(
      dnnl_stream_create(&s, DNNL.engine, dnnl_stream_default_flags.rawValue), "dnnl_stream_create")
    stream = s!
    self.scratchpadBytes = max(scratchpadBytes, 64)
    scratchpad = UnsafeMutableRawPointer.allocate(byteCount: self.scratchpadBytes, alignment: 64)
  }

  deinit {
    dnnl_stream_destroy(stream)
    scratchpad.deallocate()
  }

  /// Memory object number `slot` described by `desc`, pointing at `pointer`.
  func memory(_ slot: Int, _ desc: dnnl_memory_desc_t, _ pointer: UnsafeRawPointer) throws -> dnnl_memory_t {
    while memories.count <= slot { memories.append(try DNNLMemory(desc, pointer: nil)) }
    if !DNNL.equal(memories[slot].desc, desc) { memories[slot] = try DNNLMemory(desc, pointer: nil) }
    try memories[slot].setPointer(UnsafeMutableRawPointer(mutating: pointer))
    return memories[slot].handle
  }

  func run(_ primitive: dnnl_primitive_t, _ args: [(Int32, dnnl_memory_t)], scratch: dnnl_memory_t) throws {
    var a = args.map { dnnl_exec_arg_t(arg: $0.0, memory: $0.1) }
    a.append(dnnl_exec_arg_t(arg: DNNL_ARG_SCRATCHPAD, memory: scratch))
    try DNNL.check(dnnl_primitive_execute(primitive, stream, Int32(a.count), &a), "dnnl_primitive_execute")
  }

  func wait() throws { try DNNL.check(dnnl_stream_wait(stream), "dnnl_stream_wait") }
}

/// Keys/values of the current head packed for the attention primitives, per source; re-packed only
/// when the worker moves to another (batch, head) or plan layout.
struct AttentionPackCache {
  private struct Entry {
    var batch: Int, head: Int
    var plan: ObjectIdentifier
    var key: UnsafeMutableRawPointer
    var value: UnsafeMutableRawPointer
    var keyBytes: Int, valueBytes: Int
  }
  private var entries: [Int: Entry] = [:]

  mutating func packed(
    source: Int, batch: Int, head: Int, plan: AttentionPlan, key: UnsafePointer<Float>,
    value: UnsafePointer<Float>, worker: DNNLWorker
  ) throws -> (UnsafeRawPointer, UnsafeRawPointer) {
    let id = ObjectIdentifier(plan)
    if let e = entries[source], e.batch == batch, e.head == head, e.plan == id {
      return (UnsafeRawPointer(e.key), UnsafeRawPointer(e.value))
    }
    var e = entries[source]
    if e == nil || e!.keyBytes < plan.keyPackedBytes || e!.valueBytes < plan.valuePackedBytes {
      if let old = e {
        old.key.deallocate()
        old.value.deallocate()
      }
      e = Entry(
        batch: -1, head: -1, plan: id,
        key: .allocate(byteCount: plan.keyPackedBytes, alignment: 64),
        value: .allocate(byteCount: plan.valuePackedBytes, alignment: 64),
        keyBytes: plan.keyPackedBytes, valueBytes: plan.valuePackedBytes)
    }
    let scratch = try worker.memory(8, dnnl_primitive_desc_query_md(plan.packKey.descriptor, dnnl_query_scratchpad_md, 0).pointee, worker.scratchpad)
    try worker.run(
      plan.packKey.primitive,
      [
        (DNNL_ARG_FROM, try worker.memory(9, plan.keyPlainDesc, key)),
        (DNNL_ARG_TO, try worker.memory(10, plan.keyPackedDesc, e!.key)),
      ], scratch: scratch)
    let scratch2 = try worker.memory(11, dnnl_primitive_desc_query_md(plan.packValue.descriptor, dnnl_query_scratchpad_md, 0).pointee, worker.scratchpad)
    try worker.run(
      plan.packValue.primitive,
      [
        (DNNL_ARG_FROM, try worker.memory(12, plan.valuePlainDesc, value)),
        (DNNL_ARG_TO, try worker.memory(13, plan.valuePackedDesc, e!.value)),
      ], scratch: scratch2)
    try worker.wait()
    e!.batch = batch
    e!.head = head
    e!.plan = id
    entries[source] = e
    return (UnsafeRawPointer(e!.key), UnsafeRawPointer(e!.value))
  }

  func release() {
    for e in entries.values {
      e.key.deallocate()
      e.value.deallocate()
    }
  }
}
