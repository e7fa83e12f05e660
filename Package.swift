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
            dependencies: ["CMicroHTTPD", "CSandboxd", .product(name: "Logging", package: "swift-log")]
        ),
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
