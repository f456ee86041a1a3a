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

  /// Every number it holds.
  var values: [Int] {
    switch self {
    case .single(let v): [v]
    case .list(let v): v
    }
  }
}

/// diffusers' `transformer_layers_per_block`: one count for every block, one per block, or per
/// block a list with one count per layer (distilled SDXL models such as SSD-1B).
///
/// matches: the `int | tuple[int] | tuple[tuple]` argument of diffusers `UNet2DConditionModel`
/// (0.42.1) and how its blocks expand it (`[n] * num_layers` for a single count).
public enum LayerCounts: Codable, Equatable, Sendable {
  case single(Int)
  /// One entry per block: a count for all its layers, or one count per layer.
  case perBlock([IntOrList])

  public init(from decoder: Decoder) throws {
    let c = try decoder.singleValueContainer()
    if let v = try? c.decode(Int.self) {
      self = .single(v)
    } else {
      self = .perBlock(try c.decode([IntOrList].self))
    }
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    switch self {
    case .single(let v): try c.encode(v)
    case .perBlock(let v): try c.encode(v)
    }
  }

  /// The entry of each of `count` blocks.
  public func entries(_ count: Int) -> [IntOrList] {
    switch self {
    case .single(let v): Array(repeating: .single(v), count: count)
    case .perBlock(let v): v
    }
  }

  /// One count per layer of each block, for a validated config (a per-layer list is taken as it
  /// is; a missing entry counts 1).
  public static func expand(_ counts: LayerCounts, layers: [Int]) -> [[Int]] {
    let entries = counts.entries(layers.count)
    return layers.enumerated().map { b, n in
      guard b < entries.count else { return Array(repeating: 1, count: n) }
      switch entries[b] {
      case .single(let v): return Array(repeating: v, count: n)
      case .list(let v): return (0..<n).map { $0 < v.count ? v[$0] : 1 }
      }
    }
  }

  /// The middle block's count: diffusers passes the last entry to `UNetMidBlock2DCrossAttn`, whose
  /// one attention takes its first value.
  public static func midCount(_ counts: LayerCounts, blocks: Int) -> Int {
    switch counts.entries(blocks).last {
    case .single(let v)?: return v
    case .list(let v)?: return v.first ?? 1
    case nil: return 1
    }
  }

  /// Whether some block lists per-layer counts.
  public var isNested: Bool {
    if case .perBlock(let v) = self { return v.contains { if case .list = $0 { true } else { false } } }
    return false
  }

  /// Every number it holds.
  var values: [Int] {
    switch self {
    case .single(let v): [v]
    case .perBlock(let v): v.flatMap(\.values)
    }
  }
}
