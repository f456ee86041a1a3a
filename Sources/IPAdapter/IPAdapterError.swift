/// Why an IP-Adapter could not be loaded or used, with a message a user can act on.
public enum IPAdapterError: Error, CustomStringConvertible, Equatable {
  /// The file holds neither `image_proj.*`/`ip_adapter.*` keys nor the two nested dicts.
  case notAnIPAdapter(path: String, reason: String)
  /// A variant this engine does not run yet.
  case unsupportedVariant(path: String, variant: String)
  /// The adapter was trained for another UNet (cross-attention width or layer count).
  case wrongUNet(path: String, reason: String)
  /// The adapter needs a different image encoder than the one given.
  case wrongImageEncoder(path: String, encoder: String, reason: String, needed: String)
  /// No image encoder folder could be found for an adapter that needs one.
  case missingImageEncoder(path: String, tried: String)
  /// Precomputed embeddings that do not fit the adapter.
  case badEmbeds(path: String, reason: String)
  case badInput(String)

  public var description: String {
    switch self {
    case .notAnIPAdapter(let path, let reason): "\(path) is not an IP-Adapter checkpoint: \(reason)"
    case .unsupportedVariant(let path, let variant):
      "\(path) is an IP-Adapter \(variant) checkpoint, which is not supported yet"
    case .wrongUNet(let path, let reason): "\(path) does not fit this Stable Diffusion model: \(reason)"
    case .wrongImageEncoder(let path, let encoder, let reason, let needed):
      "\(path) needs a different image encoder than \(encoder): \(reason). Use \(needed)"
    case .missingImageEncoder(let path, let tried):
      "no image encoder for \(path): \(tried) does not exist; give the image encoder folder (for h94/IP-Adapter, models/image_encoder)"
    case .badEmbeds(let path, let reason): "\(path): \(reason)"
    case .badInput(let message): message
    }
  }
}
