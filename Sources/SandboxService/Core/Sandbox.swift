/// The operations every front offers on commands, over one root, one runner and one environment: validate and
/// prepare a command, start it. Knows nothing of HTTP or gRPC; errors are `SandboxError`s.
public final class Sandbox: Sendable {
    public let root: SandboxRoot
    let runner: CommandRunner
    /// The environment commands start from (the server's, without its secrets), as `KEY=value`.
    let environment: [String]
    /// Bytes of each output stream a collected run keeps.
    public let maxOutputBytes: Int
    /// Output bytes held for one streaming client before the command's pipes stop being read.
    public let streamBufferBytes: Int

    init(root: SandboxRoot, runner: CommandRunner, environment: [String], maxOutputBytes: Int, streamBufferBytes: Int) {
        self.root = root
        self.runner = runner
        self.environment = environment
        self.maxOutputBytes = maxOutputBytes
        self.streamBufferBytes = streamBufferBytes
    }

    /// A command to run: `argv` as given, in `cwd` (relative to the root, a leading slash re-rooted; the root when
    /// nil), with `variables` set over the server's environment.
    /// - Throws: `invalidArgument` for an empty command, a NUL byte or a variable name with `=`; `permissionDenied`
    ///   for a cwd outside the root; `notFound` for a cwd that does not exist; `invalidArgument` for one that is not
    ///   a directory.
    public func command(
        _ argv: [String], cwd: String?, variables: [(String, String)], timeout: Double? = nil
    ) throws(SandboxError) -> CommandSpec {
        guard let program = argv.first, !program.isEmpty else {
            throw SandboxError(.invalidArgument, "the command is empty")
        }
        guard !argv.contains(where: { $0.utf8.contains(0) }) else {
            throw SandboxError(.invalidArgument, "the command contains a NUL character")
        }
        for (name, value) in variables {
            guard !name.isEmpty, !name.utf8.contains(UInt8(ascii: "=")), !name.utf8.contains(0),
                !value.utf8.contains(0)
            else { throw SandboxError(.invalidArgument, "\"\(name)\" is not a usable environment variable") }
        }
        var environment = self.environment
        let names = Set(variables.map(\.0))
        environment.removeAll { entry in
            names.contains(String(decoding: entry.utf8.prefix { $0 != UInt8(ascii: "=") }, as: UTF8.self))
        }
        environment += variables.map { "\($0.0)=\($0.1)" }
        let directory = try directory(cwd)
        var spec = CommandSpec(argv: argv, cwd: directory.path, environment: environment, timeout: timeout)
        spec.directory = directory.descriptor
        return spec
    }

    /// Starts `spec`; `sink` receives its events, ending with one `.exit`. It counts against `--max-processes` and
    /// in the spawn-failure metric as every command does (the runner keeps both).
    /// - Throws: the spawn's failure as `SandboxError(_:)` maps it: `notFound` for a program that does not exist,
    ///   `permissionDenied` for one that cannot be executed, `resourceExhausted` at `--max-processes` or when the
    ///   server is out of descriptors, processes or memory.
    public func start(_ spec: CommandSpec, sink: @escaping @Sendable (CommandEvent) -> Void) throws(SandboxError)
        -> RunningCommand
    {
        do {
            return try runner.start(spec, sink: sink)
        } catch {
            throw SandboxError(error)
        }
    }

    /// The working directory: a directory under the root (symlinks resolved), open, so the child enters exactly the
    /// directory that was checked.
    private func directory(_ path: String?) throws(SandboxError) -> (descriptor: Descriptor?, path: String) {
        guard let path, !path.isEmpty else { return (nil, root.path) }
        do {
            let found = try FileTree(root: root).workingDirectory(path)
            return (found.descriptor, found.path)
        } catch {
            switch error.code {
            case .escapesRoot: throw SandboxError(.permissionDenied, "cwd '\(path)' is outside the sandbox root")
            case .notFound: throw SandboxError(.notFound, "cwd '\(path)' does not exist")
            case .tooManyLinks: throw SandboxError(.invalidArgument, "cwd '\(path)': too many levels of symbolic links")
            case .permissionDenied: throw SandboxError(.permissionDenied, "cwd '\(path)': permission denied")
            default: throw SandboxError(.invalidArgument, "cwd '\(path)' is not a directory in the sandbox")
            }
        }
    }
}
