/// One command-line option: its names, its environment variable, its help, and how its text becomes a setting.
public struct OptionDeclaration: Sendable {
    /// Long names without dashes; the first is the one shown, the others are aliases.
    public let names: [String]
    public let environment: String?
    public let help: String
    let placeholder: String
    /// The default as the help shows it; nil for none.
    let shownDefault: @Sendable (SandboxServer.Options) -> String?
    /// Parses `text` into the options; a message on failure.
    let apply: @Sendable (inout SandboxServer.Options, String) -> String?
}

extension OptionDeclaration {
    /// An option whose setting always has a value.
    init<Value: OptionValue>(
        _ names: [String], env: String? = nil, _ keyPath: WritableKeyPath<SandboxServer.Options, Value> & Sendable,
        _ help: String, check: (@Sendable (Value) -> String?)? = nil
    ) {
        self.init(
            names: names, environment: env, help: help, placeholder: Value.placeholder,
            shownDefault: { $0[keyPath: keyPath].optionText }
        ) { options, text in
            Self.parse(text, check: check) { options[keyPath: keyPath] = $0 }
        }
    }

    /// An option whose setting is absent (nil) by default; `derivedDefault` says what is used then, if anything.
    init<Value: OptionValue>(
        _ names: [String], env: String? = nil, _ keyPath: WritableKeyPath<SandboxServer.Options, Value?> & Sendable,
        _ help: String, check: (@Sendable (Value) -> String?)? = nil, derivedDefault: String? = nil
    ) {
        self.init(
            names: names, environment: env, help: help, placeholder: Value.placeholder,
            shownDefault: { $0[keyPath: keyPath]?.optionText ?? derivedDefault }
        ) { options, text in
            Self.parse(text, check: check) { options[keyPath: keyPath] = $0 }
        }
    }

    /// `text` read as a `Value`, checked, and stored by `store`; a message when it is not one or fails the check.
    private static func parse<Value: OptionValue>(
        _ text: String, check: ((Value) -> String?)?, store: (Value) -> Void
    ) -> String? {
        guard let value = Value(optionText: text) else { return "\(Value.placeholder) expected" }
        if let problem = check?(value) { return problem }
        store(value)
        return nil
    }
}

/// A type an option's text can be read as.
public protocol OptionValue: Sendable {
    /// The value written as `text`, or nil if `text` is not one.
    init?(optionText text: String)
    /// The value as it would be written (the help shows defaults this way).
    var optionText: String { get }
    /// What the help calls a value of this type.
    static var placeholder: String { get }
}

extension String: OptionValue {
    public init?(optionText text: String) { self = text }
    public var optionText: String { self }
    public static var placeholder: String { "TEXT" }
}

extension UInt16: OptionValue {
    public init?(optionText text: String) { self.init(text) }
    public var optionText: String { String(self) }
    public static var placeholder: String { "PORT" }
}

extension Int: OptionValue {
    /// Decimal digits only: no sign, no spaces, no other base.
    public init?(optionText text: String) {
        guard !text.isEmpty, text.utf8.allSatisfy({ (48...57).contains($0) }), let value = Int(text) else {
            return nil
        }
        self = value
    }

    public var optionText: String { String(self) }
    public static var placeholder: String { "N" }
}

extension Double: OptionValue {
    /// Seconds: a decimal number (`10`, `0.5`), or a duration as Go's flags write it (`10s`, `1m30s`, `500ms`), so
    /// the Go daemon's arguments work unchanged.
    public init?(optionText text: String) {
        if let seconds = Self.decimal(text[...]) {
            self = seconds
            return
        }
        guard let seconds = Self.goDuration(text) else { return nil }
        self = seconds
    }

    public var optionText: String { self == rounded() && Swift.abs(self) < 1e15 ? String(Int64(self)) : String(self) }
    public static var placeholder: String { "SECONDS" }

    /// Digits with at most one decimal point, nothing else.
    private static func decimal(_ text: Substring) -> Double? {
        let digits = text.utf8.filter { $0 != UInt8(ascii: ".") }
        guard !digits.isEmpty, text.utf8.count - digits.count <= 1, digits.allSatisfy({ (48...57).contains($0) })
        else { return nil }
        return Double(text).flatMap { $0.isFinite ? $0 : nil }
    }

    /// A sequence of number-unit pairs (`h`, `m`, `s`, `ms`, `us`, `µs`, `ns`), as Go's `time.ParseDuration`,
    /// without a sign.
    private static func goDuration(_ text: String) -> Double? {
        let units: [(String, Double)] = [
            ("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600),
        ]
        var rest = Substring(text)
        var total = 0.0
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard let value = decimal(number) else { return nil }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { !($0.isASCII && ($0.isNumber || $0 == ".")) }
            guard let scale = units.first(where: { $0.0 == unit })?.1 else { return nil }
            rest = rest.dropFirst(unit.count)
            total += value * scale
        }
        return total
    }
}

extension SandboxServer.Options.LogFormat: OptionValue {
    public init?(optionText text: String) { self.init(rawValue: text) }
    public var optionText: String { rawValue }
    public static var placeholder: String { allCases.map(\.rawValue).joined(separator: "|") }
}

extension SandboxServer.Options {
    /// What the command line asks for.
    public enum Invocation: Sendable {
        /// Run with these options; `warnings` name environment variables that were ignored, `given` the options set
        /// on the command line (by their first name).
        case run(SandboxServer.Options, warnings: [String], given: Set<String>)
        case help
        case version
    }

    /// A command line that cannot be run.
    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Reads the command line (without the program name) and the environment, as the Go daemon's flags are read
    /// too: `--name value`, `--name=value`, `-name value` and `-name=value`. A flag wins over its environment
    /// variable; an empty variable counts as unset, and a variable that does not parse is ignored with a warning.
    public static func parse(_ arguments: [String], environment: [String: String]) throws(ParseError) -> Invocation {
        var options = SandboxServer.Options()
        var given: Set<String> = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("-"), argument != "-", argument != "--" else {
                throw ParseError(description: "unexpected argument '\(argument)'")
            }
            let body = argument.dropFirst(argument.hasPrefix("--") ? 2 : 1)
            let name = String(body.prefix { $0 != "=" })
            switch name {
            case "help", "h": return .help
            case "version": return .version
            default: break
            }
            guard let declaration = declarations.first(where: { $0.names.contains(name) }) else {
                throw ParseError(description: "unknown option '\(argument)'")
            }
            let text: String
            if body.count > name.count {
                text = String(body.dropFirst(name.count + 1))
            } else if index < arguments.count {
                text = arguments[index]
                index += 1
            } else {
                throw ParseError(description: "option '\(argument)' needs a value (\(declaration.placeholder))")
            }
            if let problem = declaration.apply(&options, text) {
                throw ParseError(description: "--\(declaration.names[0]) '\(text)': \(problem)")
            }
            given.insert(declaration.names[0])
        }
        var warnings: [String] = []
        for declaration in declarations where !given.contains(declaration.names[0]) {
            guard let variable = declaration.environment,
                let text = environment[variable]?.trimmingWhitespace(), !text.isEmpty
            else { continue }
            if let problem = declaration.apply(&options, text) {
                let fallback = declaration.shownDefault(options).map { "the default, \($0)" } ?? "no value"
                warnings.append("Ignoring invalid \(variable)=\(text) (\(problem)); using \(fallback)")
            }
        }
        return .run(options, warnings: warnings, given: given)
    }

    /// The help text, from the declarations.
    public static var help: String {
        let defaults = SandboxServer.Options()
        var lines = [
            "USAGE: sandboxd [options]", "",
            "Runs commands and moves files inside an agent sandbox, over HTTP (and gRPC with --grpc-port).", "",
            "Options take a value as --name VALUE or --name=VALUE (one dash works too); SECONDS also take Go "
                + "durations (10s, 1m30s).",
            "",
        ]
        for declaration in declarations {
            let names = declaration.names.map { "--" + $0 }.joined(separator: ", ")
            var notes: [String] = []
            notes.append("default: " + (declaration.shownDefault(defaults) ?? "none"))
            if let variable = declaration.environment { notes.append("env " + variable) }
            lines.append("  \(names) \(declaration.placeholder)")
            lines.append("      \(declaration.help) (\(notes.joined(separator: "; ")))")
        }
        lines.append("  --version")
        lines.append("      Prints the version.")
        lines.append("  -h, --help")
        lines.append("      Prints this help.")
        return lines.joined(separator: "\n")
    }
}
