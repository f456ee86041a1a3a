/// Errors of in-memory archives (`TensorDictionary`); file archives throw `SafeTensorsError`.
/// No reference counterpart (the Python equivalent is a `KeyError` on a state dict).
public enum WeightsError: Error, CustomStringConvertible, Equatable, Sendable {
  /// No tensor named `key` in the archive called `archive`.
  case tensorNotFound(key: String, archive: String)

  public var description: String {
    switch self {
    case .tensorNotFound(let key, let archive): "\(archive): no tensor named \"\(key)\""
    }
  }
}
