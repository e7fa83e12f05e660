// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "sandboxd",
    products: [.executable(name: "sandboxd", targets: ["sandboxd"])],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev"])]
        ),
        .target(name: "CSandboxd"),
        .target(
            name: "SandboxService",
            dependencies: ["CMicroHTTPD", "CSandboxd", .product(name: "Logging", package: "swift-log")],
            plugins: ["EmbedOpenAPI"]
        ),
        // Build time only: compile API/openapi.json into SandboxService. The plugin lives under Sources/ because the
        // image's build stage (docker/Dockerfile) copies only Package.swift, Sources and Tests.
        .executableTarget(name: "EmbedText"),
        .plugin(
            name: "EmbedOpenAPI", capability: .buildTool(), dependencies: ["EmbedText"], path: "Sources/EmbedOpenAPI"),
        .executableTarget(
            name: "sandboxd",
            dependencies: [
                "SandboxService",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "SandboxServiceTests", dependencies: ["SandboxService"], exclude: ["Fixtures"]),
    ]
)
