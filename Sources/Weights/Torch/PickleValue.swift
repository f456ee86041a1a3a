/// The values the restricted unpickler builds. Only data: there are no functions, classes or
/// modules, just markers for the allowlisted globals, which the interpreter itself interprets.
///
/// Lists and dicts are reference types (pickle's memo shares them and SETITEMS/APPENDS mutate them
/// after they were memoised). The unpickler keeps every container it creates and empties them all
/// when it finishes, so reference cycles a malicious pickle builds are broken and releasing the
/// graph never recurses through containers. Tuples are values whose nesting depth is bounded.
enum PickleValue {
  case none
  case bool(Bool)
  case int(Int64)
  /// An integer wider than 64 bits (only its byte length is kept).
  case bigInt(byteCount: Int)
  case float(Double)
  case string(String)
  case bytes([UInt8])
  case tuple(PickleTuple)
  case list(PickleList)
  case dict(PickleDict)
  /// An allowlisted global, not yet called.
  case global(AllowedGlobal)
  /// The result of BINPERSID: a reference to a storage record of the zip.
  case storage(StorageReference)
  /// The result of a tensor rebuild function.
  case tensor(TensorReference)
  /// A numpy dtype built from `numpy.dtype(code, False, True)`, its byte order set by BUILD.
  case numpyDType(NumpyDTypeBox)
  /// An inert object of an allowlisted class (its state is ignored); the string names the class.
  case object(String)

  /// Tuple nesting depth (0 for everything that is not a tuple).
  var tupleDepth: Int {
    if case .tuple(let t) = self { return t.depth }
    return 0
  }

  /// A short description for error messages.
  var kind: String {
    switch self {
    case .none: "None"
    case .bool: "a bool"
    case .int(let v): "the int \(v)"
    case .bigInt: "a big int"
    case .float: "a float"
    case .string(let s): "the string \"\(s.prefix(60))\""
    case .bytes: "bytes"
    case .tuple: "a tuple"
    case .list: "a list"
    case .dict: "a dict"
    case .global(let g): g.dottedName
    case .storage: "a storage"
    case .tensor: "a tensor"
    case .numpyDType: "a numpy dtype"
    case .object(let name): "an instance of \(name)"
    }
  }
}

/// An immutable tuple with its precomputed nesting depth.
struct PickleTuple {
  var items: [PickleValue]
  var depth: Int

  init(_ items: [PickleValue]) {
    self.items = items
    depth = 1 + (items.map(\.tupleDepth).max() ?? 0)
  }
}

/// A Python list (also used for sets, whose order does not matter here).
final class PickleList {
  var items: [PickleValue] = []
}

/// A Python dict or OrderedDict: insertion order kept; a repeated string/int key replaces the
/// value in place, as Python does.
final class PickleDict {
  private(set) var entries: [(key: PickleValue, value: PickleValue)] = []
  private var positions: [HashableKey: Int] = [:]

  private enum HashableKey: Hashable {
    case string(String)
    case int(Int64)
  }

  func set(_ key: PickleValue, _ value: PickleValue) {
    let hashable: HashableKey? =
      switch key {
      case .string(let s): .string(s)
      case .int(let i): .int(i)
      case .bool(let b): .int(b ? 1 : 0)
      default: nil
      }
    if let hashable, let i = positions[hashable] {
      entries[i].value = value
      return
    }
    if let hashable { positions[hashable] = entries.count }
    entries.append((key, value))
  }

  func removeAll() {
    entries.removeAll()
    positions.removeAll()
  }
}

/// A numpy dtype, mutable because BUILD sets its byte order after it may have been memoised.
final class NumpyDTypeBox {
  let code: String
  var byteOrder: String = "="
  init(code: String) { self.code = code }
}

/// `('storage', <storage class>, key, location, numel)` from a persistent id.
struct StorageReference: Equatable, Sendable {
  var key: String
  var elementType: TorchElementType
  /// Elements of `elementType` (bytes for `UntypedStorage`).
  var elementCount: Int
}

/// A dense strided tensor over a storage, as `_rebuild_tensor_v2/v3` describe it.
struct TensorReference: Equatable, Sendable {
  var storage: StorageReference
  var elementType: TorchElementType
  /// In elements of `elementType`.
  var storageOffset: Int
  var shape: [Int]
  var strides: [Int]
}

/// The globals the restricted unpickler accepts, each a marker the interpreter acts on itself.
/// Everything else is refused with `TorchCheckpointError.forbiddenGlobal`.
///
/// matches: the relevant subset of `torch._weights_only_unpickler._get_allowed_globals()`
/// (torch 2.13) — OrderedDict, tensor/parameter rebuild functions, storage classes, dtypes,
/// torch.Size, torch.device, `_codecs.encode`, builtins.set — plus inert data found in real
/// Stable Diffusion `.ckpt` files that torch only loads with `weights_only=False`:
/// numpy scalars (`numpy.core.multiarray.scalar`, `numpy.dtype`), decoded to numbers, and
/// PyTorch Lightning's `ModelCheckpoint` class (as a dict key or an instance whose state is ignored).
enum AllowedGlobal: Equatable {
  case orderedDict
  case rebuildTensorV2
  case rebuildTensorV3
  case rebuildParameter
  case rebuildParameterWithState
  case rebuildFromTypeV2
  case torchSize
  /// `torch.Tensor` or `torch.nn.parameter.Parameter` (the class).
  case tensorClass(String)
  case storageClass(String, TorchElementType)
  case dtype(String, TorchElementType)
  case device
  case getLayout
  case codecsEncode
  case set
  case numpyScalar(String)
  case numpyDType
  /// A class whose instances are kept as inert objects.
  case inertClass(String)

  var dottedName: String {
    switch self {
    case .orderedDict: "collections.OrderedDict"
    case .rebuildTensorV2: "torch._utils._rebuild_tensor_v2"
    case .rebuildTensorV3: "torch._utils._rebuild_tensor_v3"
    case .rebuildParameter: "torch._utils._rebuild_parameter"
    case .rebuildParameterWithState: "torch._utils._rebuild_parameter_with_state"
    case .rebuildFromTypeV2: "torch._tensor._rebuild_from_type_v2"
    case .torchSize: "torch.Size"
    case .tensorClass(let name): name
    case .storageClass(let name, _): name
    case .dtype(let name, _): name
    case .device: "torch.device"
    case .getLayout: "torch.serialization._get_layout"
    case .codecsEncode: "_codecs.encode"
    case .set: "builtins.set"
    case .numpyScalar(let name): name
    case .numpyDType: "numpy.dtype"
    case .inertClass(let name): name
    }
  }

  /// The allowlisted meaning of `module.name`, or nil if it is not allowed.
  static func resolve(module: String, name: String) -> AllowedGlobal? {
    // Python 2 pickles spell builtins "__builtin__".
    let module = module == "__builtin__" ? "builtins" : module
    let dotted = module + "." + name
    switch dotted {
    case "collections.OrderedDict": return .orderedDict
    case "torch._utils._rebuild_tensor_v2": return .rebuildTensorV2
    case "torch._utils._rebuild_tensor_v3": return .rebuildTensorV3
    case "torch._utils._rebuild_parameter": return .rebuildParameter
    case "torch._utils._rebuild_parameter_with_state": return .rebuildParameterWithState
    case "torch._tensor._rebuild_from_type_v2": return .rebuildFromTypeV2
    case "torch.Size": return .torchSize
    case "torch.Tensor", "torch.nn.parameter.Parameter", "torch.nn.Parameter": return .tensorClass(dotted)
    case "torch.device": return .device
    case "torch.serialization._get_layout": return .getLayout
    case "_codecs.encode": return .codecsEncode
    case "builtins.set", "builtins.frozenset": return .set
    case "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar": return .numpyScalar(dotted)
    case "numpy.dtype": return .numpyDType
    case "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
      "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint":
      return .inertClass(dotted)
    default: break
    }
    if module == "torch" || module == "torch.storage" {
      if let type = TorchElementType.storageClass(name), name.hasSuffix("Storage") {
        return .storageClass(dotted, type)
      }
    }
    if module == "torch", let type = TorchElementType.torchDType(name) { return .dtype(dotted, type) }
    return nil
  }
}
