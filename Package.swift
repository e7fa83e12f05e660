// swift-tools-version:6.1
import PackageDescription

/// This package's directory: linker arguments that name a file need its whole path.
let packageDirectory = String(#filePath.dropLast("/Package.swift".count))

let package = Package(
    name: "sandboxd",
    products: [.executable(name: "sandboxd", targets: ["sandboxd"])],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.0"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.0"),
        // Without its default traits: BinaryDelimitedStreams would link the whole of Foundation (CoreFoundation's
        // start-up work, ~1 MiB resident) for streams sandboxd never uses; FoundationEssentials is enough.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0", traits: []),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CMicroHTTPD",
            providers: [.apt(["libmicrohttpd-dev"])]
        ),
        .target(name: "CSandboxd"),
        .target(
            name: "SandboxService",
            dependencies: ["CMicroHTTPD", "CSandboxd", .product(name: "Logging", package: "swift-log")],
            // Debian's static libmicrohttpd: its shared library would load GnuTLS for HTTPS sandboxd never serves
            // (Sources/CSandboxd/without_tls.c).
            linkerSettings: [.linkedLibrary(":libmicrohttpd.a")],
            plugins: ["EmbedOpenAPI"]
        ),
        // Build time only: compile API/openapi.json into SandboxService. The plugin lives under Sources/ because the
        // image's build stage (docker/Dockerfile) copies only Package.swift, Sources and Tests.
        .executableTarget(name: "EmbedText"),
        .plugin(
            name: "EmbedOpenAPI", capability: .buildTool(), dependencies: ["EmbedText"], path: "Sources/EmbedOpenAPI"),
        .target(
            name: "SandboxGRPC",
            dependencies: [
                "SandboxService",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                // The HTTP/2 transport's core (re-exported by this product), with a listener of our own
                // (PlaintextListener). The Posix product would also build TLS (swift-nio-ssl's BoringSSL,
                // swift-certificates, swift-crypto) into every build for a listener that serves h2c only; on
                // Linux this product's Network.framework half is empty.
                .product(name: "GRPCNIOTransportHTTP2TransportServices", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "sandboxd",
            dependencies: [
                "SandboxService",
                "SandboxGRPC",
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["symbol-order.txt"],
            // lld with packed relative relocations (DT_RELR) and no exported symbol table: the static Swift
            // standard library's link arguments export every symbol (-export-dynamic) and gold writes 3 MB of
            // relocations that the loader touches at every start; together they cost ~7 MiB of resident memory.
            // The functions that run at start, idle and in one request of each kind are placed first in the text
            // (symbol-order.txt, written by `make symbol-order`): spread over the whole text they made an idle
            // server map 7.7 MB of it, together 3.5 MB.
            linkerSettings: [
                .unsafeFlags([
                    "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs", "-Xlinker",
                    "--no-export-dynamic", "-Xlinker",
                    "--symbol-ordering-file=\(packageDirectory)/Sources/sandboxd/symbol-order.txt", "-Xlinker",
                    "--no-warn-symbol-ordering",
                ])
            ]
        ),
        .testTarget(name: "SandboxServiceTests", dependencies: ["SandboxService"], exclude: ["Fixtures"]),
    ]
)
