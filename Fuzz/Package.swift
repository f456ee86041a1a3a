// swift-tools-version:6.0
// libFuzzer harness for the engine's parsers: a separate package so that the main package's
// `swift build` / `swift test` are untouched. Build and run it with `scripts/fuzz` (it passes
// `-sanitize=fuzzer,address -O` to every Swift module, the engine's included).
import PackageDescription

let package = Package(
  name: "IPAdapterFuzz",
  platforms: [.macOS(.v14)],
  dependencies: [
    // Named explicitly: a path dependency's identity is otherwise its folder name, which depends on
    // where the repository was cloned.
    .package(name: "IPAdapterEngine", path: ".."),
  ],
  targets: [
    // One executable for every target; FUZZ_TARGET chooses (see Sources/IPAdapterFuzz/Entry.swift).
    .executableTarget(
      name: "ipadapter-fuzz",
      dependencies: [
        .product(name: "TensorCore", package: "IPAdapterEngine"),
        .product(name: "Weights", package: "IPAdapterEngine"),
        .product(name: "Tokenizers", package: "IPAdapterEngine"),
        .product(name: "Schedulers", package: "IPAdapterEngine"),
        .product(name: "TorchRandom", package: "IPAdapterEngine"),
        .product(name: "Imaging", package: "IPAdapterEngine"),
        .product(name: "NN", package: "IPAdapterEngine"),
        .product(name: "Models", package: "IPAdapterEngine"),
        .product(name: "IPAdapter", package: "IPAdapterEngine"),
        .product(name: "Hub", package: "IPAdapterEngine"),
        .product(name: "ONNX", package: "IPAdapterEngine"),
      ],
      path: "Sources/IPAdapterFuzz",
      // libFuzzer provides main(); the harness only defines LLVMFuzzerTestOneInput. scripts/fuzz
      // builds everything optimised (-O, -O2), the engine's modules included.
      swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
  ]
)
