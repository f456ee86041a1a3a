import NN
import TensorCore
import Testing
import Weights

/// Key paths of module trees and strict loading (`Module.loadWeights`): the contract every model
/// builds on — a parameter's key is its dotted path from the root, and loading reports every
/// missing, unexpected and mis-shaped key at once.
@Suite struct ModuleLoadingTests {
  /// A two-level tree with the shapes of a tiny attention block: `proj_in` (1×1 conv), `norm`,
  /// `blocks.0.to_q`, `blocks.0.to_out.0` (linear layers, one without bias).
  final class Block: Module {
    let toQ = Linear(6, 6, bias: false)
    let toOut = Linear(6, 6)
    var children: [(String, any Module)] { [("to_q", toQ), ("to_out.0", toOut)] }
  }

  final class Tree: Module {
    let projIn = Conv2d(3, 6, kernelSize: 1)
    let norm = GroupNorm(groups: 2, channels: 6, eps: 1e-5)
    let blocks = [Block()]
    var children: [(String, any Module)] {
      [("proj_in", projIn), ("norm", norm)] + blocks.enumerated().map { ("blocks.\($0)", $1 as any Module) }
    }
  }

  static func tensor(_ shape: [Int], start: Float = 0) throws -> Tensor {
    let n = shape.reduce(1, *)
    return try Tensor(shape: shape, floats: (0..<n).map { start + Float($0) / Float(n) })
  }

  static func completeWeights(prefix: String = "") throws -> [String: Tensor] {
    [
      prefix + "proj_in.weight": try tensor([6, 3, 1, 1]), prefix + "proj_in.bias": try tensor([6]),
      prefix + "norm.weight": try tensor([6], start: 1), prefix + "norm.bias": try tensor([6]),
      prefix + "blocks.0.to_q.weight": try tensor([6, 6]),
      prefix + "blocks.0.to_out.0.weight": try tensor([6, 6]), prefix + "blocks.0.to_out.0.bias": try tensor([6]),
    ]
  }

  @Test func parameterKeysAreDottedPathsFromTheRoot() {
    let keys = Tree().namedParameters().map(\.0)
    #expect(keys == [
      "proj_in.weight", "proj_in.bias", "norm.weight", "norm.bias", "blocks.0.to_q.weight",
      "blocks.0.to_out.0.weight", "blocks.0.to_out.0.bias",
    ])
    #expect(Tree().parameterCount == 18 + 6 + 6 + 6 + 36 + 36 + 6)
  }

  @Test func aCompleteCheckpointLoadsEveryParameterByKey() throws {
    let tree = Tree()
    let weights = try Self.completeWeights()
    try tree.loadWeights(from: TensorDictionary(weights), source: "tree.safetensors")
    for (key, parameter) in tree.namedParameters() {
      #expect(parameter.value.scalars() == weights[key]?.scalars(), "\(key)")
    }
  }

  @Test func aPrefixSelectsTheSubtreeOfALargerCheckpoint() throws {
    let tree = Tree()
    var weights = try Self.completeWeights(prefix: "text_model.")
    weights["other_model.weight"] = try Self.tensor([2])
    var options = LoadOptions(prefix: "text_model.")
    try tree.loadWeights(from: TensorDictionary(weights), source: "big.safetensors", options: options)
    #expect(tree.norm.weight.value.scalars().first == 1)
    // Keys under the prefix that nothing consumes are still refused.
    weights["text_model.extra.weight"] = try Self.tensor([2])
    options.strict = true
    let error = #expect(throws: WeightLoadingError.self) {
      try Tree().loadWeights(from: TensorDictionary(weights), source: "big.safetensors", options: options)
    }
    #expect(error?.unexpected == ["text_model.extra.weight"])
  }

  @Test func strictLoadingReportsEveryProblemAtOnceNamingEachKey() throws {
    var weights = try Self.completeWeights()
    weights["blocks.0.to_q.weight"] = nil  // missing
    weights["blocks.0.to_k.weight"] = try Self.tensor([6, 6])  // unexpected
    weights["norm.bias"] = try Self.tensor([7])  // wrong shape
    let error = try #require(throws: WeightLoadingError.self) {
      try Tree().loadWeights(from: TensorDictionary(weights), source: "bad.safetensors")
    }
    #expect(error.source == "bad.safetensors")
    #expect(error.missing == ["blocks.0.to_q.weight"])
    #expect(error.unexpected == ["blocks.0.to_k.weight"])
    #expect(error.shapeMismatches.map(\.key) == ["norm.bias"])
    #expect(error.shapeMismatches.first?.expected == [6])
    #expect(error.shapeMismatches.first?.actual == [7])
    let text = error.description
    for fragment in ["bad.safetensors", "missing keys (1): blocks.0.to_q.weight", "unexpected keys (1): blocks.0.to_k.weight",
                     "norm.bias expected [6] but the file has [7]"] {
      #expect(text.contains(fragment), "\(text)")
    }
  }

  @Test func nonStrictLoadingAcceptsExtraKeysButNeverMissingOnes() throws {
    var weights = try Self.completeWeights()
    weights["ema.decay"] = try Self.tensor([1])
    try Tree().loadWeights(from: TensorDictionary(weights), source: "ema.ckpt", options: LoadOptions(strict: false))
    weights["proj_in.bias"] = nil
    let error = #expect(throws: WeightLoadingError.self) {
      try Tree().loadWeights(from: TensorDictionary(weights), source: "ema.ckpt", options: LoadOptions(strict: false))
    }
    #expect(error?.missing == ["proj_in.bias"])
  }

  @Test func ignoredKeysMayBePresentWithoutAParameter() throws {
    var weights = try Self.completeWeights()
    weights["position_ids"] = try Self.tensor([1, 4])
    let options = LoadOptions(ignore: { $0 == "position_ids" })
    try Tree().loadWeights(from: TensorDictionary(weights), source: "clip.bin", options: options)
  }

  @Test func weightsHoldingNaNAreRefusedUnlessAllowed() throws {
    var weights = try Self.completeWeights()
    weights["blocks.0.to_out.0.bias"] = try Tensor(shape: [6], floats: [0, 1, .nan, 3, 4, 5])
    let error = #expect(throws: WeightLoadingError.self) {
      try Tree().loadWeights(from: TensorDictionary(weights), source: "nan.safetensors")
    }
    #expect(error?.nonFinite.first?.hasPrefix("blocks.0.to_out.0.bias") == true)
    let allow = LoadOptions(prepare: PrepareOptions(allowNonFiniteWeights: true))
    try Tree().loadWeights(from: TensorDictionary(weights), source: "nan.safetensors", options: allow)
  }

  @Test func assigningAParameterChecksItsShape() throws {
    let linear = Linear(6, 4)
    try linear.weight.assign(try Self.tensor([4, 6]))
    #expect(throws: TensorError.self) { try linear.weight.assign(try Self.tensor([6, 4])) }
  }
}
