/// Errors of face detection, alignment and recognition.
public enum FaceAnalysisError: Error, CustomStringConvertible, Equatable {
  /// The model folder is missing or does not hold the models needed.
  case modelsNotFound(folder: String, reason: String)
  /// A model file's interface does not fit its role.
  case unexpectedModel(file: String, reason: String)
  /// No face was found in an image (not a failure of the engine: callers may treat it apart).
  case noFace(image: String)
  /// An option outside its range.
  case invalidOption(name: String, reason: String)
  /// The image cannot be analysed (empty, too large).
  case invalidImage(image: String, reason: String)

  public var description: String {
    switch self {
    case .modelsNotFound(let folder, let reason): "face models in \(folder): \(reason)"
    case .unexpectedModel(let file, let reason): "\(file): \(reason)"
    case .noFace(let image): "no face found in \(image)"
    case .invalidOption(let name, let reason): "\(name): \(reason)"
    case .invalidImage(let image, let reason): "\(image): \(reason)"
    }
  }
}
