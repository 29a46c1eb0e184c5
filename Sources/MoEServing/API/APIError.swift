import Foundation

/// An error answered in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with its HTTP status.
///
/// Client mistakes are 4xx with a message that names what to fix; only a fault of the server is a 500.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    /// Seconds after which a refused request may be retried (sent as `Retry-After`).
    public var retryAfter: Int?

    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil, retryAfter: Int? = nil) {
        self.status = status; self.message = message; self.type = type; self.param = param; self.code = code
        self.retryAfter = retryAfter
    }

    public var description: String { "\(status) \(type): \(message)" }

    /// 400: malformed JSON, a missing or wrong-typed field, a value out of range.
    public static func invalidRequest(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    /// 404 as OpenAI answers it for an unknown model (`model_not_found`); the issue asks for 400, which
    /// OpenAI's clients treat the same way (a `BadRequestError`), so the status is 400 here.
    public static func unknownModel(_ name: String, available: String) -> APIError {
        APIError(status: 400, message: "The model '\(name)' does not exist; this server serves '\(available)'.",
                 type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    /// 401: no key, or a key not in the server's key file.
    public static let unauthorized = APIError(
        status: 401, message: "Incorrect or missing API key: send 'Authorization: Bearer KEY' with a key this server was started with.",
        type: "invalid_request_error", code: "invalid_api_key")

    /// 413: the body is larger than `--max-body-bytes`.
    public static func bodyTooLarge(limit: Int) -> APIError {
        APIError(status: 413, message: "The request body is larger than this server accepts (\(limit) bytes).",
                 type: "invalid_request_error", code: "request_too_large")
    }

    /// 429: the key's daily token quota is spent.
    public static func quotaExceeded(_ message: String) -> APIError {
        APIError(status: 429, message: message, type: "insufficient_quota", code: "insufficient_quota")
    }

    /// 429: the key sent more than `--rate-limit` requests in the last minute.
    public static func rateLimited(perMinute: Int, retryAfter: Int) -> APIError {
        APIError(status: 429, message: "Rate limit reached: this key may send \(perMinute) requests per minute; retry in \(retryAfter) s.",
                 type: "rate_limit_exceeded", code: "rate_limit_exceeded", retryAfter: retryAfter)
    }

    /// 429: every slot is busy and the waiting queue is full.
    public static func overloaded(_ message: String) -> APIError {
        APIError(status: 429, message: message, type: "rate_limit_exceeded", code: "rate_limit_exceeded")
    }

    public static func notFound(_ path: String) -> APIError {
        APIError(status: 404, message: "Unknown path \(path).", type: "invalid_request_error", code: "not_found")
    }

    public static func server(_ message: String) -> APIError {
        APIError(status: 500, message: message, type: "server_error")
    }

    /// 500 as clients see it: no internal detail (file paths, SQLite messages), only the id under which the
    /// details were logged.
    public static func `internal`(requestID: String) -> APIError {
        APIError(status: 500, message: "The server had an internal error; it is logged under request id \(requestID).",
                 type: "server_error", code: "internal_error")
    }

    /// A short random id for one request, carried by its log lines, its error messages and `X-Request-Id`.
    public static func newRequestID() -> String {
        String(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased())
    }

    /// The JSON body: `{"error": {...}}`, with explicit nulls as OpenAI sends them.
    public var json: Data {
        var error: [String: Any] = ["message": message, "type": type]
        error["param"] = param ?? NSNull()
        error["code"] = code ?? NSNull()
        return (try? JSONSerialization.data(withJSONObject: ["error": error], options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
    }

    /// Turns a JSONDecoder failure into a 400 naming the offending field.
    static func decoding(_ error: DecodingError) -> APIError {
        func path(_ c: [any CodingKey]) -> String? {
            let p = c.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return p.isEmpty ? nil : String(p.drop { $0 == "." })
        }
        switch error {
        case let .typeMismatch(type, context), let .valueNotFound(type, context):
            let name = path(context.codingPath)
            return .invalidRequest("Invalid type for '\(name ?? "body")': expected \(Self.typeName(type)).", param: name)
        case let .keyNotFound(key, context):
            let name = path(context.codingPath + [key]) ?? key.stringValue
            return .invalidRequest("Missing required parameter: '\(name)'.", param: name)
        case let .dataCorrupted(context):
            if let name = path(context.codingPath) {
                return .invalidRequest("Invalid value for '\(name)': \(context.debugDescription)", param: name)
            }
            return .invalidRequest("The body is not valid JSON (or not UTF-8): \(context.underlyingError.map { "\($0.localizedDescription)" } ?? context.debugDescription)")
        @unknown default:
            return .invalidRequest("The body could not be decoded.")
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is UInt64.Type: return "an integer"
        case is Double.Type, is Float.Type: return "a number"
        case is Bool.Type: return "a boolean"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") { return "an array" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "a \(name)"
        }
    }
}
