import ArgumentParser
import Foundation
import MoEKernels
import MoEServing

/// `moe serve`: the OpenAI-compatible HTTP API over one model. The flags are a contract.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a model through an OpenAI-compatible HTTP API with continuous batching and a usage ledger.",
        discussion: """
            Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, \
            GET /metrics (Prometheus), POST /tokenize, POST /detokenize, GET / (a chat page). The model's id is \
            its directory name. Every request is written to the ledger (--ledger: a SQLite file, or a \
            postgres:// URL that many replicas share, daily quotas included) before its last byte is sent; \
            `moe usage` sums it. SIGINT/SIGTERM stop accepting, finish the requests in flight, then exit.
            """)

    @Option(help: "A Hugging Face model directory with a tokenizer (config.json, safetensors, tokenizer.json).")
    var model: String
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port, printed at start).") var port = 8080
    @Option(help: "A file with one API key per line; without it the API is open.") var apiKeys: String?
    @Option(help: "The usage ledger: a SQLite file, or postgres://USER:PASSWORD@HOST:PORT/DATABASE (shared by replicas).")
    var ledger = UsageLedger.defaultPath
    @Option(help: "USD per million prompt tokens.") var priceInput = 0.0
    @Option(help: "USD per million generated tokens.") var priceOutput = 0.0
    @Option(help: "Sequences decoded together (continuous batching).") var parallel = 8
    @Option(help: "Tokens one step runs at most: every decoding sequence's next token plus chunks of new prompts (chunked prefill; a long prompt stalls the others for one step at most).")
    var stepTokens = 256
    @Option(help: "Positions per sequence, prompt + generated (default: the model's context, at most 8192).") var ctxSize: Int?
    @Option(help: "Completion requests per key per minute (429 with Retry-After beyond it).") var rateLimit: Int?
    @Option(help: "The largest max_tokens a request gets; larger ones are cut (finish_reason \"length\").") var maxTokensLimit: Int?
    @Option(help: "Open connections at most; more are closed at once.") var maxConnections = 512
    @Option(help: "Seconds a connection may take to send its first request head.") var headerTimeout = 10
    @Option(help: "Seconds an idle connection is kept (0: forever).") var idleTimeout = 60
    @Option(help: "Bytes all KV caches may take (suffix K, M, G; default: 80 % of the memory available at start).") var memoryLimit: String?
    @Option(help: "Tokens (prompt + generated) each key may use per UTC day.") var dailyTokenQuota: Int?
    @Option(help: "Largest accepted request body, in bytes.") var maxBodyBytes = 1 << 20
    @Option(help: "Requests that may wait for a slot before new ones get 429 (default: 8 per slot, at least 64).") var queueLimit: Int?
    @Option(help: "Worker threads for the kernels (default: the number of cores).") var threads = WorkerPool.defaultThreadCount
    @Option(help: "How quantised weights round the activations they multiply: int8 (fast, llama.cpp's accuracy) or int16.") var activations = ActivationRounding.int8
    @OptionGroup var experts: ExpertBudgetOptions

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard parallel >= 1 else { throw ValidationError("--parallel must be at least 1") }
        guard stepTokens >= 1 else { throw ValidationError("--step-tokens must be at least 1") }
        if let n = ctxSize, n < 2 { throw ValidationError("--ctx-size must be at least 2") }
        if let n = rateLimit, n < 1 { throw ValidationError("--rate-limit must be at least 1") }
        if let n = maxTokensLimit, n < 1 { throw ValidationError("--max-tokens-limit must be at least 1") }
        guard maxConnections >= 1, headerTimeout >= 1, idleTimeout >= 0 else {
            throw ValidationError("--max-connections and --header-timeout must be at least 1, --idle-timeout at least 0")
        }
        if let m = memoryLimit, parseByteCount(m) == nil { throw ValidationError("--memory-limit must be a byte count such as 8G, 512M or 1000000") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be at least 1024") }
        guard priceInput >= 0, priceOutput >= 0, priceInput.isFinite, priceOutput.isFinite else {
            throw ValidationError("--price-input and --price-output must be ≥ 0")
        }
        if let q = dailyTokenQuota, q < 1 { throw ValidationError("--daily-token-quota must be at least 1") }
        if let q = queueLimit, q < 0 { throw ValidationError("--queue-limit must be ≥ 0") }
    }

    var options: ServerOptions {
        var o = ServerOptions()
        o.host = host; o.port = port; o.apiKeysFile = apiKeys; o.ledgerPath = ledger
        o.priceInput = priceInput; o.priceOutput = priceOutput; o.parallel = parallel; o.stepTokens = stepTokens
        o.contextSize = ctxSize; o.memoryLimit = memoryLimit.flatMap(parseByteCount)
        o.rateLimitPerMinute = rateLimit; o.maxTokensLimit = maxTokensLimit; o.maxConnections = maxConnections
        o.headerTimeoutSeconds = headerTimeout; o.idleTimeoutSeconds = idleTimeout == 0 ? nil : idleTimeout
        o.dailyTokenQuota = dailyTokenQuota; o.maxBodyBytes = maxBodyBytes; o.queueLimit = queueLimit
        o.expertBudget = experts.budget
        return o
    }

    func run() async throws {
        try await Serve.serve(directory: model, threads: threads, activations: activations, options: options)
    }

    /// Loads and serves until SIGINT/SIGTERM; prints `listening on http://HOST:PORT` once it accepts.
    static func serve(directory: String, threads: Int, activations: ActivationRounding = .int8,
                      options: ServerOptions) async throws {
        let ledger = try await Ledgers.open(options.ledgerPath)
        let server = try ModelServer(directory: directory, threads: threads, activations: activations, options: options, ledger: ledger)
        printError(server.banner)
        try await server.run { port in
            // Unbuffered: scripts wait for this line to know the port.
            FileHandle.standardOutput.write(Data("listening on http://\(options.host):\(port)\n".utf8))
        }
    }
}

/// "8G", "512M", "64K" or a plain number of bytes; nil for anything else or a count that overflows.
func parseByteCount(_ text: String) -> Int? {
    let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
    var digits = Substring(text.trimmingCharacters(in: .whitespaces))
    var scale = 1
    if let last = digits.last?.uppercased().first, let unit = units[last] {
        scale = unit
        digits = digits.dropLast()
    }
    guard let n = Int(digits), n > 0 else { return nil }
    let (bytes, overflow) = n.multipliedReportingOverflow(by: scale)
    return overflow ? nil : bytes
}
