import FoundationEssentials
import GRPCCore
import Glibc
import SandboxService
import Synchronization

/// `process.v1.ProcessService` (agent-sandbox's Go daemon's contract) as an adapter over the core: each RPC turns
/// its message into a core call, core events into messages, and `SandboxError`s into statuses (`RPCError(_:)`).
struct ProcessService: Process_V1_ProcessService.SimpleServiceProtocol {
    let sandbox: Sandbox
    let processes = StartedProcesses()

    func start(
        request: Process_V1_StartRequest, response: RPCWriter<Process_V1_StartResponse>, context: ServerContext
    ) async throws {
        var spec = try command(request.config)
        if request.hasPty {
            spec.terminal = TerminalSize(
                columns: UInt16(clamping: max(1, request.pty.cols)), rows: UInt16(clamping: max(1, request.pty.rows)))
        } else {
            spec.stdin = true
        }
        let events = CommandEvents(highWater: sandbox.streamBufferBytes)
        let command = try run(spec, events)
        // Registered before the InitEvent leaves, so a WriteStdin sent on receiving it finds the process.
        let id = processes.add(command)
        defer { processes.remove(id) }
        var exited = false
        defer { if !exited { command.cancel() } }
        try await withRPCCancellationHandler {
            try await response.write(.with { $0.init_p.processID = id })
            for await event in events {
                switch event {
                case .stdout(let bytes): try await response.write(.with { $0.stdout = Data(bytes) })
                case .stderr(let bytes): try await response.write(.with { $0.stderr = Data(bytes) })
                case .exit(let termination):
                    exited = true
                    try await response.write(.with { $0.exit.exitCode = Self.exitCode(termination) })
                }
            }
        } onCancelRPC: {
            command.cancel()
        }
    }

    func execute(request: Process_V1_ExecuteRequest, context: ServerContext) async throws
        -> Process_V1_ExecuteResponse
    {
        let spec = try command(request.config)
        // Collected on the I/O loop as it arrives; the call resumes once, with everything, when the command ends
        // (a sequence of events would cross threads for every piece of output).
        let ended = Arrival<(output: CollectedOutput, termination: Termination)>()
        let command: RunningCommand
        do {
            command = try sandbox.run(spec, collecting: CollectedOutput(limit: sandbox.maxOutputBytes)) {
                ended.fulfil(($0, $1))
            }
        } catch {
            throw RPCError(error)
        }
        // A cancelled call kills the tree; its end still arrives, and the answer is then the status.
        let (output, termination) = await withRPCCancellationHandler {
            await ended.value
        } onCancelRPC: {
            command.cancel()
        }
        if context.cancellation.isCancelled {
            throw RPCError(code: .cancelled, message: "the call ended before the command did; its tree was killed")
        }
        var answer = Process_V1_ExecuteResponse()
        answer.exitCode = Self.exitCode(termination)
        answer.stdout = Data(output.bytes(of: .stdout))
        answer.stderr = Data(output.bytes(of: .stderr))
        return answer
    }

    func writeStdin(request: Process_V1_WriteStdinRequest, context: ServerContext) async throws
        -> Process_V1_WriteStdinResponse
    {
        let command = try processes.find(request.processID)
        do {
            switch request.payload {
            case .eof: try command.closeStdin()
            case .input(let bytes): try command.writeStdin(Array(bytes))
            case nil: throw RPCError(code: .invalidArgument, message: "the request has neither input nor eof")
            }
        } catch let error as RunningCommand.StdinError {
            throw RPCError(SandboxError(error, process: String(request.processID)))
        }
        return Process_V1_WriteStdinResponse()
    }

    func sendSignal(request: Process_V1_SendSignalRequest, context: ServerContext) async throws
        -> Process_V1_SendSignalResponse
    {
        let command = try processes.find(request.processID)
        let number: Int32
        switch request.signal {
        case .sigint: number = SIGINT
        case .sigterm: number = SIGTERM
        case .sigkill: number = SIGKILL
        case .unspecified, .UNRECOGNIZED:
            throw RPCError(
                code: .invalidArgument, message: "signal must be SIGNAL_SIGINT, SIGNAL_SIGTERM or SIGNAL_SIGKILL")
        }
        command.signal(number)
        return Process_V1_SendSignalResponse()
    }

    func resizeTTY(request: Process_V1_ResizeTTYRequest, context: ServerContext) async throws
        -> Process_V1_ResizeTTYResponse
    {
        let command = try processes.find(request.processID)
        let size = TerminalSize(
            columns: UInt16(clamping: max(1, request.cols)), rows: UInt16(clamping: max(1, request.rows)))
        guard command.resize(to: size) else {
            throw RPCError(SandboxError(.noTerminal, process: String(request.processID)))
        }
        return Process_V1_ResizeTTYResponse()
    }

    /// The command a config describes; the core's refusals become statuses.
    private func command(_ config: Process_V1_ProcessConfig) throws(RPCError) -> CommandSpec {
        do {
            return try sandbox.command(
                config.command, cwd: config.hasCwd ? config.cwd : nil,
                variables: config.envVars.sorted { $0.key < $1.key }.map { ($0.key, $0.value as String?) })
        } catch {
            throw RPCError(error)
        }
    }

    private func run(_ spec: CommandSpec, _ events: CommandEvents) throws(RPCError) -> RunningCommand {
        do {
            let command = try sandbox.run(spec, sink: events.sink)
            events.attach(command)
            return command
        } catch {
            throw RPCError(error)
        }
    }

    /// The Go daemon's convention: the exit status, or -1 for a death by signal (there is no signal field).
    static func exitCode(_ termination: Termination) -> Int32 {
        termination.signal == nil && !termination.timedOut ? termination.exitCode : -1
    }
}

/// The commands started with `Start`, by the id handed out in their `InitEvent`: counted from 1, never a host pid,
/// forgotten when their stream ends.
final class StartedProcesses: Sendable {
    private let state = Mutex<(next: Int32, commands: [Int32: RunningCommand])>((0, [:]))

    func add(_ command: RunningCommand) -> Int32 {
        state.withLock { state in
            state.next = state.next == .max ? 1 : state.next + 1
            state.commands[state.next] = command
            return state.next
        }
    }

    func remove(_ id: Int32) {
        _ = state.withLock { $0.commands.removeValue(forKey: id) }
    }

    func find(_ id: Int32) throws(RPCError) -> RunningCommand {
        guard let command = state.withLock({ $0.commands[id] }) else {
            throw RPCError(code: .notFound, message: "process \(id) not found (it has ended, or never existed)")
        }
        return command
    }
}

extension RPCError {
    /// The one place where core errors become gRPC statuses.
    init(_ error: SandboxError) {
        let code: RPCError.Code =
            switch error.code {
            case .invalidArgument: .invalidArgument
            case .notFound: .notFound
            case .permissionDenied: .permissionDenied
            // gRPC has no CONFLICT: an action the resource's state does not allow is a failed precondition.
            case .failedPrecondition, .conflict: .failedPrecondition
            case .outOfRange: .outOfRange
            case .resourceExhausted: .resourceExhausted
            case .unavailable: .unavailable
            case .internal: .internalError
            }
        self.init(code: code, message: error.message)
    }
}

/// A value that arrives once, from any thread, for one task to await.
final class Arrival<Value: Sendable>: Sendable {
    private enum State {
        case waiting(CheckedContinuation<Value, Never>?)
        case arrived(Value)
    }

    private let state = Mutex(State.waiting(nil))

    func fulfil(_ value: Value) {
        let waiter = state.withLock { state -> CheckedContinuation<Value, Never>? in
            guard case .waiting(let waiter) = state else { return nil }
            state = .arrived(value)
            return waiter
        }
        waiter?.resume(returning: value)
    }

    var value: Value {
        get async {
            await withCheckedContinuation { continuation in
                let arrived = state.withLock { state -> Value? in
                    if case .arrived(let value) = state { return value }
                    state = .waiting(continuation)
                    return nil
                }
                if let arrived { continuation.resume(returning: arrived) }
            }
        }
    }
}
