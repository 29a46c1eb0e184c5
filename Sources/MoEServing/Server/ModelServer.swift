import Foundation
import Hummingbird
import MoEKernels
import MoEModel
import MoETokenizer
import NIOCore
import ServiceLifecycle

/// How `moe serve` was started.
public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
    /// The experts each token may spend unless a request says otherwise (`experts_per_token`, `expert_threshold`).
    public var expertBudget = ExpertBudget.full
    public var port = 8080
    /// One key per line; nil: the server is open to anyone who can reach it.
    public var apiKeysFile: String?
    public var ledgerPath = UsageLedger.defaultPath
    /// USD per million prompt tokens and per million generated tokens.
    public var priceInput = 0.0
    public var priceOutput = 0.0
    /// Sequences decoded together.
    public var parallel = 4
    /// Tokens one engine step runs at most: decoding sequences' tokens plus prompt chunks (chunked prefill).
    public var stepTokens = 256
    /// Tokens (prompt + generated) each key may use per UTC day; nil: no limit.
    public var dailyTokenQuota: Int?
    public var maxBodyBytes = 1 << 20
    /// Requests allowed to wait for a slot (nil: 8 per slot, at least 64).
    public var queueLimit: Int?
    /// Positions per sequence (prompt + generated); nil: the model's context, at most `defaultContextCap`.
    public var contextSize: Int?
    /// Bytes the KV page pool may take; nil: 80 % of the memory available at start.
    public var memoryLimit: Int?
    /// Positions per KV page.
    public var kvPageSize = 64
    /// Completion requests per key per minute; nil: no limit.
    public var rateLimitPerMinute: Int?
    /// The largest `max_tokens` a request gets (larger ones are cut, the choice then ends with "length"); nil:
    /// what the context leaves.
    public var maxTokensLimit: Int?
    /// Open connections at most; more are closed at once.
    public var maxConnections = 512
    /// Seconds a connection may take to send its first request head (a slow-loris client cannot hold it).
    public var headerTimeoutSeconds = 10
    /// Seconds an idle connection (between requests, or stalled while sending one) is kept; nil: forever.
    public var idleTimeoutSeconds: Int? = 60
    /// Whether a non-streaming request watches its connection and stops when the client hangs up. Off only
    /// where requests arrive without a socket (HummingbirdTesting's router tests, whose channel is never active).
    public var watchesConnections = true

    /// The served context when `--ctx-size` is not given, as llama-server's default: a model configured for
    /// 131k positions would otherwise reserve gigabytes per slot.
    public static let defaultContextCap = 8192

    public init() {}
}

/// The server cannot start as asked (its KV caches would not fit, a size overflows).
public struct ServerStartError: Error, CustomStringConvertible {
    public let description: String
}

/// The KV page pool for `parallel` sequences of `contextSize` positions within `limit` bytes: as many pages as
/// every slot's whole context needs, or fewer when they do not fit (sequences then share the pool as they
/// grow, and the engine preempts when it runs out). A hybrid model's recurrent state comes off the limit first:
/// each slot's own and the snapshots it keeps for prefix reuse. Throws when not even one sequence's context fits.
func planKVPages(_ model: Transformer, parallel: Int, contextSize: Int, pageSize: Int, limit: Int,
                 limitSource: String) throws -> Int {
    let stateBytes = model.recurrentStateBytes.multipliedReportingOverflow(by: max(parallel, 1) * (1 + InferenceEngine.savedStates))
    guard !stateBytes.overflow else { throw ServerStartError(description: "the recurrent state's size overflows a 64-bit byte count") }
    let limit = limit - stateBytes.partialValue
    let perContext = InferenceEngine.pages(positions: contextSize, pageSize: pageSize)
    let shape = model.kvShape
    guard let pageBytes = KVPagePool.bytes(layers: model.kvLayers, rowWidth: shape.keyWidth, valueWidth: shape.valueWidth,
                                           pageSize: pageSize, pages: 1),
          case let (wanted, overflow) = perContext.multipliedReportingOverflow(by: max(parallel, 1)), !overflow else {
        throw ServerStartError(description: "the KV page size overflows a 64-bit byte count")
    }
    let pages = min(wanted, limit / pageBytes)
    guard pages >= perContext else {
        let need = perContext.multipliedReportingOverflow(by: pageBytes)
        throw ServerStartError(description: "one sequence of \(contextSize) positions needs \(perContext) KV pages "
                               + "(\(need.overflow ? "more bytes than a 64-bit size holds" : "\(need.partialValue >> 20) MiB")); "
                               + "the limit is \(limit >> 20) MiB (\(limitSource)): lower --ctx-size or raise --memory-limit")
    }
    return pages
}

/// Bytes of memory available now (Linux: `MemAvailable` of /proc/meminfo; elsewhere the physical memory).
func availableMemoryBytes() -> Int {
    if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
       let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
       let kib = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) {
        return kib.multipliedReportingOverflow(by: 1024).overflow ? Int.max : kib * 1024
    }
    return Int(clamping: ProcessInfo.processInfo.physicalMemory)
}

/// The model behind the HTTP API: the engine, the tokenizer, keys, quotas, the ledger and metrics. Routes
/// are in `ModelServer+Routes.swift`; what happens per token is in `InferenceEngine`.
///
/// ```swift
/// let server = try ModelServer(model: Transformer(directory: dir), options: options)
/// try await server.run()        // until SIGINT/SIGTERM, then drains in-flight requests
/// ```
public final class ModelServer: Sendable {
    /// The model's id: its directory name.
    public let modelID: String
    public let model: Transformer
    public let tokenizer: Tokenizer?
    /// The chat template writes harmony (gpt-oss): chat answers are read back into reasoning, content and tool calls.
    let harmony: Bool
    /// The tokenizer's tokens as bytes in a trie, for constrained decoding (made on its first request).
    let tokenTrie: LazyTokenTrie?
    /// The syntax the chat template teaches for tool calls (nil: none known, or harmony, which reads its own).
    let toolFormat: ToolCallParser.Format?
    /// `tokenTrie` with the tool-call syntax's special marker tokens, for required and named calls.
    let toolTrie: LazyTokenTrie?
    /// The last responses of `/v1/responses`, for `previous_response_id`.
    let responseStore = ResponseStore()
    public let engine: InferenceEngine
    public let options: ServerOptions
    let ledger: any UsageStore
    let keys: APIKeys?
    let quota: any DailyQuota
    let pricing: Pricing
    let metrics = ServerMetrics()
    let rateLimiter: RateLimiter?
    /// `GET /openapi.json`, made once for this model.
    let openAPIDocument: String
    let connectionLimits: ConnectionLimits
    let created = Int(Date().timeIntervalSince1970)

    /// `ledger`: one opened already (`Ledgers.open`, e.g. PostgreSQL); nil opens the SQLite file `options.ledgerPath`.
    public init(model: Transformer, tokenizer: Tokenizer? = nil, options: ServerOptions, ledger: (any UsageStore)? = nil) throws {
        self.model = model
        self.tokenizer = tokenizer
        harmony = tokenizer.map(HarmonyParser.isHarmony) ?? false
        tokenTrie = tokenizer.map { LazyTokenTrie(tokenizer: $0, vocabSize: model.config.vocabSize) }
        toolFormat = harmony ? nil : tokenizer?.chatTemplate.flatMap(ToolCallParser.Format.detect)
        toolTrie = tokenizer.map { LazyTokenTrie(tokenizer: $0, vocabSize: model.config.vocabSize, specials: ToolCallParser.markerTokens) }
        self.options = options
        modelID = URL(fileURLWithPath: model.directory).standardizedFileURL.lastPathComponent
        keys = try options.apiKeysFile.map { try APIKeys(contentsOfFile: $0) }
        if let ledger {
            self.ledger = ledger
        } else {
            guard !PostgresLedger.isURL(options.ledgerPath) else {
                throw ServerStartError(description: "a PostgreSQL ledger is opened with Ledgers.open and passed to ModelServer")
            }
            self.ledger = try UsageLedger(path: options.ledgerPath)
        }
        quota = self.ledger.dailyQuota(tokens: options.dailyTokenQuota)
        pricing = Pricing(inputPerMillion: options.priceInput, outputPerMillion: options.priceOutput)
        rateLimiter = options.rateLimitPerMinute.map { RateLimiter(perMinute: $0) }
        openAPIDocument = OpenAPI.document(model: modelID, vocabSize: model.config.vocabSize)
        connectionLimits = ConnectionLimits(maxConnections: options.maxConnections, headerTimeoutSeconds: options.headerTimeoutSeconds)
        // Plan the KV caches before allocating them: refuse, with what to change, rather than fail later.
        let contextSize = options.contextSize ?? min(model.contextLength, ServerOptions.defaultContextCap)
        guard contextSize >= 2, contextSize <= model.contextLength else {
            throw ServerStartError(description: "--ctx-size \(contextSize) is outside 2…\(model.contextLength) (the model's context)")
        }
        let limit = options.memoryLimit ?? availableMemoryBytes() / 5 * 4
        let kvPages = try planKVPages(model, parallel: options.parallel, contextSize: contextSize, pageSize: options.kvPageSize,
                                      limit: limit, limitSource: options.memoryLimit == nil ? "80 % of the available memory" : "--memory-limit")
        try model.validateBudget(options.expertBudget)
        model.expertBudget = options.expertBudget
        engine = try InferenceEngine(model: model, parallel: options.parallel, queueLimit: options.queueLimit,
                                     stepTokens: options.stepTokens, contextSize: contextSize, pageSize: options.kvPageSize,
                                     kvPages: kvPages)
    }

    /// Loads the model and its tokenizer (when it has one) from `directory`: an HF model directory or a GGUF file.
    public convenience init(directory: String, threads: Int, activations: ActivationRounding = .int8,
                            options: ServerOptions, ledger: (any UsageStore)? = nil) throws {
        let model = try Transformer(directory: directory, threads: threads, activations: activations)
        try self.init(model: model, tokenizer: Tokenizer.forModel(directory), options: options, ledger: ledger)
    }

    /// The application: the router and the engine as a service, so a graceful shutdown first stops accepting
    /// and drains requests, then stops the engine.
    public func makeApplication(onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let limits = connectionLimits
        return Application(router: makeRouter(),
                    server: .http1(configuration: .init(additionalChannelHandlers: [ConnectionGuard(limits: limits)],
                                                        idleTimeout: options.idleTimeoutSeconds.map { .seconds(Int64($0)) })),
                    configuration: .init(address: .hostname(options.host, port: options.port), serverName: "swift-moe"),
                    services: [EngineService(engine: engine)],
                    onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) })
    }

    /// Serves until SIGINT or SIGTERM.
    public func run(onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await makeApplication(onRunning: onRunning).runService()
    }

    /// A line for the console: where it listens, whether it is open.
    public var banner: String {
        let pool = engine.pages
        let mib = Double(pool.pageCount) * Double(pool.pageBytes) / 1_048_576
        let full = InferenceEngine.pages(positions: engine.contextSize, pageSize: pool.pageSize) * options.parallel
        var lines = ["serving '\(modelID)' (\(model.config.modelType), context \(engine.contextSize) of \(model.contextLength)) at "
                     + "http://\(options.host):\(options.port) with \(options.parallel) parallel sequences (KV pool \(pool.pageCount) pages × "
                     + "\(pool.pageSize) positions, \(String(format: "%.1f", mib)) MiB\(pool.pageCount < full ? ", \(full) for every slot's full context" : ""))"]
        if keys == nil {
            lines.append("warning: no --api-keys file: the API is open to anyone who can reach \(options.host):\(options.port)")
        }
        if tokenizer == nil { lines.append("warning: the model directory has no tokenizer.json: only /health, /metrics and /v1/models work") }
        if !options.expertBudget.isFull { lines.append("experts: \(options.expertBudget) of the model's \(model.expertsPerToken) per token by default") }
        lines.append("ledger: \(Ledgers.describe(options.ledgerPath)); price: $\(options.priceInput) per million input tokens, $\(options.priceOutput) per million output tokens")
        return lines.joined(separator: "\n")
    }
}

/// Runs the engine thread for the application's lifetime.
struct EngineService: Service {
    let engine: InferenceEngine

    func run() async throws {
        engine.start()
        try? await gracefulShutdown()
        engine.shutdown()
    }
}
