import Synchronization

/// The operations every front offers, over one root, one runner, one environment and one table of background
/// processes: run a command and collect or stream its output, start a background process and follow its events,
/// write its stdin, signal it, resize its terminal, wait for it, and read, list, write and remove files. Each front
/// (the legacy and v1 HTTP APIs, gRPC) parses its requests, calls these, and maps `SandboxError` to its own answers
/// in one place. Knows nothing of HTTP or gRPC.
public final class Sandbox: Sendable {
    public let root: SandboxRoot
    let runner: CommandRunner
    let files: FileTree
    /// The background processes (`start`).
    let processes: ProcessTable
    /// The directory watches (`watch`).
    let watches: Watches
    /// The environment commands start from (the server's, without its secrets), as `KEY=value`.
    let environment: [String]
    /// Bytes of each output stream a collected run keeps.
    public let maxOutputBytes: Int
    /// Output bytes held for one streaming client before the command's pipes stop being read.
    public let streamBufferBytes: Int
    private let stopping = Atomic(false)

    init(
        root: SandboxRoot, runner: CommandRunner, environment: [String], maxOutputBytes: Int, streamBufferBytes: Int,
        processLimits: ProcessTable.Limits = ProcessTable.Limits(), watchLimits: Watches.Limits = Watches.Limits()
    ) {
        self.root = root
        self.runner = runner
        self.environment = environment
        self.maxOutputBytes = maxOutputBytes
        self.streamBufferBytes = streamBufferBytes
        files = FileTree(root: root)
        processes = ProcessTable(runner: runner, limits: processLimits)
        watches = Watches(limits: watchLimits)
    }

    /// Whether shutdown has begun: background processes are refused, and health checks say so.
    public var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// Shutdown begins: no background process or directory watch starts from now on (`unavailable`); running
    /// processes go on until the server ends every command; every watch ends with an `error` event saying so.
    public func beginShutdown() {
        stopping.store(true, ordering: .releasing)
        processes.close()
        watches.close()
    }

    // MARK: Commands

    /// A command to run: `argv` as given, in `cwd` (relative to the root, a leading slash re-rooted; the root when
    /// nil or empty), with `variables` set (a value) or unset (nil) over the server's environment, in order.
    /// - Throws: `invalidArgument` for an empty command, a NUL byte or a variable name with `=`; `permissionDenied`
    ///   for a cwd outside the root; `notFound` for a cwd that does not exist; `invalidArgument` for one that is not
    ///   a directory.
    public func command(
        _ argv: [String], cwd: String?, variables: [(String, String?)], timeout: Double? = nil
    ) throws(SandboxError) -> CommandSpec {
        guard let program = argv.first, !program.isEmpty else {
            throw SandboxError(.invalidArgument, "the command is empty")
        }
        guard !argv.contains(where: { $0.utf8.contains(0) }) else {
            throw SandboxError(.invalidArgument, "the command contains a NUL character")
        }
        for (name, value) in variables {
            guard !name.isEmpty, !name.utf8.contains(UInt8(ascii: "=")), !name.utf8.contains(0),
                !(value?.utf8.contains(0) ?? false)
            else { throw SandboxError(.invalidArgument, "\"\(name)\" is not a usable environment variable") }
        }
        let directory = try directory(cwd)
        var spec = CommandSpec(
            argv: argv, cwd: directory.path, environment: Self.environment(base: environment, applying: variables),
            timeout: timeout)
        spec.directory = directory.descriptor
        return spec
    }

    /// `base` (`KEY=value` strings) with `changes` applied: a variable set again keeps its place, a new one is added
    /// after the others in the order first named, the last value of a name wins, nil removes it.
    static func environment(base: [String], applying changes: [(String, String?)]) -> [String] {
        guard !changes.isEmpty else { return base }  // most commands: the server's environment as it is, shared
        let changed = Dictionary(changes, uniquingKeysWith: { $1 })
        var seen: Set<String> = []
        var result: [String] = []
        for entry in base {
            let name = String(decoding: entry.utf8.prefix { $0 != UInt8(ascii: "=") }, as: UTF8.self)
            guard let change = changed[name] else {
                result.append(entry)
                continue
            }
            seen.insert(name)
            if let value = change { result.append("\(name)=\(value)") }
        }
        for (name, _) in changes where !seen.contains(name) {
            seen.insert(name)
            if let value = changed[name] ?? nil { result.append("\(name)=\(value)") }
        }
        return result
    }

    /// Runs `spec` in the foreground: `sink` receives its events, ending with one `.exit`; the caller owns the
    /// command (cancels it when its client leaves). It counts against `--max-processes` and in the spawn-failure
    /// metric as every command does (the runner keeps both).
    /// - Throws: the spawn's failure as `SandboxError(_:)` maps it: `notFound` for a program that does not exist,
    ///   `permissionDenied` for one that cannot be executed, `resourceExhausted` at `--max-processes` or when the
    ///   server is out of descriptors, processes or memory.
    public func run(_ spec: CommandSpec, sink: @escaping @Sendable (CommandEvent) -> Void) throws(SandboxError)
        -> RunningCommand
    {
        do {
            return try runner.start(spec, sink: sink)
        } catch {
            throw SandboxError(error)
        }
    }

    /// Runs `spec` to its end, keeping its output in `output`; `done` gets the output and how the command ended, once,
    /// after all its output. Throws as `run(_:sink:)`.
    public func run<Output: CommandOutput>(
        _ spec: CommandSpec, collecting output: Output,
        done: @escaping @Sendable (consuming Output, Termination) -> Void
    ) throws(SandboxError) -> RunningCommand {
        // Optional, so that the output leaves the lock at the exit without a copy of what it holds.
        let kept = Mutex<Output?>(output)
        return try run(spec) { event in
            switch event {
            case .stdout(let bytes): kept.withLock { $0?.append(bytes, from: .stdout) }
            case .stderr(let bytes): kept.withLock { $0?.append(bytes, from: .stderr) }
            case .exit(let termination):
                // Handed over, not copied: a copy would be written to (and so duplicated) by `done`.
                if let output = kept.withLock({ $0.take() }) { done(consume output, termination) }
            }
        }
    }

    /// The working directory: a directory under the root (symlinks resolved), open, so the child enters exactly the
    /// directory that was checked.
    private func directory(_ path: String?) throws(SandboxError) -> (descriptor: Descriptor, path: String) {
        guard let path, !path.isEmpty else { return (root.descriptor, root.path) }
        do {
            return try files.workingDirectory(path)
        } catch {
            let message =
                switch error.code {
                case .escapesRoot: "cwd '\(path)' is outside the sandbox root"
                case .notFound: "cwd '\(path)' does not exist"
                case .tooManyLinks: "cwd '\(path)': too many levels of symbolic links"
                case .permissionDenied: "cwd '\(path)': permission denied"
                case .invalidPath: "cwd '\(path)' is not a usable path"
                default: "cwd '\(path)' is not a directory in the sandbox"
                }
            let code: SandboxError.Code =
                switch error.code {
                case .escapesRoot, .permissionDenied: .permissionDenied
                case .notFound: .notFound
                default: .invalidArgument
                }
            throw SandboxError(code, message, path: path, cause: .file(error.code))
        }
    }
}
