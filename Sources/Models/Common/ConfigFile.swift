import Foundation

/// Problems with a model folder's configuration, each naming the file and the field.
public enum ModelConfigError: Error, CustomStringConvertible, Equatable {
  case missingFile(path: String)
  case malformed(path: String, field: String, reason: String)
  case unsupported(path: String, field: String, value: String, supported: String)
  /// A number outside the range this engine accepts (`allowed` says which).
  case outOfRange(path: String, field: String, value: String, allowed: String)

  public var description: String {
    switch self {
    case .missingFile(let path):
      "missing file \(path)"
    case .malformed(let path, let field, let reason):
      "\(path): field '\(field)' is invalid: \(reason)"
    case .unsupported(let path, let field, let value, let supported):
      "\(path): '\(field)' = \(value) is not supported (supported: \(supported))"
    case .outOfRange(let path, let field, let value, let allowed):
      "\(path): '\(field)' = \(value) is out of range (allowed: \(allowed))"
    }
  }
}

/// Reads a `config.json` into a `Codable` struct, turning decoding failures into
/// `ModelConfigError`s that name the file and the field.
public enum ConfigFile {
  /// Largest config file read (real ones are a few kilobytes).
  public static let maximumBytes = 16 << 20

  public static func load<T: Decodable>(_ type: T.Type, from url: URL) throws -> T {
    guard FileManager.default.fileExists(atPath: url.path) else {
      throw ModelConfigError.missingFile(path: url.path)
    }
    let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? 0
    guard size <= maximumBytes else {
      throw ModelConfigError.malformed(path: url.path, field: "(file)", reason: "\(size) bytes, more than the \(maximumBytes >> 20) MiB a config may have")
    }
    let data: Data
    do { data = try Data(contentsOf: url) } catch {
      throw ModelConfigError.malformed(path: url.path, field: "(file)", reason: "\(error)")
    }
    return try decode(type, from: data, path: url.path)
  }

  public static func decode<T: Decodable>(_ type: T.Type, from data: Data, path: String) throws -> T {
    do {
      return try JSONDecoder().decode(type, from: data)
    } catch let error as DecodingError {
      switch error {
      case .keyNotFound(let key, let context):
        let field = (context.codingPath + [key]).map(\.stringValue).joined(separator: ".")
        throw ModelConfigError.malformed(path: path, field: field, reason: "required but absent")
      case .typeMismatch(_, let context), .valueNotFound(_, let context):
        let field = context.codingPath.map(\.stringValue).joined(separator: ".")
        throw ModelConfigError.malformed(path: path, field: field, reason: context.debugDescription)
      case .dataCorrupted(let context):
        let field = context.codingPath.map(\.stringValue).joined(separator: ".")
        throw ModelConfigError.malformed(
          path: path, field: field.isEmpty ? "(json)" : field, reason: context.debugDescription)
      @unknown default:
        throw ModelConfigError.malformed(path: path, field: "(json)", reason: "\(error)")
      }
    } catch let error as ModelConfigError {
      throw error
    } catch {
      throw ModelConfigError.malformed(path: path, field: "(json)", reason: "\(error)")
    }
  }
}

/// A config value that diffusers accepts either as one number or as one number per block.
public enum IntOrList: Codable, Equatable, Sendable {
  case single(Int)
  case list([Int])

  public init(from decoder: Decoder) throws {
    let c = try decoder.singleValueContainer()
    if let v = try? c.decode(Int.self) {
      self = .single(v)
    } else {
      self = .list(try c.decode([Int].self))
    }
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    switch self {
    case .single(let v): try c.encode(v)
    case .list(let v): try c.encode(v)
    }
  }

  /// One value per block (a single value repeated `count` times).
  public func perBlock(_ count: Int) -> [Int] {
    switch self {
    case .single(let v): Array(repeating: v, count: count)
    case .list(let v): v
    }
  }
}
