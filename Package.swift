// swift-tools-version:6.0
// swift-qlora: QLoRA fine-tuning on CPUs with a hard RAM budget.
// Dependencies flow one way: C shims -> Kernels -> IO -> Quant -> Model -> (Convert, Optim) -> Train -> commands.
import PackageDescription

let package = Package(
    name: "swift-qlora",
    products: [
        .executable(name: "quantize", targets: ["quantize"]),
        .executable(name: "qlora-eval", targets: ["qlora-eval"]),
        .executable(name: "qlora-train", targets: ["qlora-train"]),
        // Every module whose types the public API of another exposes.
        .library(name: "QLoRAKernels", targets: ["QLoRAKernels"]),
        .library(name: "QLoRAIO", targets: ["QLoRAIO"]),
        .library(name: "QLoRATokenizer", targets: ["QLoRATokenizer"]),
        .library(name: "QLoRAQuant", targets: ["QLoRAQuant"]),
        .library(name: "QLoRAModel", targets: ["QLoRAModel"]),
        .library(name: "QLoRAConvert", targets: ["QLoRAConvert"]),
        .library(name: "QLoRAOptim", targets: ["QLoRAOptim"]),
        .library(name: "QLoRATrain", targets: ["QLoRATrain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // OpenBLAS is loaded at run time (dlopen) so that we can pick its kernels before it
        // initialises; linking it would let Debian's build choose slow generic kernels.
        .target(name: "COpenBLAS", linkerSettings: [.linkedLibrary("dl")]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        // Hot loops clang vectorizes and Swift did not (see CQLoRAKernels.h).
        .target(name: "CQLoRAKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "QLoRAKernels", dependencies: ["COpenBLAS", "CQLoRAKernels"]),
        .target(name: "QLoRAQuant", dependencies: ["QLoRAKernels", "CQLoRAKernels", "QLoRAIO"], exclude: ["FORMAT.md"]),
        .target(name: "QLoRAIO", dependencies: ["QLoRAKernels"]),
        // tokenizer.json (byte-level and SentencePiece-style BPE) and its export from GGUF metadata.
        .target(name: "QLoRATokenizer", dependencies: ["QLoRAIO"]),
        // The model: its architecture (ModelShape), frozen weights, LoRA, forward and backward.
        .target(name: "QLoRAModel", dependencies: ["QLoRAQuant", "QLoRAIO", "QLoRAKernels", "CQLoRAKernels"]),
        // The converter, an application pipeline beside the trainer: sources -> NF4 checkpoint.
        .target(name: "QLoRAConvert", dependencies: ["QLoRAModel", "QLoRATokenizer", "QLoRAQuant", "QLoRAIO", "QLoRAKernels", "CQLoRAKernels"]),
        // AdamW with its state in pages that spill to an LZ4-compressed mmap file (QLoRAOptim/PageStore.swift).
        .target(name: "QLoRAOptim", dependencies: ["QLoRAIO", "QLoRAKernels", "CQLoRAKernels", "CLZ4"]),
        // The trainer: memory planner and governor, data, the training loop, checkpoints, events.
        .target(name: "QLoRATrain", dependencies: ["QLoRAModel", "QLoRAOptim", "QLoRAConvert", "QLoRATokenizer", "QLoRAIO", "QLoRAKernels"]),
        // What every command shares: byte sizes, the status line, signals, exit statuses.
        .target(name: "QLoRACLI"),
        .executableTarget(
            name: "qlora-train",
            dependencies: ["QLoRATrain", "QLoRACLI", "QLoRAModel", "QLoRAConvert", "QLoRAIO", "QLoRAKernels", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "quantize",
            dependencies: ["QLoRAConvert", "QLoRACLI", "QLoRAIO", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "qlora-eval",
            dependencies: ["QLoRAModel", "QLoRACLI", "QLoRAKernels", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // Benchmarks (benchmarks/README.md): release builds only; they refuse to run in debug.
        .target(name: "BenchmarkSupport", dependencies: ["QLoRAKernels"], path: "benchmarks/BenchmarkSupport"),
        .executableTarget(name: "quantize-bench", dependencies: ["BenchmarkSupport", "QLoRAQuant", "QLoRAKernels"], path: "benchmarks/quantize-bench"),
        // The synthetic NF4 models of the training benchmarks, made once into a cache directory.
        .target(name: "BenchmarkModels", dependencies: ["BenchmarkSupport", "QLoRAModel", "QLoRAConvert", "QLoRAIO"], path: "benchmarks/BenchmarkModels"),
        .executableTarget(name: "train-step-bench", dependencies: ["BenchmarkSupport", "BenchmarkModels", "QLoRAModel", "QLoRAIO", "QLoRAKernels"], path: "benchmarks/train-step-bench"),
        .executableTarget(name: "optim-bench", dependencies: ["BenchmarkSupport", "BenchmarkModels", "QLoRAOptim", "QLoRAModel", "QLoRAIO", "QLoRAKernels"], path: "benchmarks/optim-bench"),
        .executableTarget(name: "matmul-bench", dependencies: ["BenchmarkSupport", "QLoRAModel", "QLoRAQuant", "QLoRAKernels"], path: "benchmarks/matmul-bench"),
        .target(name: "_TestSupport", dependencies: ["QLoRAIO", "QLoRAKernels"], path: "Tests/_TestSupport"),
        .testTarget(name: "QLoRAKernelsTests", dependencies: ["QLoRAKernels", "_TestSupport"]),
        .testTarget(name: "QLoRAQuantTests", dependencies: ["QLoRAQuant", "QLoRAIO", "QLoRAKernels", "CQLoRAKernels", "_TestSupport"]),
        .testTarget(name: "QLoRAModelTests", dependencies: ["QLoRAModel", "QLoRAKernels", "QLoRAIO", "qlora-eval", "_TestSupport"]),
        .testTarget(name: "QLoRAOptimTests", dependencies: ["QLoRAOptim", "QLoRAModel", "QLoRAIO", "QLoRAKernels", "_TestSupport"]),
        .testTarget(name: "QLoRATrainTests", dependencies: ["QLoRATrain", "qlora-train", "QLoRAModel", "QLoRAOptim", "QLoRATokenizer", "QLoRAIO", "QLoRAConvert", "QLoRAKernels", "QLoRACLI", "_TestSupport"]),
        .testTarget(name: "QLoRAIOTests", dependencies: ["QLoRAIO", "QLoRATokenizer", "_TestSupport"]),
        .testTarget(name: "QLoRATokenizerTests", dependencies: ["QLoRATokenizer", "QLoRAIO", "_TestSupport"]),
        .testTarget(
            name: "QLoRAConvertTests",
            dependencies: ["QLoRAConvert", "quantize", "QLoRACLI", "QLoRAModel", "QLoRAQuant", "QLoRAIO", "_TestSupport"]
        ),
    ]
)
