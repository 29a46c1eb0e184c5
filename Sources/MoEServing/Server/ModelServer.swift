import Foundation
import Hummingbird
import MoEKernels
import MoEModel
import MoETokenizer
import ServiceLifecycle

/// How `moe serve` was started.
public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
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

    public init() {}
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
    public let engine: InferenceEngine
    public let options: ServerOptions
    let ledger: UsageLedger
    let keys: APIKeys?
    let quota: QuotaTracker
    let pricing: Pricing
    let metrics = ServerMetrics()
    let created = Int(Date().timeIntervalSince1970)

    public init(model: Transformer, tokenizer: Tokenizer? = nil, options: ServerOptions) throws {
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        modelID = URL(fileURLWithPath: model.directory).standardizedFileURL.lastPathComponent
        keys = try options.apiKeysFile.map { try APIKeys(contentsOfFile: $0) }
        ledger = try UsageLedger(path: options.ledgerPath)
        quota = QuotaTracker(ledger: ledger, dailyTokens: options.dailyTokenQuota)
        pricing = Pricing(inputPerMillion: options.priceInput, outputPerMillion: options.priceOutput)
        engine = InferenceEngine(model: model, parallel: options.parallel, queueLimit: options.queueLimit,
                                 stepTokens: options.stepTokens)
    }

    /// Loads the model and its tokenizer (when it has one) from `directory`: an HF model directory or a GGUF file.
    public convenience init(directory: String, threads: Int, activations: ActivationRounding = .int8,
                            options: ServerOptions) throws {
        let model = try Transformer(directory: directory, threads: threads, activations: activations)
        try self.init(model: model, tokenizer: Tokenizer.forModel(directory), options: options)
    }

    /// The application: the router and the engine as a service, so a graceful shutdown first stops accepting
    /// and drains requests, then stops the engine.
    public func makeApplication(onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(router: makeRouter(),
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
        var lines = ["serving '\(modelID)' (\(model.config.modelType), context \(model.contextLength)) at http://\(options.host):\(options.port) "
                     + "with \(options.parallel) parallel sequences"]
        if keys == nil {
            lines.append("warning: no --api-keys file: the API is open to anyone who can reach \(options.host):\(options.port)")
        }
        if tokenizer == nil { lines.append("warning: the model directory has no tokenizer.json: only /health, /metrics and /v1/models work") }
        lines.append("ledger: \(options.ledgerPath); price: $\(options.priceInput) per million input tokens, $\(options.priceOutput) per million output tokens")
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
