import SandboxService
import Testing

@Suite struct OptionsTests {
    private func parse(_ arguments: [String], _ environment: [String: String] = [:]) throws
        -> (SandboxServer.Options, [String])
    {
        guard
            case .run(let options, let warnings, _) = try SandboxServer.Options.parse(
                arguments, environment: environment)
        else {
            Issue.record("expected options to run with")
            return (SandboxServer.Options(), [])
        }
        return (options, warnings)
    }

    @Test func defaultsWithoutArguments() throws {
        let (options, warnings) = try parse([])
        #expect(options.host == "0.0.0.0" && options.port == 8000 && options.root == "/app")
        #expect(options.maxTimeout == 300 && options.shutdownTimeout == 10 && options.idleTimeout == 60)
        #expect(options.token == nil && options.maxUploadBytes == nil && warnings.isEmpty)
    }

    @Test func theLimitsDefaultToTheBoundsTheServiceWasBuiltWith() throws {
        let (options, _) = try parse([])
        #expect(options.maxBodyBytes == 1 << 20 && options.replayBytes == 1 << 20)
        #expect(options.streamBufferBytes == 1 << 20 && options.drainTimeout == 0.1)
        #expect(options.keepFinished == 100 && options.keepFinishedFor == 600)
        #expect(options.maxHeaderBytes == 32768 && options.maxGRPCConnections == nil)
        let lines = SandboxServer.Options.help.split(separator: "\n").map(String.init)
        for (flag, shown) in [
            ("--max-body-bytes N", "1048576"), ("--replay-bytes N", "1048576"), ("--keep-finished N", "100"),
            ("--keep-finished-for SECONDS", "600"), ("--stream-buffer-bytes N", "1048576"),
            ("--drain-timeout SECONDS", "0.1"), ("--max-header-bytes N", "32768"),
        ] {
            let index = try #require(lines.firstIndex(of: "  " + flag), "\(flag) is not in the help")
            #expect(lines[index + 1].hasSuffix("(default: \(shown))"), "\(lines[index + 1])")
        }
    }

    @Test func theLimitsAreRead() throws {
        let (options, warnings) = try parse([
            "--max-body-bytes", "2000", "--replay-bytes=4096", "-keep-finished", "1", "--keep-finished-for", "1m30s",
            "--stream-buffer-bytes", "65536", "--drain-timeout", "2", "--max-header-bytes", "8192",
            "--max-grpc-connections=3",
        ])
        #expect(options.maxHeaderBytes == 8192 && options.maxGRPCConnections == 3)
        #expect(options.maxBodyBytes == 2000 && options.replayBytes == 4096 && options.keepFinished == 1)
        #expect(options.keepFinishedFor == 90 && options.streamBufferBytes == 65536 && options.drainTimeout == 2)
        #expect(warnings.isEmpty)
        #expect(try parse(["--drain-timeout", "250ms", "--keep-finished-for", "1h"]).0.drainTimeout == 0.25)
        #expect(try parse(["--keep-finished-for", "1h"]).0.keepFinishedFor == 3600)
        #expect(try parse(["--keep-finished-for", "0.5"]).0.keepFinishedFor == 0.5)
    }

    @Test(arguments: [
        "--max-body-bytes", "--replay-bytes", "--keep-finished", "--keep-finished-for", "--stream-buffer-bytes",
        "--drain-timeout", "--max-grpc-connections",
    ])
    func aLimitMustBePositive(flag: String) {
        for value in ["0", "-1", "x", ""] {
            #expect(throws: SandboxServer.Options.ParseError.self, "\(flag) \(value)") {
                try SandboxServer.Options.parse([flag, value], environment: [:])
            }
        }
    }

    @Test func everySpellingOfAnOptionIsAccepted() throws {
        for arguments in [
            ["--port", "9000"], ["--port=9000"], ["-port", "9000"], ["-port=9000"], ["--rest-port", "9000"],
            ["-rest-port=9000"],
        ] {
            #expect(try parse(arguments).0.port == 9000, "\(arguments)")
        }
    }

    @Test func theGoDaemonsArgumentsWork() throws {
        let (options, _) = try parse([
            "-listen-host", "127.0.0.1", "-rest-port=8080", "--root-dir", "/workspace", "-metadata-env-prefix",
            "SBX_", "--shutdown-timeout", "1m30s", "-http-idle-timeout=500ms",
        ])
        #expect(options.host == "127.0.0.1" && options.port == 8080 && options.root == "/workspace")
        #expect(options.metadataPrefix == "SBX_" && options.shutdownTimeout == 90 && options.idleTimeout == 0.5)
    }

    @Test(arguments: [
        ("10", 10.0), ("0.25", 0.25), ("10s", 10), ("1m30s", 90), ("1h", 3600), ("250ms", 0.25), ("1.5s", 1.5),
    ])
    func secondsTakeNumbersAndGoDurations(text: String, seconds: Double) throws {
        #expect(try parse(["--max-timeout", text]).0.maxTimeout == seconds)
    }

    @Test(arguments: [
        ["--max-timeout", "0"], ["--max-timeout", "-1"], ["--max-timeout", "1x"], ["--max-timeout", "inf"],
        ["--port", "http"], ["--port", "70000"], ["--max-connections", "0"], ["--max-output-bytes", "+5"],
        ["--max-output-bytes", "0x10"], ["--log-format", "xml"], ["--no-such-flag", "1"], ["--port"], ["stray"],
    ])
    func badArgumentsAreErrors(arguments: [String]) {
        #expect(throws: SandboxServer.Options.ParseError.self) {
            try SandboxServer.Options.parse(arguments, environment: [:])
        }
    }

    @Test func flagsWinOverTheEnvironmentAndBlankVariablesAreUnset() throws {
        let environment = ["SANDBOX_PORT": "9001", "SANDBOX_BASE_DIR": "  ", "SANDBOX_HOST": "127.0.0.1"]
        let (options, warnings) = try parse(["--port", "9002"], environment)
        #expect(options.port == 9002 && options.root == "/app" && options.host == "127.0.0.1" && warnings.isEmpty)
    }

    @Test func anInvalidVariableIsIgnoredWithAWarning() throws {
        let (options, warnings) = try parse([], ["SANDBOX_EXEC_TIMEOUT_SECONDS": "soon", "SANDBOX_PORT": "x"])
        #expect(options.maxTimeout == 300 && options.port == 8000)
        #expect(warnings.count == 2)
        #expect(warnings.contains { $0.contains("SANDBOX_EXEC_TIMEOUT_SECONDS=soon") && $0.contains("300") })
    }

    @Test func helpAndVersion() throws {
        #expect(throws: Never.self) {
            guard case .help = try SandboxServer.Options.parse(["-h"], environment: [:]) else {
                Issue.record("-h is not help")
                return
            }
            guard case .version = try SandboxServer.Options.parse(["-version"], environment: [:]) else {
                Issue.record("-version is not version")
                return
            }
        }
    }

    @Test func helpShowsEveryOptionWithItsDefaultAndVariable() {
        let help = SandboxServer.Options.help
        for declaration in SandboxServer.Options.declarations {
            #expect(help.contains("--" + declaration.names[0]), "\(declaration.names)")
            if let variable = declaration.environment { #expect(help.contains(variable)) }
        }
        #expect(help.contains("default: 300; env SANDBOX_EXEC_TIMEOUT_SECONDS"))
        #expect(help.contains("--port, --rest-port PORT"))
    }
}
