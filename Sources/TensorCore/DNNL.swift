import CDNNL

/// Failures reported by oneDNN or by TensorCore's checks on what oneDNN chose.
public enum DNNLError: Error, CustomStringConvertible {
  case status(call: String, code: Int)
  /// oneDNN picked its reference (scalar) implementation, which is hundreds of times slower;
  /// this is a bug in how the primitive was described and must never pass silently.
  case referenceImplementation(primitive: String, implementation: String)

  public var description: String {
    switch self {
    case .status(let call, let code):
      "oneDNN call \(call) failed with status \(code)"
    case .referenceImplementation(let primitive, let implementation):
      "oneDNN chose its slow reference kernel '\(implementation)' for \(primitive); "
        + "the memory formats given to it are not supported by an optimised kernel"
    }
  }
}

/// The process-wide oneDNN CPU engine and stream.
enum DNNL {
  nonisolated(unsafe) static let engine: dnnl_engine_t = {
    var e: dnnl_engine_t?
    precondition(dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success, "oneDNN CPU engine")
    return e!
  }()

  nonisolated(unsafe) static let stream: dnnl_stream_t = {
    var s: dnnl_stream_t?
    precondition(
      dnnl_stream_create(&s, engine, dnnl_stream_default_flags.rawValue)
        == dnnl_success, "oneDNN stream")
    return s!
  }()

  @inline(__always)
  static func check(_ status: dnnl_status_t, _ call: @autoclosure () -> String) throws {
    if status != dnnl_success {
      throw DNNLError.status(call: call(), code: Int(status.rawValue))
    }
  }

  /// A plain memory descriptor with explicit strides (in elements).
  static func memoryDesc(
    dims: [Int], strides: [Int], type: dnnl_data_type_t
  ) throws -> dnnl_memory_desc_t {
    var md = dnnl_memory_desc_t()
    var d = dims.map { dnnl_dim_t($0) }
    var s = strides.map { dnnl_dim_t($0) }
    try check(
      dnnl_memory_desc_init_by_strides(&md, Int32(dims.count), &d, type, &s),
      "dnnl_memory_desc_init_by_strides")
    return md
  }

  /// A memory descriptor in one of oneDNN's named layouts (or `any`, letting the primitive pick).
  static func memoryDesc(
    dims: [Int], tag: dnnl_format_tag_t, type: dnnl_data_type_t
  ) throws -> dnnl_memory_desc_t {
    var md = dnnl_memory_desc_t()
    var d = dims.map { dnnl_dim_t($0) }
    try check(
      dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), &d, type, tag),
      "dnnl_memory_desc_init_by_tag")
    return md
  }

  static func dataType(_ dtype: DType) -> dnnl_data_type_t {
    switch dtype {
    case .float32: dnnl_f32
    case .float16: dnnl_f16
    case .bfloat16: dnnl_bf16
    }
  }

  /// The implementation name oneDNN picked for a primitive descriptor.
  static func implementation(of pd: const_dnnl_primitive_desc_t) -> String {
    var name: UnsafePointer<CChar>?
    _ = withUnsafeMutablePointer(to: &name) { p in
      dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, UnsafeMutableRawPointer(p))
    }
    return name.map { String(cString: $0) } ?? "?"
  }

  /// Throws if oneDNN fell back to a reference kernel.
  static func requireOptimised(_ pd: const_dnnl_primitive_desc_t, _ what: String) throws {
    let impl = implementation(of: pd)
    if impl.hasPrefix("ref") || impl.contains("ref:") || impl == "?" {
      throw DNNLError.referenceImplementation(primitive: what, implementation: impl)
    }
  }
}

/// An executable oneDNN primitive together with the descriptor it was created from.
/// `@unchecked Sendable`: an opaque oneDNN handle, safe to execute concurrently.
final class DNNLPrimitive: @unchecked Sendable {
  let descriptor: dnnl_primitive_desc_t
  let primitive: dnnl_primitive_t
  let implementation: String

  /// Creates the primitive from an operation descriptor; `what` names it in errors.
  init(
    operation: UnsafeRawPointer, attributes: dnnl_primitive_attr_t?, what: String,
    allowReference: Bool = false
  ) throws {
    var pd: dnnl_primitive_desc_t?
    try DNNL.check(
      dnnl_primitive_desc_create(&pd, operation, attributes, DNNL.engine, nil),
      "dnnl_primitive_desc_create(\(what))")
    if !allowReference {
      do { try DNNL.requireOptimised(pd!, what) } catch {
        dnnl_primitive_desc_destroy(pd)
        throw error
      }
    }
    var p: dnnl_primitive_t?
    let status = dnnl_primitive_create(&p, pd)
    if status != dnnl_success {
      dnnl_primitive_desc_destroy(pd)
      throw DNNLError.status(call: "dnnl_primitive_create(\(what))", code: Int(status.rawValue))
    }
    self.descriptor = pd!
    self.primitive = p!
    self.implementation = DNNL.implementation(of: pd!)
  }

  /// The memory descriptor the primitive wants for `query` (e.g. its weights layout).
  func memoryDesc(_ query: dnnl_query_t) -> dnnl_memory_desc_t {
    dnnl_primitive_desc_query_md(descriptor, query, 0).pointee
  }

  /// Bytes of scratch memory the primitive asks for.
  var scratchpadBytes: Int {
    let md = memoryDesc(dnnl_query_scratchpad_md)
    var copy = md
    return Int(dnnl_memory_desc_get_size(&copy))
  }

  /// Runs the primitive with the given (argument, memory) pairs and waits for it.
  func execute(_ arguments: [(Int32, dnnl_memory_t)]) throws {
    var args = arguments.map { dnnl_exec_arg_t(arg: $0.0, memory: $0.1) }
    try DNNL.check(
      dnnl_primitive_execute(primitive, DNNL.stream, Int32(args.count), &args),
      "dnnl_primitive_execute")
    try DNNL.check(dnnl_stream_wait(DNNL.stream), "dnnl_stream_wait")
  }

  deinit {
    dnnl_primitive_destroy(primitive)
    dnnl_primitive_desc_destroy(descriptor)
  }
}

/// A oneDNN memory object wrapping caller-owned bytes (no allocation by oneDNN).
final class DNNLMemory {
  let handle: dnnl_memory_t
  var desc: dnnl_memory_desc_t

  init(_ desc: dnnl_memory_desc_t, pointer: UnsafeMutableRawPointer?) throws {
    var d = desc
    var m: dnnl_memory_t?
    try DNNL.check(
      dnnl_memory_create(&m, &d, DNNL.engine, pointer), "dnnl_memory_create")
    self.handle = m!
    self.desc = desc
  }

  func setPointer(_ pointer: UnsafeMutableRawPointer) throws {
    try DNNL.check(dnnl_memory_set_data_handle(handle, pointer), "dnnl_memory_set_data_handle")
  }

  var byteCount: Int {
    var d = desc
    return Int(dnnl_memory_desc_get_size(&d))
  }

  deinit { dnnl_memory_destroy(handle) }
}

extension DNNL {
  /// Copies `src` (described by `from`) into `dst` (described by `to`) with a oneDNN reorder,
  /// converting layout and data type.
  static func reorder(
    from: dnnl_memory_desc_t, _ src: UnsafeRawPointer,
    to: dnnl_memory_desc_t, _ dst: UnsafeMutableRawPointer
  ) throws {
    var f = from
    var t = to
    var pd: dnnl_primitive_desc_t?
    try check(
      dnnl_reorder_primitive_desc_create(&pd, &f, engine, &t, engine, nil),
      "dnnl_reorder_primitive_desc_create")
    defer { dnnl_primitive_desc_destroy(pd) }
    var p: dnnl_primitive_t?
    try check(dnnl_primitive_create(&p, pd), "dnnl_primitive_create(reorder)")
    defer { dnnl_primitive_destroy(p) }
    let s = try DNNLMemory(from, pointer: UnsafeMutableRawPointer(mutating: src))
    let d = try DNNLMemory(to, pointer: dst)
    var args = [
      dnnl_exec_arg_t(arg: DNNL_ARG_FROM, memory: s.handle),
      dnnl_exec_arg_t(arg: DNNL_ARG_TO, memory: d.handle),
    ]
    try check(dnnl_primitive_execute(p, stream, 2, &args), "dnnl_primitive_execute(reorder)")
    try check(dnnl_stream_wait(stream), "dnnl_stream_wait")
  }

  static func byteSize(_ md: dnnl_memory_desc_t) -> Int {
    var m = md
    return Int(dnnl_memory_desc_get_size(&m))
  }

  /// True when two memory descriptors describe the same layout and type.
  static func equal(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
    var x = a
    var y = b
    return dnnl_memory_desc_equal(&x, &y) != 0
  }
}
