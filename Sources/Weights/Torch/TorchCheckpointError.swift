/// Everything that can go wrong opening or reading a PyTorch checkpoint (`.bin`, `.pt`, `.pth`,
/// `.ckpt`). Every case names the file and, where one is involved, the tensor key, zip record,
/// pickle byte offset (counted from the start of the `data.pkl` record), opcode or global.
///
/// matches: the failure classes of `torch.load(weights_only=True)` (torch/serialization.py,
/// torch/_weights_only_unpickler.py: `UnpicklingError` for a global outside the allowlist or an
/// unsupported opcode; `RuntimeError` from `PyTorchStreamReader` for a broken zip), each split into
/// its own case so callers can tell them apart and the message says what to do.
/// Limitations: pickle offsets are byte positions in data.pkl, not in the file.
public enum TorchCheckpointError: Error, CustomStringConvertible, Equatable, Sendable {
  // MARK: File access and container
  /// A system call failed (`operation` is e.g. "open", "mmap"; `reason` is strerror).
  case io(path: String, operation: String, reason: String)
  /// The path is a directory, FIFO, device or other non-regular file.
  case notARegularFile(path: String)
  /// The file is not a zip archive (`found` describes what its first bytes look like).
  case notAZip(path: String, found: String)
  /// A torch file from before PyTorch 1.6 (`_use_new_zipfile_serialization=False`): a bare
  /// pickle stream with torch's magic number, or the even older tar layout. Not supported.
  case legacyFormat(path: String, kind: String)
  /// The zip structure is damaged or truncated (`reason` says which record).
  case corruptZip(path: String, reason: String)
  /// A record the reader needs is compressed, encrypted or otherwise not stored plainly.
  case unsupportedZipEntry(path: String, entry: String, reason: String)
  /// The zip holds no `<archive>/data.pkl`: it is some other zip, not a `torch.save` file.
  case missingDataPickle(path: String, expected: String)
  /// A small record (data.pkl, byteorder, version) fails its CRC-32 check.
  case checksumMismatch(path: String, entry: String, expected: UInt32, actual: UInt32)
  /// The `byteorder` record says "big" (or something unknown); only little-endian data is read.
  case unsupportedByteOrder(path: String, byteOrder: String)

  // MARK: Pickle
  /// The pickle ends in the middle of an opcode or before STOP.
  case truncatedPickle(path: String, offset: Int, opcode: String)
  /// A byte that is not a pickle opcode at all.
  case unknownOpcode(path: String, offset: Int, opcode: UInt8)
  /// A real pickle opcode this restricted reader refuses (text protocol 0/1 forms, INST/OBJ,
  /// extension registry, out-of-band buffers, protocol > 5).
  case unsupportedOpcode(path: String, offset: Int, opcode: String)
  /// GLOBAL/STACK_GLOBAL/INST named something outside the allowlist. Nothing is ever imported or
  /// called; the file is refused as soon as the name is read.
  case forbiddenGlobal(path: String, offset: Int, module: String, name: String)
  /// REDUCE/NEWOBJ tried to call a value that is not an allowlisted callable (a storage class,
  /// a dtype, a string, …). `callee` describes it.
  case callNotAllowed(path: String, offset: Int, callee: String)
  /// The pickle is well-formed bytes but not a sensible object (stack underflow, missing MARK,
  /// unknown memo index, wrong argument types for a tensor rebuild, …).
  case invalidPickle(path: String, offset: Int, reason: String)
  /// Containers nest deeper than `limit`.
  case nestingTooDeep(path: String, limit: Int)
  /// Walking the unpickled object graph would take more steps than the pickle justifies (shared
  /// sub-objects referenced exponentially often, the "billion laughs" shape).
  case pickleTooComplex(path: String, reason: String)

  // MARK: Tensors
  /// Two leaves flatten to the same dotted key.
  case duplicateKey(path: String, key: String)
  /// The tensor's storage record `<archive>/data/<storageKey>` is not in the zip.
  case storageEntryMissing(path: String, key: String, storageKey: String, record: String)
  /// The tensor (offset, shape, strides) reaches past the end of its storage, or the storage
  /// record holds fewer bytes than the pickle declares.
  case storageTooSmall(path: String, key: String, storageKey: String, neededBytes: Int, availableBytes: Int)
  /// A tensor whose strides repeat elements (stride 0, as `expand` makes) would need more than
  /// `limit` bytes once copied into a contiguous tensor, far more than its storage holds.
  case tensorTooLarge(path: String, key: String, byteCount: Int, limit: Int)
  /// Shape, strides and offset of a tensor overflow size arithmetic (corrupt checkpoint).
  case invalidTensorGeometry(path: String, key: String, reason: String)
  /// The pickle names a torch dtype or storage class that exists but that this reader has no
  /// element type for (`torch.complex32`, `torch.uint4`, `torch.float4_e2m1fn_x2`, …).
  case unsupportedDType(path: String, offset: Int, dtype: String)
  /// No tensor with this key.
  case tensorNotFound(path: String, key: String)
  /// `tensor(_:)` on a stored type other than F32/F16/BF16.
  case notAFloatType(path: String, key: String, dtype: String)
  /// `int64Values(_:)` on a stored type that is not an integer or BOOL.
  case notAnIntegerType(path: String, key: String, dtype: String)
  /// A U64 element does not fit in Int64.
  case integerOutOfRange(path: String, key: String, index: Int)

  // MARK: Format detection
  /// `openCheckpoint` found neither a safetensors header nor a zip (`found` describes the bytes).
  case unrecognizedFormat(path: String, found: String)

  public var description: String {
    switch self {
    case .io(let path, let operation, let reason):
      "\(path): \(operation) failed: \(reason)"
    case .notARegularFile(let path):
      "\(path): not a regular file"
    case .notAZip(let path, let found):
      "\(path): not a PyTorch checkpoint (torch.save zip archive): the file starts with \(found)"
    case .legacyFormat(let path, let kind):
      "\(path): legacy PyTorch serialization (\(kind), written by PyTorch < 1.6 or with _use_new_zipfile_serialization=False) is not supported; load it once in Python and convert it to safetensors (safetensors.torch.save_file) or re-save it with torch.save"
    case .corruptZip(let path, let reason):
      "\(path): damaged or truncated zip archive: \(reason)"
    case .unsupportedZipEntry(let path, let entry, let reason):
      "\(path): zip record \"\(entry)\" \(reason); torch.save stores records uncompressed, so re-save the checkpoint with torch.save or convert it to safetensors"
    case .missingDataPickle(let path, let expected):
      "\(path): zip archive has no \"\(expected)\" record, so it is not a torch.save checkpoint"
    case .checksumMismatch(let path, let entry, let expected, let actual):
      "\(path): zip record \"\(entry)\" is corrupt: CRC-32 is \(hex32(actual)), the directory says \(hex32(expected))"
    case .unsupportedByteOrder(let path, let order):
      "\(path): checkpoint data is stored \(order)-endian; only little-endian checkpoints are supported (re-save it on a little-endian machine or convert it to safetensors)"
    case .truncatedPickle(let path, let offset, let opcode):
      "\(path): data.pkl is truncated: \(opcode) at byte \(offset) needs more bytes than remain (incomplete download?)"
    case .unknownOpcode(let path, let offset, let opcode):
      "\(path): data.pkl byte \(offset) is \(hex8(opcode)), which is not a pickle opcode (corrupt file)"
    case .unsupportedOpcode(let path, let offset, let opcode):
      "\(path): data.pkl uses pickle opcode \(opcode) at byte \(offset), which this restricted unpickler does not support (only what tensor state dicts need); convert the checkpoint to safetensors"
    case .forbiddenGlobal(let path, let offset, let module, let name):
      if module.hasPrefix("torch") {
        "\(path): data.pkl refers to \(module).\(name) at byte \(offset), which is not in the allowlist of tensor state-dict globals (only dense tensors, OrderedDicts and plain values are supported)"
      } else {
        "\(path): data.pkl refers to the global \(module).\(name) at byte \(offset), which is not in the allowlist: refused (a pickle naming it could run code when loaded by Python; nothing was executed). Only load checkpoints from sources you trust, or use safetensors"
      }
    case .callNotAllowed(let path, let offset, let callee):
      "\(path): data.pkl tries to call \(callee) at byte \(offset), which is not an allowlisted callable: refused"
    case .invalidPickle(let path, let offset, let reason):
      "\(path): data.pkl is invalid at byte \(offset): \(reason)"
    case .nestingTooDeep(let path, let limit):
      "\(path): data.pkl nests containers more than \(limit) levels deep; refused"
    case .pickleTooComplex(let path, let reason):
      "\(path): data.pkl object graph is too complex to walk safely: \(reason)"
    case .duplicateKey(let path, let key):
      "\(path): two entries flatten to the same key \"\(key)\""
    case .storageEntryMissing(let path, let key, let storageKey, let record):
      "\(path): tensor \"\(key)\" uses storage \"\(storageKey)\" but the zip has no record \"\(record)\" (truncated or corrupt checkpoint)"
    case .storageTooSmall(let path, let key, let storageKey, let needed, let available):
      "\(path): tensor \"\(key)\" needs \(needed) bytes of storage \"\(storageKey)\" but only \(available) are there (corrupt checkpoint)"
    case .tensorTooLarge(let path, let key, let count, let limit):
      "\(path): tensor \"\(key)\" repeats its storage elements (stride 0) and would take \(count) bytes as a contiguous tensor, more than the \(limit)-byte limit (corrupt or hostile checkpoint)"
    case .invalidTensorGeometry(let path, let key, let reason):
      "\(path): tensor \"\(key)\": \(reason)"
    case .unsupportedDType(let path, let offset, let dtype):
      "\(path): data.pkl uses the dtype \(dtype) at byte \(offset), which this reader does not support; convert the tensor to float32/float16/bfloat16 in Python or save it as safetensors"
    case .tensorNotFound(let path, let key):
      "\(path): no tensor named \"\(key)\""
    case .notAFloatType(let path, let key, let dtype):
      "\(path): tensor \"\(key)\" is stored as \(dtype), not a float type the engine computes with (F32, F16, BF16); read it with rawBytes(_:) or int64Values(_:)"
    case .notAnIntegerType(let path, let key, let dtype):
      "\(path): tensor \"\(key)\" is stored as \(dtype), not an integer or BOOL type"
    case .integerOutOfRange(let path, let key, let index):
      "\(path): tensor \"\(key)\": U64 element \(index) does not fit in Int64"
    case .unrecognizedFormat(let path, let found):
      "\(path): neither a safetensors file nor a PyTorch zip checkpoint: the file starts with \(found)"
    }
  }
}

func hex8(_ v: UInt8) -> String {
  let s = String(v, radix: 16)
  return "0x" + (s.count < 2 ? "0" + s : s)
}

func hex32(_ v: UInt32) -> String {
  let s = String(v, radix: 16)
  return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
}
