import Autograd
import IPAdapter
import TensorCore

/// An image-prompt projection in trainable form: parameters as autograd leaves under their
/// checkpoint keys (the `image_proj` part of an adapter file), the forward pass on a tape.
public protocol TrainableProjection: AnyObject {
  /// Every parameter by its checkpoint key, in the official module's order.
  var parameters: [(key: String, variable: Variable)] { get }
  /// The tokens `[B, T, cross]` for the projection's input (see each type).
  func callAsFunction(_ input: Variable, on tape: Tape) throws -> Variable
  /// The values by checkpoint key (the adapter file's `image_proj` part).
  func state() -> [String: Tensor]
}

extension TrainableProjection {
  /// The current values by key.
  public func state() -> [String: Tensor] {
    Dictionary(uniqueKeysWithValues: parameters.map { ($0.key, $0.variable.value) })
  }
}

/// Makes the trainable form of an adapter variant's projection from its `image_proj` tensors.
public enum TrainableProjections {
  /// - Throws: `AutogradError` naming a missing or mis-shaped key, or a variant not trainable yet
  ///   (FaceID-Plus, the Resampler's pos_emb and mean-pooled forms).
  public static func make(_ variant: IPAdapterVariant, state: [String: Tensor]) throws -> any TrainableProjection {
    switch variant {
    case .global(let e, let c, let t): return try TrainableMLPProjection(kind: .global(embeddingDim: e, crossDim: c, tokens: t), state: state)
    case .fullFace(let e, let c): return try TrainableMLPProjection(kind: .fullFace(clipDim: e, crossDim: c), state: state)
    case .faceID(let f): return try TrainableMLPProjection(kind: .faceID(f), state: state)
    case .plus(let s): return try TrainableResampler(shape: s, state: state)
    case .faceIDPlus: throw AutogradError.invalidArgument("FaceID-Plus projections are not trainable yet")
    case .qwen(let s): return try TrainableQwenResampler(shape: s, state: state)
    }
  }

  /// Leaves for `shapes` from `state`, each checked.
  static func leaves(_ shapes: [(String, [Int])], from state: [String: Tensor], owner: String) throws
    -> [(key: String, variable: Variable)]
  {
    try shapes.map { key, expected in
      guard let t = state[key] else { throw AutogradError.invalidArgument("\(owner): \(key) is missing") }
      guard t.shape == expected else { throw AutogradError.shapeMismatch(operation: "\(owner) \(key)", expected: expected, actual: t.shape) }
      return (key, Variable(parameter: t.asFloat32()))
    }
  }
}

extension TrainableResampler: TrainableProjection {}

/// The three MLP-shaped projections in trainable form.
///
/// matches: tencent-ailab/IP-Adapter `ip_adapter.ImageProjModel` (`.global`: `norm(reshape(proj(embeds)))`,
/// input `[B, embeddingDim]`), `ip_adapter.MLPProjModel` (`.fullFace`: `proj.3(proj.2(GELU(proj.0(x))))`
/// per CLIP token, input `[B, L, clipDim]`) and `ip_adapter_faceid.MLPProjModel` (`.faceID`:
/// `norm(reshape(proj.2(GELU(proj.0(id)))))`, input `[B, idDim]`).
public final class TrainableMLPProjection: TrainableProjection {
  public enum Kind: Equatable {
    case global(embeddingDim: Int, crossDim: Int, tokens: Int)
    case fullFace(clipDim: Int, crossDim: Int)
    case faceID(FaceIDShape)
  }

  public let kind: Kind
  public let parameters: [(key: String, variable: Variable)]
  private let byKey: [String: Variable]

  public static func parameterShapes(_ kind: Kind) -> [(String, [Int])] {
    switch kind {
    case .global(let e, let c, let t):
      return [("proj.weight", [t * c, e]), ("proj.bias", [t * c]), ("norm.weight", [c]), ("norm.bias", [c])]
    case .fullFace(let e, let c):
      return [
        ("proj.0.weight", [e, e]), ("proj.0.bias", [e]), ("proj.2.weight", [c, e]), ("proj.2.bias", [c]),
        ("proj.3.weight", [c]), ("proj.3.bias", [c]),
      ]
    case .faceID(let f):
      return [
        ("proj.0.weight", [f.hiddenDim, f.idDim]), ("proj.0.bias", [f.hiddenDim]),
        ("proj.2.weight", [f.tokens * f.crossDim, f.hiddenDim]), ("proj.2.bias", [f.tokens * f.crossDim]),
        ("norm.weight", [f.crossDim]), ("norm.bias", [f.crossDim]),
      ]
    }
  }

  public init(kind: Kind, state: [String: Tensor]) throws {
    self.kind = kind
    parameters = try TrainableProjections.leaves(Self.parameterShapes(kind), from: state, owner: "TrainableMLPProjection")
    byKey = Dictionary(uniqueKeysWithValues: parameters.map { ($0.key, $0.variable) })
  }

  func p(_ key: String) -> Variable { byKey[key]! }

  public func callAsFunction(_ input: Variable, on tape: Tape) throws -> Variable {
    switch kind {
    case .global(let e, let c, let t):
      try Self.expect(input, rank: 2, width: e)
      let tokens = try tape.reshape(try tape.linear(input, weight: p("proj.weight"), bias: p("proj.bias")), [input.shape[0], t, c])
      return try tape.layerNorm(tokens, weight: p("norm.weight"), bias: p("norm.bias"), eps: 1e-5)
    case .fullFace(let e, _):
      try Self.expect(input, rank: 3, width: e)
      let h = tape.gelu(try tape.linear(input, weight: p("proj.0.weight"), bias: p("proj.0.bias")))
      let out = try tape.linear(h, weight: p("proj.2.weight"), bias: p("proj.2.bias"))
      return try tape.layerNorm(out, weight: p("proj.3.weight"), bias: p("proj.3.bias"), eps: 1e-5)
    case .faceID(let f):
      try Self.expect(input, rank: 2, width: f.idDim)
      let h = tape.gelu(try tape.linear(input, weight: p("proj.0.weight"), bias: p("proj.0.bias")))
      let out = try tape.reshape(try tape.linear(h, weight: p("proj.2.weight"), bias: p("proj.2.bias")), [input.shape[0], f.tokens, f.crossDim])
      return try tape.layerNorm(out, weight: p("norm.weight"), bias: p("norm.bias"), eps: 1e-5)
    }
  }

  static func expect(_ x: Variable, rank: Int, width: Int) throws {
    guard x.shape.count == rank, x.shape.last == width else {
      throw AutogradError.invalidArgument("projection input must be rank \(rank) with last axis \(width), got \(x.shape)")
    }
  }
}
