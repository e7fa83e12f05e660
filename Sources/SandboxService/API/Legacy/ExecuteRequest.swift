import FoundationEssentials

/// The body of `POST /execute` and `POST /execute/stream`, validated the way FastAPI/pydantic would.
struct ExecuteRequest: Equatable {
    var command: String
    /// Seconds; nil when absent or null.
    var timeout: Double?

    /// Decodes and validates `body`, sent with `contentType` (nil when the request had none).
    ///
    /// As FastAPI does, the body is JSON only when its type is `application/json` or `application/…+json`; any other
    /// body is validated as raw bytes, which no model accepts. JSON text is decoded as Python's `json.loads` decodes
    /// bytes (UTF-8, with or without a BOM, or UTF-16/UTF-32 told apart by BOM or zero bytes).
    /// - Throws: a 422 `APIError` in FastAPI's shape; a 400 for JSON that is not valid text in its encoding.
    static func decode(_ body: [UInt8], contentType: String?) throws(APIError) -> ExecuteRequest {
        guard !body.isEmpty else {
            throw .validation([ValidationIssue(type: "missing", loc: ["body"], msg: "Field required", input: .null)])
        }
        guard isJSON(contentType: contentType) else {
            // FastAPI echoes the bytes as text; where they are not UTF-8 it fails with a 500, sandboxd with this 422.
            throw .validation([
                ValidationIssue(
                    type: "model_attributes_type", loc: ["body"],
                    msg: "Input should be a valid dictionary or object to extract fields from",
                    input: .string(String(decoding: body, as: UTF8.self)))
            ])
        }
        guard let text = jsonText(body) else { throw .detail(400, "There was an error parsing the body") }
        let json: JSONValue
        do {
            json = try JSONParser.parse(text)
        } catch {
            let position = characterOffset(in: text, ofByte: error.position)
            throw .validation([
                ValidationIssue(
                    type: "json_invalid", loc: ["body", .number(Double(position))], msg: "JSON decode error",
                    input: [:], ctx: ["error": .string(error.message)])
            ])
        }
        guard case .object = json else {
            throw .validation([
                ValidationIssue(
                    type: "model_attributes_type", loc: ["body"],
                    msg: "Input should be a valid dictionary or object to extract fields from", input: json)
            ])
        }
        var issues: [ValidationIssue] = []
        var command = ""
        switch json["command"] {
        case .string(let value)?: command = value
        case nil:
            issues.append(
                ValidationIssue(type: "missing", loc: ["body", "command"], msg: "Field required", input: json))
        case let value?:
            issues.append(
                ValidationIssue(
                    type: "string_type", loc: ["body", "command"], msg: "Input should be a valid string", input: value))
        }
        var timeout: Double?
        // `timeout_seconds` is the name the published k8s-agent-sandbox SDK sends.
        for key in ["timeout", "timeout_seconds"] {
            guard let value = json[key] else { continue }
            do {
                timeout = try parseTimeout(value, key: key)
            } catch {
                issues.append(error)
            }
            break
        }
        guard issues.isEmpty else { throw .validation(issues) }
        return ExecuteRequest(command: command, timeout: timeout)
    }

    /// A positive finite number, or a string holding one (pydantic's lax mode accepts `"30"`); null means absent.
    private static func parseTimeout(_ value: JSONValue, key: String) throws(ValidationIssue) -> Double? {
        let loc: [JSONValue] = ["body", .string(key)]
        let number: Double
        switch value {
        case .null: return nil
        case .number(let value): number = value
        case .string(let text):
            guard let parsed = Double(text.trimmingWhitespace()) else {
                throw ValidationIssue(
                    type: "float_parsing", loc: loc,
                    msg: "Input should be a valid number, unable to parse string as a number",
                    input: value)
            }
            number = parsed
        default:
            throw ValidationIssue(type: "float_type", loc: loc, msg: "Input should be a valid number", input: value)
        }
        guard number.isFinite else {
            throw ValidationIssue(type: "finite_number", loc: loc, msg: "Input should be a finite number", input: value)
        }
        guard number > 0 else {
            throw ValidationIssue(
                type: "greater_than", loc: loc, msg: "Input should be greater than 0", input: value,
                ctx: ["gt": .number(0)])
        }
        return number
    }
}

extension ValidationIssue: Error {}
