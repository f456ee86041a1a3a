/// A pickle interpreter that understands only what a tensor state dict needs, written for this
/// engine (no Python, nothing imported or called): it turns the `data.pkl` of a `torch.save`
/// archive into `PickleValue` data.
///
/// Safety by construction: GLOBAL/STACK_GLOBAL resolve names against `AllowedGlobal` and refuse
/// anything else at once (`forbiddenGlobal`, naming it); REDUCE/NEWOBJ only "call" allowlisted
/// markers, which this code interprets (building a tensor reference, a dict, a number); every
/// length read from the input is checked against the bytes that remain before anything is
/// allocated; the interpreter is a loop (no recursion); tuple nesting is bounded; MARK, the stack
/// and the memo are validated on every use, so malformed input throws a typed error, never traps.
/// Everything the interpreter builds (strings, bytes, container slots, memo entries, copies made
/// by allowlisted calls such as `_codecs.encode` or `torch.Size` on a memoised value) is charged
/// against an allocation budget proportional to the pickle's size (`allocationBudget(forPickleBytes:)`),
/// so a small pickle that re-uses one large value many times is refused (`pickleTooComplex`)
/// long before it can exhaust memory.
///
/// matches: the opcode semantics of CPython `Lib/pickle.py` `_Unpickler` (protocols 2–5) and the
/// allowlist behaviour of `torch/_weights_only_unpickler.py` (torch 2.13), re-implemented.
/// Supported opcodes: PROTO FRAME STOP MARK POP POP_MARK DUP EMPTY_DICT EMPTY_LIST EMPTY_TUPLE
/// EMPTY_SET FROZENSET ADDITEMS TUPLE TUPLE1-3 DICT LIST SETITEM(S) APPEND(S) BINPUT LONG_BINPUT
/// MEMOIZE BINGET LONG_BINGET BININT BININT1 BININT2 LONG1 LONG4 BINFLOAT NONE NEWTRUE NEWFALSE
/// BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES
/// BINBYTES8 BYTEARRAY8 GLOBAL STACK_GLOBAL REDUCE BUILD NEWOBJ NEWOBJ_EX BINPERSID.
/// Limitations: the text opcodes of protocols 0/1 (INT, LONG, STRING, UNICODE, FLOAT, GET, PUT,
/// PERSID), INST/OBJ, the extension registry (EXT1/2/4) and out-of-band buffers are refused with
/// `unsupportedOpcode`; integers wider than 64 bits are kept only as "big int".
final class RestrictedUnpickler {
  /// Deepest tuple nesting accepted (state dicts need 3).
  static let maxTupleDepth = 64
  /// Highest tensor rank accepted.
  static let maxRank = 64
  /// Bytes charged per stack/container/memo slot (a `PickleValue` plus bookkeeping).
  static let slotCost = 32

  /// The allocation budget for a pickle of `count` bytes: 1 MiB plus 64 bytes per input byte.
  /// Real state dicts stay far below it (their unpickled values are a few times the pickle's size,
  /// see `WeightsTests`), while amplification by re-use of memoised values is cut off.
  static func allocationBudget(forPickleBytes count: Int) -> Int { (1 << 20) + 64 * count }

  let bytes: UnsafeRawBufferPointer
  let path: String
  private var position = 0
  private var stack: [PickleValue] = []
  private var marks: [Int] = []
  private var memo: [Int: PickleValue] = [:]
  private var containers: [AnyObject] = []
  /// Opcodes executed so far (bounds the work of walking the result).
  private(set) var opcodeCount = 0
  /// The protocol named by PROTO (0 if there was none).
  private(set) var protocolVersion = 0
  /// Bytes charged so far (see `allocationBudget(forPickleBytes:)`).
  private(set) var allocatedBytes = 0
  private let budget: Int

  /// An interpreter over `bytes` (the data.pkl record); `path` names the file in errors.
  init(bytes: UnsafeRawBufferPointer, path: String) {
    self.bytes = bytes
    self.path = path
    budget = Self.allocationBudget(forPickleBytes: bytes.count)
  }

  deinit { releaseGraph() }

  /// Empties every list and dict this interpreter created, breaking any reference cycles. The
  /// value `load()` returned is unusable afterwards.
  func releaseGraph() {
    stack.removeAll()
    memo.removeAll()
    for c in containers {
      if let list = c as? PickleList { list.items.removeAll() }
      if let dict = c as? PickleDict { dict.removeAll() }
    }
    containers.removeAll()
  }

  // MARK: Errors

  private func invalid(_ offset: Int, _ reason: String) -> TorchCheckpointError {
    .invalidPickle(path: path, offset: offset, reason: reason)
  }

  // MARK: Allocation budget

  /// Charges `count` bytes against the budget before they are allocated.
  private func charge(_ count: Int, _ at: Int) throws(TorchCheckpointError) {
    allocatedBytes += count
    guard allocatedBytes <= budget else {
      throw .pickleTooComplex(
        path: path,
        reason: "at byte \(at) it would allocate more than \(budget) bytes (1 MiB + 64 × its \(bytes.count) bytes): "
          + "values are copied far more often than a state dict needs")
    }
  }

  /// Charges the slots of `count` values.
  private func chargeSlots(_ count: Int, _ at: Int) throws(TorchCheckpointError) {
    try charge(count * Self.slotCost, at)
  }

  // MARK: Reading operands

  private func take(_ count: Int, _ opcode: String, _ at: Int) throws(TorchCheckpointError) -> UnsafeRawBufferPointer {
    guard count >= 0, count <= bytes.count - position else {
      throw .truncatedPickle(path: path, offset: at, opcode: opcode)
    }
    defer { position += count }
    return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
  }

  private func u8(_ opcode: String, _ at: Int) throws(TorchCheckpointError) -> Int {
    Int(try take(1, opcode, at)[0])
  }

  private func u16(_ opcode: String, _ at: Int) throws(TorchCheckpointError) -> Int {
    Int(UInt16(littleEndian: try take(2, opcode, at).loadUnaligned(as: UInt16.self)))
  }

  private func u32(_ opcode: String, _ at: Int) throws(TorchCheckpointError) -> UInt32 {
    UInt32(littleEndian: try take(4, opcode, at).loadUnaligned(as: UInt32.self))
  }

  private func u64(_ opcode: String, _ at: Int) throws(TorchCheckpointError) -> UInt64 {
    UInt64(littleEndian: try take(8, opcode, at).loadUnaligned(as: UInt64.self))
  }

  /// A length operand that must fit in what remains of the input.
  private func length(_ raw: UInt64, _ opcode: String, _ at: Int) throws(TorchCheckpointError) -> Int {
    guard raw <= UInt64(bytes.count - position) else {
      throw .truncatedPickle(path: path, offset: at, opcode: opcode)
    }
    return Int(raw)
  }

  private func line(_ opcode: String, _ at: Int) throws(TorchCheckpointError) -> String {
    var end = position
    while end < bytes.count && bytes[end] != 0x0A { end += 1 }
    guard end < bytes.count else { throw .truncatedPickle(path: path, offset: at, opcode: opcode) }
    let raw = UnsafeRawBufferPointer(rebasing: bytes[position..<end])
    position = end + 1
    guard let text = String(validating: raw, as: UTF8.self) else {
      throw invalid(at, "\(opcode) name is not valid UTF-8")
    }
    return text
  }

  private func utf8(_ raw: UnsafeRawBufferPointer, _ opcode: String, _ at: Int) throws(TorchCheckpointError) -> String {
    try charge(raw.count, at)
    guard let text = String(validating: raw, as: UTF8.self) else {
      throw invalid(at, "\(opcode) string is not valid UTF-8")
    }
    return text
  }

  /// The next `count` input bytes as an array (charged).
  private func copiedBytes(_ count: Int, _ opcode: String, _ at: Int) throws(TorchCheckpointError) -> [UInt8] {
    let raw = try take(count, opcode, at)
    try charge(count, at)
    return Array(raw)
  }

  // MARK: Stack

  private var floor: Int { marks.last ?? 0 }

  private func push(_ value: PickleValue, _ at: Int) throws(TorchCheckpointError) {
    try chargeSlots(1, at)
    stack.append(value)
  }

  private func pop(_ opcode: String, _ at: Int) throws(TorchCheckpointError) -> PickleValue {
    guard stack.count > floor else { throw invalid(at, "\(opcode) on an empty stack") }
    return stack.removeLast()
  }

  private func topIndex(_ opcode: String, _ at: Int) throws(TorchCheckpointError) -> Int {
    guard stack.count > floor else { throw invalid(at, "\(opcode) on an empty stack") }
    return stack.count - 1
  }

  private func popMark(_ opcode: String, _ at: Int) throws(TorchCheckpointError) -> [PickleValue] {
    guard let mark = marks.popLast() else { throw invalid(at, "\(opcode) without a MARK") }
    let items = Array(stack[mark...])
    stack.removeSubrange(mark...)
    return items
  }

  private func makeTuple(_ items: [PickleValue], _ at: Int) throws(TorchCheckpointError) -> PickleValue {
    try chargeSlots(items.count, at)
    let tuple = PickleTuple(items)
    guard tuple.depth <= Self.maxTupleDepth else {
      throw .nestingTooDeep(path: path, limit: Self.maxTupleDepth)
    }
    return .tuple(tuple)
  }

  private func newList(_ items: [PickleValue] = [], _ at: Int) throws(TorchCheckpointError) -> PickleValue {
    try chargeSlots(items.count + 1, at)
    let list = PickleList()
    list.items = items
    containers.append(list)
    return .list(list)
  }

  private func newDict(_ at: Int) throws(TorchCheckpointError) -> PickleDict {
    try chargeSlots(1, at)
    let dict = PickleDict()
    containers.append(dict)
    return dict
  }

  private func resolveGlobal(module: String, name: String, at: Int) throws(TorchCheckpointError) -> PickleValue {
    guard let global = AllowedGlobal.resolve(module: module, name: name) else {
      if module == "torch" && Self.knownUnsupportedDTypes.contains(name) {
        throw .unsupportedDType(path: path, offset: at, dtype: "torch.\(name)")
      }
      throw .forbiddenGlobal(path: path, offset: at, module: module, name: name)
    }
    return .global(global)
  }

  // MARK: Interpreter

  /// Runs the pickle up to STOP and returns the unpickled object.
  func load() throws(TorchCheckpointError) -> PickleValue {
    while true {
      let at = position
      guard position < bytes.count else {
        throw .truncatedPickle(path: path, offset: position, opcode: "STOP (the pickle ends before it)")
      }
      let op = bytes[position]
      position += 1
      opcodeCount += 1
      switch op {
      case 0x80:  // PROTO
        let version = try u8("PROTO", at)
        guard version <= 5 else { throw .unsupportedOpcode(path: path, offset: at, opcode: "PROTO \(version)") }
        protocolVersion = version
      case 0x95:  // FRAME: a length prefix for the bytes that follow; nothing to do but check it
        _ = try length(try u64("FRAME", at), "FRAME", at)
      case 0x2E:  // STOP
        guard let top = stack.popLast() else { throw invalid(at, "STOP with an empty stack") }
        guard marks.isEmpty else { throw invalid(at, "STOP inside an unclosed MARK") }
        return top
      case 0x28:  // MARK
        marks.append(stack.count)
      case 0x30:  // POP
        if stack.count > floor {
          stack.removeLast()
        } else if !marks.isEmpty {
          marks.removeLast()
        } else {
          throw invalid(at, "POP on an empty stack")
        }
      case 0x31:  // POP_MARK
        _ = try popMark("POP_MARK", at)
      case 0x32:  // DUP
        try push(stack[try topIndex("DUP", at)], at)
      case 0x7D:  // EMPTY_DICT
        try push(.dict(try newDict(at)), at)
      case 0x5D:  // EMPTY_LIST
        try push(try newList([], at), at)
      case 0x29:  // EMPTY_TUPLE
        try push(.tuple(PickleTuple([])), at)
      case 0x8F:  // EMPTY_SET
        try push(try newList([], at), at)
      case 0x91:  // FROZENSET
        try push(try newList(try popMark("FROZENSET", at), at), at)
      case 0x74:  // TUPLE
        try push(try makeTuple(try popMark("TUPLE", at), at), at)
      case 0x85, 0x86, 0x87:  // TUPLE1, TUPLE2, TUPLE3
        let n = Int(op - 0x84)
        guard stack.count - floor >= n else { throw invalid(at, "TUPLE\(n) needs \(n) items on the stack") }
        let items = Array(stack.suffix(n))
        stack.removeLast(n)
        try push(try makeTuple(items, at), at)
      case 0x64:  // DICT
        let items = try popMark("DICT", at)
        guard items.count % 2 == 0 else { throw invalid(at, "DICT with an odd number of items") }
        let dict = try newDict(at)
        try chargeSlots(items.count, at)
        for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }
        try push(.dict(dict), at)
      case 0x6C:  // LIST
        try push(try newList(try popMark("LIST", at), at), at)
      case 0x73:  // SETITEM
        let value = try pop("SETITEM", at)
        let key = try pop("SETITEM", at)
        guard case .dict(let dict) = stack[try topIndex("SETITEM", at)] else {
          throw invalid(at, "SETITEM on \(stack[stack.count - 1].kind), not a dict")
        }
        try chargeSlots(2, at)
        dict.set(key, value)
      case 0x75:  // SETITEMS
        let items = try popMark("SETITEMS", at)
        guard items.count % 2 == 0 else { throw invalid(at, "SETITEMS with an odd number of items") }
        guard case .dict(let dict) = stack[try topIndex("SETITEMS", at)] else {
          throw invalid(at, "SETITEMS on \(stack[stack.count - 1].kind), not a dict")
        }
        try chargeSlots(items.count, at)
        for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }
      case 0x61:  // APPEND
        let value = try pop("APPEND", at)
        guard case .list(let list) = stack[try topIndex("APPEND", at)] else {
          throw invalid(at, "APPEND on \(stack[stack.count - 1].kind), not a list")
        }
        try chargeSlots(1, at)
        list.items.append(value)
      case 0x65, 0x90:  // APPENDS, ADDITEMS
        let name = op == 0x65 ? "APPENDS" : "ADDITEMS"
        let items = try popMark(name, at)
        guard case .list(let list) = stack[try topIndex(name, at)] else {
          throw invalid(at, "\(name) on \(stack[stack.count - 1].kind), not a list or set")
        }
        try chargeSlots(items.count, at)
        list.items.append(contentsOf: items)
      case 0x71:  // BINPUT
        let index = try u8("BINPUT", at)
        try chargeSlots(1, at)
        memo[index] = stack[try topIndex("BINPUT", at)]
      case 0x72:  // LONG_BINPUT
        let index = Int(try u32("LONG_BINPUT", at))
        try chargeSlots(1, at)
        memo[index] = stack[try topIndex("LONG_BINPUT", at)]
      case 0x94:  // MEMOIZE
        try chargeSlots(1, at)
        memo[memo.count] = stack[try topIndex("MEMOIZE", at)]
      case 0x68, 0x6A:  // BINGET, LONG_BINGET
        let index = op == 0x68 ? try u8("BINGET", at) : Int(try u32("LONG_BINGET", at))
        guard let value = memo[index] else { throw invalid(at, "memo index \(index) was never stored") }
        try push(value, at)
      case 0x4A:  // BININT
        try push(.int(Int64(Int32(bitPattern: try u32("BININT", at)))), at)
      case 0x4B:  // BININT1
        try push(.int(Int64(try u8("BININT1", at))), at)
      case 0x4D:  // BININT2
        try push(.int(Int64(try u16("BININT2", at))), at)
      case 0x8A:  // LONG1
        let n = try u8("LONG1", at)
        try push(Self.decodeLong(try take(n, "LONG1", at)), at)
      case 0x8B:  // LONG4
        let n = Int32(bitPattern: try u32("LONG4", at))
        guard n >= 0 else { throw invalid(at, "LONG4 with a negative length") }
        try push(Self.decodeLong(try take(Int(n), "LONG4", at)), at)
      case 0x47:  // BINFLOAT (big-endian)
        try push(.float(Double(bitPattern: UInt64(bigEndian: try take(8, "BINFLOAT", at).loadUnaligned(as: UInt64.self)))), at)
      case 0x4E:
        try push(.none, at)
      case 0x88:
        try push(.bool(true), at)
      case 0x89:
        try push(.bool(false), at)
      case 0x58:  // BINUNICODE
        let n = try length(UInt64(try u32("BINUNICODE", at)), "BINUNICODE", at)
        try push(.string(try utf8(try take(n, "BINUNICODE", at), "BINUNICODE", at)), at)
      case 0x8C:  // SHORT_BINUNICODE
        let n = try u8("SHORT_BINUNICODE", at)
        try push(.string(try utf8(try take(n, "SHORT_BINUNICODE", at), "SHORT_BINUNICODE", at)), at)
      case 0x8D:  // BINUNICODE8
        let n = try length(try u64("BINUNICODE8", at), "BINUNICODE8", at)
        try push(.string(try utf8(try take(n, "BINUNICODE8", at), "BINUNICODE8", at)), at)
      case 0x54, 0x55:  // BINSTRING, SHORT_BINSTRING (Python 2 str): UTF-8, else Latin-1
        let name = op == 0x54 ? "BINSTRING" : "SHORT_BINSTRING"
        let n: Int
        if op == 0x54 {
          let raw = Int32(bitPattern: try u32(name, at))
          guard raw >= 0 else { throw invalid(at, "BINSTRING with a negative length") }
          n = Int(raw)
        } else {
          n = try u8(name, at)
        }
        let raw = try take(n, name, at)
        try charge(2 * n, at)
        try push(.string(String(validating: raw, as: UTF8.self) ?? String(raw.map { Character(Unicode.Scalar($0)) })), at)
      case 0x42:  // BINBYTES
        let n = try length(UInt64(try u32("BINBYTES", at)), "BINBYTES", at)
        try push(.bytes(try copiedBytes(n, "BINBYTES", at)), at)
      case 0x43:  // SHORT_BINBYTES
        let n = try u8("SHORT_BINBYTES", at)
        try push(.bytes(try copiedBytes(n, "SHORT_BINBYTES", at)), at)
      case 0x8E, 0x96:  // BINBYTES8, BYTEARRAY8
        let name = op == 0x8E ? "BINBYTES8" : "BYTEARRAY8"
        let n = try length(try u64(name, at), name, at)
        try push(.bytes(try copiedBytes(n, name, at)), at)
      case 0x63:  // GLOBAL
        let module = try line("GLOBAL", at)
        let name = try line("GLOBAL", at)
        try push(try resolveGlobal(module: module, name: name, at: at), at)
      case 0x93:  // STACK_GLOBAL
        let name = try pop("STACK_GLOBAL", at)
        let module = try pop("STACK_GLOBAL", at)
        guard case .string(let m) = module, case .string(let n) = name else {
          throw invalid(at, "STACK_GLOBAL needs two strings, got \(module.kind) and \(name.kind)")
        }
        try push(try resolveGlobal(module: m, name: n, at: at), at)
      case 0x52:  // REDUCE
        let args = try pop("REDUCE", at)
        let i = try topIndex("REDUCE", at)
        guard case .tuple(let tuple) = args else { throw invalid(at, "REDUCE arguments are \(args.kind), not a tuple") }
        stack[i] = try call(stack[i], tuple.items, at: at)
      case 0x81:  // NEWOBJ
        let args = try pop("NEWOBJ", at)
        let cls = try pop("NEWOBJ", at)
        guard case .tuple(let tuple) = args else { throw invalid(at, "NEWOBJ arguments are \(args.kind), not a tuple") }
        try push(try instantiate(cls, tuple.items, at: at), at)
      case 0x92:  // NEWOBJ_EX (keyword arguments are ignored: no allowlisted class takes any)
        _ = try pop("NEWOBJ_EX", at)
        let args = try pop("NEWOBJ_EX", at)
        let cls = try pop("NEWOBJ_EX", at)
        guard case .tuple(let tuple) = args else { throw invalid(at, "NEWOBJ_EX arguments are \(args.kind), not a tuple") }
        try push(try instantiate(cls, tuple.items, at: at), at)
      case 0x62:  // BUILD
        let state = try pop("BUILD", at)
        let target = stack[try topIndex("BUILD", at)]
        try build(target, state: state, at: at)
      case 0x51:  // BINPERSID
        let pid = try pop("BINPERSID", at)
        try push(.storage(try storageReference(pid, at: at)), at)
      case 0x69:  // INST: names a class inline; refuse, naming it if it is not allowlisted
        let module = try line("INST", at)
        let name = try line("INST", at)
        _ = try resolveGlobal(module: module, name: name, at: at)
        throw .unsupportedOpcode(path: path, offset: at, opcode: "INST")
      default:
        if let name = Self.unsupportedOpcodes[op] {
          throw .unsupportedOpcode(path: path, offset: at, opcode: name)
        }
        throw .unknownOpcode(path: path, offset: at, opcode: op)
      }
    }
  }

  /// torch dtypes and storage classes that exist but have no `TorchElementType`.
  static let knownUnsupportedDTypes: Set<String> = Set(
    ["complex32", "chalf", "ComplexHalfStorage", "float4_e2m1fn_x2", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16"]
      + (1...7).flatMap { ["uint\($0)", "int\($0)"] })

  /// Real pickle opcodes this reader refuses.
  private static let unsupportedOpcodes: [UInt8: String] = [
    0x49: "INT", 0x4C: "LONG", 0x53: "STRING", 0x56: "UNICODE", 0x46: "FLOAT", 0x67: "GET",
    0x70: "PUT", 0x6F: "OBJ", 0x50: "PERSID", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
    0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
  ]

  /// A little-endian two's-complement integer of any length (LONG1/LONG4).
  static func decodeLong(_ raw: UnsafeRawBufferPointer) -> PickleValue {
    let n = raw.count
    if n == 0 { return .int(0) }
    let negative = raw[n - 1] & 0x80 != 0
    // Bytes above the low 8 must be pure sign extension for the value to fit in Int64.
    if n > 8 {
      let fill: UInt8 = negative ? 0xFF : 0x00
      for i in 8..<n where raw[i] != fill { return .bigInt(byteCount: n) }
      if (raw[7] & 0x80 != 0) != negative { return .bigInt(byteCount: n) }
    }
    var value: UInt64 = negative ? ~0 : 0
    for i in 0..<min(n, 8) {
      value &= ~(UInt64(0xFF) << (8 * UInt64(i)))
      value |= UInt64(raw[i]) << (8 * UInt64(i))
    }
    return .int(Int64(bitPattern: value))
  }

  // MARK: Allowlisted behaviour

  /// REDUCE: `callee(*args)` for the allowlisted callables.
  private func call(_ callee: PickleValue, _ args: [PickleValue], at: Int) throws(TorchCheckpointError) -> PickleValue {
    guard case .global(let global) = callee else {
      throw .callNotAllowed(path: path, offset: at, callee: callee.kind)
    }
    switch global {
    case .orderedDict:
      let dict = try newDict(at)
      if let first = args.first {
        // OrderedDict([(key, value), …])
        guard args.count == 1, let pairs = sequenceItems(first) else {
          throw invalid(at, "OrderedDict called with unsupported arguments")
        }
        try chargeSlots(2 * pairs.count, at)
        for pair in pairs {
          guard case .tuple(let t) = pair, t.items.count == 2 else {
            throw invalid(at, "OrderedDict item is \(pair.kind), not a (key, value) pair")
          }
          dict.set(t.items[0], t.items[1])
        }
      }
      return .dict(dict)
    case .rebuildTensorV2, .rebuildTensorV3:
      return .tensor(try rebuildTensor(args, v3: global == .rebuildTensorV3, at: at))
    case .rebuildParameter, .rebuildParameterWithState:
      let count = global == .rebuildParameter ? 3 : 4
      guard args.count == count, case .tensor = args[0] else {
        throw invalid(at, "\(global.dottedName) expects (tensor, requires_grad, hooks\(count == 4 ? ", state" : ""))")
      }
      return args[0]
    case .rebuildFromTypeV2:
      // _rebuild_from_type_v2(func, new_type, args, state): a tensor subclass or a tensor with
      // Python attributes; only plain Tensor/Parameter and the tensor rebuild functions qualify.
      guard args.count == 4, case .global(let inner) = args[0], case .global(.tensorClass) = args[1],
        case .tuple(let innerArgs) = args[2],
        [.rebuildTensorV2, .rebuildTensorV3, .rebuildParameter, .rebuildParameterWithState].contains(inner)
      else {
        throw invalid(at, "_rebuild_from_type_v2 is only supported for torch.Tensor/Parameter rebuilt by a tensor rebuild function")
      }
      return try call(args[0], innerArgs.items, at: at)
    case .tensorClass:
      return try instantiate(callee, args, at: at)
    case .torchSize:
      guard args.count == 1, let items = sequenceItems(args[0]) else {
        throw invalid(at, "torch.Size expects one tuple")
      }
      return try makeTuple(items, at)
    case .device:
      guard let first = args.first, case .string(let type) = first else {
        throw invalid(at, "torch.device expects a string")
      }
      if args.count == 2, case .int(let index) = args[1] { return .string("\(type):\(index)") }
      return .string(type)
    case .getLayout:
      guard args.count == 1, case .string(let name) = args[0] else {
        throw invalid(at, "torch.serialization._get_layout expects a string")
      }
      return .object(name)
    case .codecsEncode:
      return .bytes(try encode(args, at: at))
    case .set:
      if args.isEmpty { return try newList([], at) }
      guard args.count == 1, let items = sequenceItems(args[0]) else {
        throw invalid(at, "set expects one list or tuple")
      }
      return try newList(items, at)
    case .numpyDType:
      guard let first = args.first, case .string(let code) = first else {
        throw invalid(at, "numpy.dtype expects a type code string")
      }
      return .numpyDType(NumpyDTypeBox(code: code))
    case .numpyScalar:
      return try numpyScalar(args, at: at)
    case .inertClass(let name):
      return .object(name)
    case .storageClass, .dtype:
      throw .callNotAllowed(path: path, offset: at, callee: global.dottedName)
    }
  }

  /// NEWOBJ: `cls.__new__(cls, *args)` for the allowlisted classes.
  private func instantiate(_ cls: PickleValue, _ args: [PickleValue], at: Int) throws(TorchCheckpointError) -> PickleValue {
    guard case .global(let global) = cls else {
      throw .callNotAllowed(path: path, offset: at, callee: cls.kind)
    }
    switch global {
    case .tensorClass(let name):
      // Parameter(data[, requires_grad]) is its data; torch.Tensor() is an empty tensor, unsupported.
      guard name != "torch.Tensor", (1...2).contains(args.count), case .tensor = args[0] else {
        throw invalid(at, "\(name) can only be rebuilt from a tensor")
      }
      return args[0]
    case .orderedDict:
      return .dict(try newDict(at))
    case .set:
      return try newList([], at)
    case .inertClass(let name):
      return .object(name)
    default:
      throw .callNotAllowed(path: path, offset: at, callee: global.dottedName)
    }
  }

  /// BUILD: set state on an object. State is ignored for the allowlisted kinds (an OrderedDict's
  /// `_metadata`, a Parameter's attributes, an inert object's fields); a numpy dtype takes its
  /// byte order from it. Anything else (a class, a list, a number) is refused.
  private func build(_ target: PickleValue, state: PickleValue, at: Int) throws(TorchCheckpointError) {
    switch target {
    case .dict, .tensor, .object:
      return
    case .numpyDType(let box):
      if case .tuple(let t) = state, t.items.count >= 2, case .string(let order) = t.items[1] {
        box.byteOrder = order
      }
    default:
      throw invalid(at, "BUILD on \(target.kind) is not allowed")
    }
  }

  /// The items of a tuple or list.
  private func sequenceItems(_ value: PickleValue) -> [PickleValue]? {
    switch value {
    case .tuple(let t): t.items
    case .list(let l): l.items
    default: nil
    }
  }

  private func ints(_ value: PickleValue, _ what: String, at: Int) throws(TorchCheckpointError) -> [Int] {
    guard let items = sequenceItems(value) else { throw invalid(at, "tensor \(what) is \(value.kind), not a tuple") }
    guard items.count <= Self.maxRank else { throw invalid(at, "tensor \(what) has \(items.count) dimensions (limit \(Self.maxRank))") }
    var out: [Int] = []
    for item in items {
      guard case .int(let v) = item, v >= 0, let n = Int(exactly: v) else {
        throw invalid(at, "tensor \(what) holds \(item.kind), not a non-negative int")
      }
      out.append(n)
    }
    return out
  }

  /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`
  /// or `_rebuild_tensor_v3(…, backward_hooks, dtype[, metadata])`.
  private func rebuildTensor(_ args: [PickleValue], v3: Bool, at: Int) throws(TorchCheckpointError) -> TensorReference {
    let name = v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2"
    let required = v3 ? 7 : 6
    guard args.count == required || args.count == required + 1 else {
      throw invalid(at, "\(name) takes \(required) or \(required + 1) arguments, got \(args.count)")
    }
    guard case .storage(let storage) = args[0] else {
      throw invalid(at, "\(name): first argument is \(args[0].kind), not a storage")
    }
    guard case .int(let rawOffset) = args[1], rawOffset >= 0, let offset = Int(exactly: rawOffset) else {
      throw invalid(at, "\(name): storage offset is \(args[1].kind), not a non-negative int")
    }
    let shape = try ints(args[2], "size", at: at)
    let strides = try ints(args[3], "stride", at: at)
    guard shape.count == strides.count else {
      throw invalid(at, "\(name): size has \(shape.count) dimensions but stride has \(strides.count)")
    }
    var elementType = storage.elementType
    if v3 {
      guard case .global(.dtype(_, let dtype)) = args[6] else {
        throw invalid(at, "\(name): dtype argument is \(args[6].kind), not a torch dtype")
      }
      elementType = dtype
    }
    return TensorReference(
      storage: storage, elementType: elementType, storageOffset: offset, shape: shape, strides: strides)
  }

  /// `('storage', storage_class, key, location, numel)`.
  private func storageReference(_ pid: PickleValue, at: Int) throws(TorchCheckpointError) -> StorageReference {
    guard case .tuple(let t) = pid, t.items.count == 5, case .string("storage") = t.items[0] else {
      throw invalid(at, "persistent id is \(pid.kind), not a ('storage', class, key, location, numel) tuple")
    }
    guard case .global(.storageClass(_, let type)) = t.items[1] else {
      throw invalid(at, "persistent id names \(t.items[1].kind), not a storage class")
    }
    let key: String
    switch t.items[2] {
    case .string(let s): key = s
    case .int(let i): key = String(i)
    default: throw invalid(at, "storage key is \(t.items[2].kind), not a string")
    }
    guard case .int(let numel) = t.items[4], numel >= 0, let count = Int(exactly: numel) else {
      throw invalid(at, "storage size is \(t.items[4].kind), not a non-negative int")
    }
    return StorageReference(key: key, elementType: type, elementCount: count)
  }

  /// `_codecs.encode(text, "latin1")`, how protocol 2 pickles `bytes`.
  private func encode(_ args: [PickleValue], at: Int) throws(TorchCheckpointError) -> [UInt8] {
    guard let first = args.first, case .string(let text) = first else {
      throw invalid(at, "_codecs.encode expects a string")
    }
    var encoding = "utf-8"
    if args.count >= 2, case .string(let e) = args[1] { encoding = e.lowercased() }
    try charge(text.utf8.count, at)
    switch encoding {
    case "latin1", "latin-1", "iso-8859-1", "iso8859-1":
      var out: [UInt8] = []
      out.reserveCapacity(text.unicodeScalars.count)
      for scalar in text.unicodeScalars {
        guard scalar.value < 256 else { throw invalid(at, "_codecs.encode: character outside Latin-1") }
        out.append(UInt8(scalar.value))
      }
      return out
    case "utf-8", "utf8":
      return Array(text.utf8)
    default:
      throw invalid(at, "_codecs.encode with unsupported encoding \"\(encoding)\"")
    }
  }

  /// `numpy.core.multiarray.scalar(dtype, bytes)`: bool, integer and float scalars become
  /// numbers; any other dtype an inert object.
  private func numpyScalar(_ args: [PickleValue], at: Int) throws(TorchCheckpointError) -> PickleValue {
    guard args.count == 2, case .numpyDType(let dtype) = args[0], case .bytes(let data) = args[1] else {
      return .object("numpy scalar")
    }
    var code = Substring(dtype.code)
    var bigEndian = dtype.byteOrder == ">"
    if let first = code.first, "<>=|".contains(first) {
      bigEndian = first == ">"
      code = code.dropFirst()
    }
    let widths: [Substring: (kind: Character, size: Int)] = [
      "f2": ("f", 2), "f4": ("f", 4), "f8": ("f", 8), "i1": ("i", 1), "i2": ("i", 2), "i4": ("i", 4),
      "i8": ("i", 8), "u1": ("u", 1), "u2": ("u", 2), "u4": ("u", 4), "u8": ("u", 8), "b1": ("b", 1),
      "?": ("b", 1),
    ]
    guard let (kind, size) = widths[code], data.count == size else { return .object("numpy scalar") }
    var bits: UInt64 = 0
    for i in 0..<size {
      let byte = UInt64(bigEndian ? data[size - 1 - i] : data[i])
      bits |= byte << (8 * UInt64(i))
    }
    switch (kind, size) {
    case ("f", 2): return .float(Double(Float16(bitPattern: UInt16(bits))))
    case ("f", 4): return .float(Double(Float(bitPattern: UInt32(bits))))
    case ("f", 8): return .float(Double(bitPattern: bits))
    case ("b", _): return .bool(bits != 0)
    case ("u", 8):
      guard let v = Int64(exactly: bits) else { return .bigInt(byteCount: 8) }
      return .int(v)
    case ("u", _): return .int(Int64(bits))
    default:  // signed: sign-extend from `size` bytes
      let shift = UInt64(64 - 8 * size)
      return .int(Int64(bitPattern: bits << shift) >> Int64(shift))
    }
  }
}
