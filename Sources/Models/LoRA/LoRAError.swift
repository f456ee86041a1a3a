/// Why a LoRA file could not be read or applied. Every case names the file and, where there is
/// one, the key.
public enum LoRAError: Error, CustomStringConvertible, Equatable {
  /// The file holds no tensor any known LoRA layout uses.
  case notALoRA(path: String, reason: String)
  /// A LyCORIS/DoRA variant this engine does not fuse (LoHa, LoKr, DoRA, Tucker `lora_mid`, full diffs).
  case unsupportedKind(path: String, key: String, kind: String)
  /// One half of a `down`/`up` pair is absent, or a value is malformed.
  case malformed(path: String, key: String, reason: String)
  /// Keys that name no layer of the loaded model (usually a LoRA for another base model).
  case unmatchedKeys(path: String, keys: [String], hint: String)
  /// The LoRA's matrices do not fit the layer they name (another base model, or a damaged file).
  case shapeMismatch(path: String, key: String, layer: String, reason: String)
  /// NaN or infinity in a LoRA tensor (it would make every image black).
  case nonFinite(path: String, key: String, index: Int)
  /// A weight that is not a finite number.
  case badWeight(path: String, weight: Float)

  public var description: String {
    switch self {
    case .notALoRA(let path, let reason): "\(path) is not a LoRA file: \(reason)"
    case .unsupportedKind(let path, let key, let kind):
      "\(path): \(key) belongs to a \(kind) network, which is not supported (plain LoRA and LoCon are)"
    case .malformed(let path, let key, let reason): "\(path): \(key): \(reason)"
    case .unmatchedKeys(let path, let keys, let hint):
      "\(path): \(keys.count) LoRA layer(s) match no layer of this model (\(keys.prefix(8).joined(separator: ", "))\(keys.count > 8 ? ", …" : ""))\(hint.isEmpty ? "" : "; " + hint)"
    case .shapeMismatch(let path, let key, let layer, let reason):
      "\(path): \(key) does not fit \(layer): \(reason) (is the LoRA for another base model?)"
    case .nonFinite(let path, let key, let index):
      "\(path): \(key) holds NaN or infinity (element \(index)); the file is damaged"
    case .badWeight(let path, let weight): "\(path): LoRA weight \(weight) is not a finite number"
    }
  }
}
