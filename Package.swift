// swift-tools-version: 6.0
import PackageDescription

// Release builds compile for the build machine's instruction set (`-target-cpu native`, like -march=native:
// AVX-512 where the CPU has it, else AVX2 + FMA; set MOE_TARGET_CPU to a CPU name, e.g. znver4, or to
// "generic"). Only the kernels drop bounds and overflow checks (`unchecked`); every module that reads files,
// requests or data — formats, tokenizer, model, training, serving, the CLI — keeps them (`checked`), so a
// parsing mistake is a trap, never silent memory corruption. Debug builds stay portable.
let targetCPU = Context.environment["MOE_TARGET_CPU"] ?? "native"
var checked: [SwiftSetting] = [.unsafeFlags(["-wmo"], .when(configuration: .release))]
#if arch(x86_64)
if targetCPU != "generic" {
    checked.append(.unsafeFlags(["-target-cpu", targetCPU], .when(configuration: .release)))
}
#endif
let unchecked = checked + [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

let package = Package(
    name: "swift-moe",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "moe", targets: ["moe"]),
        .library(name: "MoEModel", targets: ["MoEModel"]),
        .library(name: "MoEKernels", targets: ["MoEKernels"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // AVX2 block-format dot products (byte-wide vector work Swift's SIMD types do not express well), chosen at
        // run time from the CPU's features; MoEKernels falls back to its Swift kernels elsewhere.
        .target(name: "CMoEKernels", cSettings: [.unsafeFlags(["-O3"], .when(configuration: .release))]),
        // Raw-pointer SIMD kernels and the worker pool. Knows nothing of models or files.
        .target(name: "MoEKernels", dependencies: ["CMoEKernels"], swiftSettings: unchecked),
        // Checkpoint formats and configuration: safetensors read/write, config.json, generation_config.json.
        .target(name: "MoEFormats", dependencies: ["MoEKernels"], swiftSettings: checked),
        // Tokenizers: HF tokenizer.json (BPE) and tiktoken files, pre-tokenizer patterns, chat templates.
        .target(name: "MoETokenizer", dependencies: ["MoEFormats"], swiftSettings: checked),
        // Constrained decoding: GBNF grammars, JSON Schema and regular expressions compiled to grammars, the
        // per-token mask over a vocabulary (a `LogitsConstraint` for the generator and the engine); it takes each
        // token's bytes, and schemas as TemplateValue.
        .target(name: "MoEGrammar", dependencies: ["MoETokenizer", "MoEModel"], swiftSettings: checked),
        // Architectures, forward pass with KV cache, sampler, generator.
        .target(name: "MoEModel", dependencies: ["MoEKernels", "MoEFormats"], swiftSettings: checked),
        // Training: explicit forward/backward per layer, balance losses, optimizer, data shards, objectives.
        .target(name: "MoETraining", dependencies: ["MoEModel", "MoEKernels", "MoEFormats", "MoETokenizer"], swiftSettings: checked),
        // Serving: the continuous-batching engine, the OpenAI-compatible HTTP API, the usage ledger (SQLite or PostgreSQL).
        .target(name: "MoEServing",
                dependencies: ["MoEModel", "MoEKernels", "MoEFormats", "MoETokenizer", "MoEGrammar",
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "GRDB", package: "GRDB.swift"),
                               .product(name: "PostgresNIO", package: "postgres-nio"),
                               .product(name: "Logging", package: "swift-log"),
                               .product(name: "Prometheus", package: "swift-prometheus"),
                               .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                swiftSettings: checked),
        // The `moe` command line.
        .executableTarget(
            name: "moe",
            dependencies: ["MoEModel", "MoEKernels", "MoEFormats", "MoETokenizer", "MoETraining", "MoEServing", "MoEGrammar",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: checked),
        // Fuzz targets for the readers of user files (scripts/fuzz_parsers.sh builds them for libFuzzer; built
        // plainly, `moe-fuzz TARGET FILE…` replays inputs).
        .executableTarget(name: "moe-fuzz", dependencies: ["MoEFormats", "MoETokenizer", "MoETraining"], swiftSettings: checked),
        .testTarget(name: "MoEKernelsTests", dependencies: ["MoEKernels"], swiftSettings: checked),
        .testTarget(name: "MoEFormatsTests", dependencies: ["MoEFormats", "MoEKernels"], swiftSettings: checked),
        .testTarget(name: "MoETokenizerTests", dependencies: ["MoETokenizer"], swiftSettings: checked),
        .testTarget(name: "MoEGrammarTests", dependencies: ["MoEGrammar", "MoETokenizer", "MoEModel"], swiftSettings: checked),
        .testTarget(name: "MoEModelTests", dependencies: ["MoEModel", "MoEFormats", "MoEKernels"], swiftSettings: checked),
        .testTarget(name: "MoETrainingTests", dependencies: ["MoETraining", "MoEModel", "MoEFormats", "MoEKernels", "MoETokenizer"],
                    swiftSettings: checked),
        .testTarget(name: "MoEServingTests",
                    dependencies: ["MoEServing", "MoEModel", "MoETokenizer", "MoETraining",
                                   .product(name: "HummingbirdTesting", package: "hummingbird"),
                                   .product(name: "GRDB", package: "GRDB.swift")],
                    swiftSettings: checked),
        .testTarget(name: "EndToEndTests", dependencies: ["moe", "MoEServing"], swiftSettings: checked),
    ]
)
