// swift-tools-version: 6.0
import PackageDescription

// Release builds target AVX2+FMA on x86-64 so the SIMD kernels get 256-bit vectors and fused
// multiply-adds; `-Ounchecked` drops integer-overflow traps that block vectorization of hot loops.
#if arch(x86_64)
let cpuFlags = ["-target-cpu", "haswell"]
#else
let cpuFlags: [String] = []
#endif
let kernelSettings: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked"] + cpuFlags, .when(configuration: .release)),
]

let package = Package(
    name: "elle",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "elle", targets: ["elle"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // MARK: C libraries
        .systemLibrary(
            name: "COpenMPI", path: "CMPI/OpenMPI", pkgConfig: "ompi",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .target(name: "CMPI", dependencies: ["COpenMPI"], path: "CMPI/Shim"),
        .systemLibrary(
            name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),

        // MARK: Swift modules (each depends only on those above it)
        .target(name: "Tensors", dependencies: ["COpenBLAS", "CDNNL"], swiftSettings: kernelSettings),
        .target(name: "Model", dependencies: ["Tensors"], swiftSettings: kernelSettings),
        .target(name: "Corpus", dependencies: ["Tensors"], swiftSettings: kernelSettings),
        .target(name: "Communication", dependencies: ["CMPI", "Tensors"], swiftSettings: kernelSettings),
        .target(name: "TensorBoard"),
        .target(
            name: "Training", dependencies: ["Tensors", "Model", "Corpus", "Communication", "TensorBoard"],
            swiftSettings: kernelSettings),
        .target(
            name: "Lifelong",
            dependencies: ["Tensors", "Model", "Corpus", "Communication", "Training", .product(name: "Yams", package: "Yams")],
            swiftSettings: kernelSettings),
        .target(name: "Interop", dependencies: ["Tensors", "Model", "Corpus", "Training"], swiftSettings: kernelSettings),
        .target(name: "Finetune", dependencies: ["Tensors", "Model", "Corpus", "Communication", "Training"], swiftSettings: kernelSettings),

        // MARK: executable
        .executableTarget(
            name: "elle",
            dependencies: [
                "Tensors", "Model", "Corpus", "Communication", "Training", "Lifelong", "Interop", "Finetune",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: kernelSettings),

        // MARK: tests
        .target(name: "TestSupport", dependencies: ["Tensors", "Model"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "TestSupport"]),
        .testTarget(name: "ModelTests", dependencies: ["Model", "TestSupport"]),
        .testTarget(name: "CommunicationTests", dependencies: ["Communication", "Training", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Model", "Corpus", "TestSupport"]),
        .testTarget(name: "CorpusTests", dependencies: ["Corpus", "TestSupport"]),
        .testTarget(name: "GrowthTests", dependencies: ["Model", "Training", "Corpus", "TestSupport"]),
        .testTarget(name: "ElleTests", dependencies: ["TestSupport"]),
        .testTarget(name: "LifelongTests", dependencies: ["Lifelong", "Model", "Corpus", "Communication", "Training", "TestSupport"]),
        .testTarget(name: "FinetuneTests", dependencies: ["Finetune", "Model", "Corpus", "Communication", "Training", "TestSupport"]),
        .testTarget(name: "TensorBoardTests", dependencies: ["TensorBoard", "Training", "TestSupport"]),
        .testTarget(name: "InteropTests", dependencies: ["Interop", "Model", "Corpus", "Training", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
