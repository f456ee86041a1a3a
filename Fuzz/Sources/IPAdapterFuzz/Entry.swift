// libFuzzer entry points. One executable serves every target: the environment variable
// FUZZ_TARGET (set by scripts/fuzz) names the target, read once in LLVMFuzzerInitialize.
//
// Built with `-sanitize=fuzzer,address -parse-as-library`: libFuzzer provides main(). A thrown
// Swift error is a normal outcome for malformed input; only traps (preconditions, overflow, bounds
// checks, force unwraps), sanitizer reports, timeouts and out-of-memory are failures.

import Foundation
#if canImport(Glibc)
  import Glibc
#endif

/// A fuzz target: consumes one input. Errors thrown are expected and ignored.
typealias FuzzTarget = @Sendable ([UInt8]) throws -> Void

/// Every target by name, in the order `scripts/fuzz all` runs them.
let fuzzTargets: [(name: String, run: FuzzTarget)] = [
  ("safetensors", SafeTensorsTarget.run),
  ("torch", TorchTarget.run),
  ("config", ConfigTarget.run),
  ("tokenizer", TokenizerTarget.run),
  ("png", ImageTarget.run),
  ("jpeg", ImageTarget.run),
  ("hub", HubTarget.run),
  ("lora", LoRATarget.run),
  ("onnx", ONNXTarget.run),
]

nonisolated(unsafe) var selectedTarget: FuzzTarget? = nil

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(
  _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> Int32 {
  let names = fuzzTargets.map(\.name).joined(separator: " ")
  guard let raw = getenv("FUZZ_TARGET") else {
    printError("ipadapter-fuzz: set FUZZ_TARGET to one of: \(names)")
    exit(2)
  }
  let name = String(cString: raw)
  if name == "list" {
    print(names)
    exit(0)
  }
  guard let target = fuzzTargets.first(where: { $0.name == name }) else {
    printError("ipadapter-fuzz: unknown FUZZ_TARGET '\(name)'; targets: \(names)")
    exit(2)
  }
  selectedTarget = target.run
  Scratch.setUp()
  return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  let bytes = size == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data!, count: size))
  do {
    try selectedTarget!(bytes)
  } catch {
    // Malformed input rejected with an error: the expected outcome.
  }
  return 0
}

func printError(_ line: String) {
  FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// A harness invariant: traps with `message` (kept in optimised builds, unlike `precondition`'s).
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
  if !condition { fatalError(message()) }
}
