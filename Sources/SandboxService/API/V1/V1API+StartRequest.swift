extension V1API {
    /// The body of `POST /v1/processes`, read: a field of the wrong type is a 400 `INVALID_ARGUMENT` naming it. What
    /// the values mean (an empty command, a NUL byte, a variable name with `=`, the `cwd`) the core checks.
    struct StartRequest: Equatable {
        var argv: [String]
        /// Relative to the root, as sent; empty means the root.
        var cwd = ""
        /// Variables to set (a value) or remove (nil) over the server's environment, in the order sent.
        var environment: [EnvironmentChange] = []
        var stdin = false
        var terminal: TerminalSize?
        /// Seconds; nil runs without a limit.
        var timeout: Double?

        struct EnvironmentChange: Equatable {
            var name: String
            var value: String?
        }

        static func decode(_ body: [UInt8]) throws(APIError) -> StartRequest {
            guard let json = JSONValue.parse(body), case .object = json else {
                throw invalid("the body must be a JSON object")
            }
            let shell = try boolean(json["shell"], "shell")
            var request = StartRequest(argv: try argv(json["command"], shell: shell))
            switch json["cwd"] {
            case nil, .null?: break
            case .string(let cwd)?: request.cwd = cwd
            default: throw invalid("\"cwd\" must be a string (a directory relative to the sandbox root)")
            }
            request.environment = try environment(json["env"])
            request.stdin = try boolean(json["stdin"], "stdin")
            request.terminal = try terminalSize(json["pty"], "pty")
            switch json["timeout"] {
            case nil, .null?: break
            case .number(let seconds)? where seconds.isFinite && seconds > 0: request.timeout = seconds
            default: throw invalid("\"timeout\" must be a number of seconds greater than 0")
            }
            return request
        }

        /// `["prog", "arg"]` as is; a string run by `/bin/sh -c` with `shell`, else split like `/execute` does.
        private static func argv(_ value: JSONValue?, shell: Bool) throws(APIError) -> [String] {
            let argv: [String]
            switch value {
            case .array(let items)?:
                guard !shell else { throw invalid("\"shell\": true needs \"command\" as a string") }
                argv = try items.map { (item) throws(APIError) -> String in
                    guard case .string(let word) = item else { throw invalid("\"command\" must hold only strings") }
                    return word
                }
            case .string(let line)? where shell:
                argv = ["/bin/sh", "-c", line]
            case .string(let line)?:
                do {
                    argv = try ShellWords.split(line)
                } catch {
                    throw invalid("\"command\" does not parse: \(error)")
                }
            case nil, .null?:
                throw invalid("\"command\" is required")
            default:
                throw invalid("\"command\" must be an array of strings or a string")
            }
            return argv
        }

        private static func environment(_ value: JSONValue?) throws(APIError) -> [EnvironmentChange] {
            switch value {
            case nil, .null?: return []
            case .object(let members)?:
                return try members.map { (name, value) throws(APIError) -> EnvironmentChange in
                    switch value {
                    case .null: return EnvironmentChange(name: name, value: nil)
                    case .string(let text): return EnvironmentChange(name: name, value: text)
                    default: throw invalid("\"env\" value of \"\(name)\" must be a string (or null to unset it)")
                    }
                }
            default: throw invalid("\"env\" must be an object of strings")
            }
        }

        /// `{"cols": N, "rows": N}`, each a whole number from 1 to 65535; null or absent means no terminal.
        static func terminalSize(_ value: JSONValue?, _ field: String) throws(APIError) -> TerminalSize? {
            switch value {
            case nil, .null?: return nil
            case .object?:
                guard let columns = cells(value?["cols"]), let rows = cells(value?["rows"]) else {
                    throw invalid("\"\(field)\" needs \"cols\" and \"rows\", whole numbers from 1 to 65535")
                }
                return TerminalSize(columns: columns, rows: rows)
            default: throw invalid("\"\(field)\" must be an object {\"cols\": N, \"rows\": N}")
            }
        }

        private static func cells(_ value: JSONValue?) -> UInt16? {
            guard case .number(let number)? = value, number == number.rounded(), number >= 1, number <= 65535 else {
                return nil
            }
            return UInt16(number)
        }

        private static func boolean(_ value: JSONValue?, _ field: String) throws(APIError) -> Bool {
            switch value {
            case nil, .null?: return false
            case .bool(let flag)?: return flag
            default: throw invalid("\"\(field)\" must be true or false")
            }
        }
    }

    static func invalid(_ message: String) -> APIError {
        V1Error.answer(.invalidArgument, message)
    }
}
