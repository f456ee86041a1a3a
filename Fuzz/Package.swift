// swift-tools-version:6.0
// libFuzzer harness for the engine's parsers: a separate package so that the main package's
// `swift build` / `swift test` are untouched. Build and run it with `scripts/fuzz` (it passes
// `-sanitize=fuzzer,address -parse-as-library` to every Swift module, the engine's included).
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
    // The Hub module is not a product of the main package, so its sources are compiled here under
    // another module name through the symlink Sources/FuzzHub -> ../../Sources/Hub (Foundation only).
    .target(name: "FuzzHub", path: "Sources/FuzzHub", swiftSettings: [.unsafeFlags(["-O"])]),
    // One executable for every target; FUZZ_TARGET chooses (see Sources/IPAdapterFuzz/Entry.swift).
    .executableTarget(
      name: "ipadapter-fuzz",
      dependencies: [
        .product(name: "TensorCore", package: "IPAdapterEngine"),
        .product(name: "Weights", package: "IPAdapterEngine"),
        .product(name: "Tokenizers", package: "IPAdapterEngine"),
        .product(name: "Schedulers", package: "IPAdapterEngine"),
        .product(name: "Imaging", package: "IPAdapterEngine"),
        .product(name: "NN", package: "IPAdapterEngine"),
        .product(name: "Models", package: "IPAdapterEngine"),
        .product(name: "IPAdapter", package: "IPAdapterEngine"),
        "FuzzHub",
      ],
      path: "Sources/IPAdapterFuzz",
      // libFuzzer provides main(); the harness only defines LLVMFuzzerTestOneInput. Optimised like
      // the engine's modules, so that the harness's own work (zip packing, CRCs) stays cheap.
      swiftSettings: [.unsafeFlags(["-parse-as-library", "-O"])]),
  ]
)
