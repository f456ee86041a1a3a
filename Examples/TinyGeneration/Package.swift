// swift-tools-version:6.0
// An app-side example: depends on the engine *by version* (as an app would), so SwiftPM applies the
// rules it applies to versioned dependencies (no unsafe flags in any target used).
import PackageDescription

// The engine's git URL. CI points it at a bare clone of the commit under test, tagged 0.2.0
// (`.ci/example`); an app names the published repository.
let engineURL = Context.environment["IPADAPTER_ENGINE_URL"] ?? "https://github.com/ipadapter-swift/ipadapter-engine.git"

let package = Package(
  name: "TinyGeneration",
  platforms: [.macOS(.v14)],
  dependencies: [
    .package(url: engineURL, from: "0.2.0")
  ],
  targets: [
    .executableTarget(
      name: "tiny-generation",
      dependencies: [
        .product(name: "Pipelines", package: "ipadapter-engine"),
        .product(name: "Imaging", package: "ipadapter-engine"),
        .product(name: "Hub", package: "ipadapter-engine"),
      ],
      path: "Sources/TinyGeneration")
  ]
)
