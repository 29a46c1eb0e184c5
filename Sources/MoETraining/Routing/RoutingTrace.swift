import Foundation
import MoEModel
import MoETokenizer

/// A text whose routing is traced, and the domain it counts for.
public struct RoutedDocument: Sendable {
    public var domain: String
    public var text: String
    public init(domain: String, text: String) { self.domain = domain; self.text = text }

    /// The documents of some files: a JSONL file (`.jsonl`, or any file when `domainField` is given) gives one document
    /// per line (its `textField`), any other file one document (its whole text). The domain is each line's
    /// `domainField`, or else the file's name without its extension.
    public static func load(paths: [String], domainField: String? = nil, textField: String = "text") throws -> [RoutedDocument] {
        var out: [RoutedDocument] = []
        for path in paths {
            let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
            if domainField != nil || path.hasSuffix(".jsonl") {
                for (line, object) in try Evaluation.jsonObjects(path: path) {
                    guard let text = object[textField] as? String else {
                        throw DataError.malformedLine(path: path, line: line, reason: "no \"\(textField)\" string")
                    }
                    var domain = name
                    if let domainField {
                        switch object[domainField] {
                        case let s as String: domain = s
                        case let n as NSNumber: domain = n.stringValue
                        default: throw DataError.malformedLine(path: path, line: line, reason: "no \"\(domainField)\" field (string or number) for the domain")
                        }
                    }
                    out.append(RoutedDocument(domain: domain, text: text))
                }
            } else {
                guard let data = FileManager.default.contents(atPath: path) else { throw DataError.fileNotFound(path) }
                guard let text = String(data: data, encoding: .utf8) else { throw DataError.invalidUTF8(path: path) }
                out.append(RoutedDocument(domain: name, text: text))
            }
        }
        return out
    }
}

/// Which experts every token of some documents chose in every MoE layer, and with what weights — what `moe route`
/// records, through the inference engine (any architecture it runs, GGUF included), as the model runs the text.
public struct RoutingTrace: Sendable {
    /// The decoder layers that are MoE layers, in order (a token's choices are stored in this order).
    public var moeLayers: [Int]
    public var experts: Int
    /// Choices per token and layer (the router's top-k; fewer are stored where a budget dropped some).
    public var topK: Int
    public var domains: [String]
    /// Per token: its document, domain (an index into `domains`), position in the document and id.
    public var document: [Int32] = []
    public var domain: [Int32] = []
    public var position: [Int32] = []
    public var token: [Int32] = []
    /// [token, layer, k]: the chosen experts (−1: none) and their weights as applied.
    public var chosen: [Int32] = []
    public var weights: [Float] = []

    public var tokens: Int { token.count }

    /// Token `t`'s choices in MoE layer `l` (position in `moeLayers`): (expert, weight) pairs, best first.
    public func choices(token t: Int, layer l: Int) -> [(expert: Int, weight: Float)] {
        let base = (t * moeLayers.count + l) * topK
        return (base..<(base + topK)).compactMap { chosen[$0] >= 0 ? (Int(chosen[$0]), weights[$0]) : nil }
    }

    /// Runs every document through `model` (in windows of up to `window` tokens, each from an empty cache; the LM
    /// head skipped) and records the routing of every token; at most `maxTokensPerDomain` tokens per domain.
    public static func collect(_ model: Transformer, tokenizer: Tokenizer, documents: [RoutedDocument], window: Int = 1024,
                               maxTokensPerDomain: Int = .max,
                               progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> RoutingTrace {
        try collect(model, tokenized: documents.map { ($0.domain, tokenizer.encode($0.text, addSpecialTokens: false)) }, window: window,
                    maxTokensPerDomain: maxTokensPerDomain, progress: progress)
    }

    /// `collect` for documents given as token ids.
    public static func collect(_ model: Transformer, tokenized documents: [(domain: String, ids: [Int])], window: Int = 1024,
                               maxTokensPerDomain: Int = .max,
                               progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> RoutingTrace {
        let blocks = model.moeBlocks
        let moeLayers = blocks.map(\.layer), experts = blocks.map(\.block.router.experts).max() ?? 0, topK = model.expertsPerToken
        guard !moeLayers.isEmpty else { throw TrainingError.badArgument("\(model.directory) is a dense model: it has no experts to route to") }
        var domains: [String] = []
        for d in documents where !domains.contains(d.domain) { domains.append(d.domain) }
        var trace = RoutingTrace(moeLayers: moeLayers, experts: experts, topK: topK, domains: domains)

        var budget = [Int](repeating: maxTokensPerDomain, count: domains.count)
        var plan: [(document: Int, ids: ArraySlice<Int>)] = []
        for (i, document) in documents.enumerated() {
            let d = domains.firstIndex(of: document.domain)!
            let n = min(document.ids.count, budget[d])
            budget[d] -= n
            if n > 0 { plan.append((i, document.ids[..<n])) }
        }
        let total = plan.reduce(0) { $0 + $1.ids.count }
        guard total > 0 else { throw TrainingError.badArgument("the documents encode to no tokens") }
        trace.reserve(total)

        let recorder = RoutingRecorder(layers: moeLayers, topK: topK)
        let saved = model.routingObserver
        model.routingObserver = recorder
        defer { model.routingObserver = saved }
        let w = max(1, min(window, model.contextLength))
        let cache = model.makeCache(capacity: w)
        var done = 0
        for (doc, ids) in plan {
            let d = Int32(domains.firstIndex(of: documents[doc].domain)!)
            for start in stride(from: ids.startIndex, to: ids.endIndex, by: w) {
                let part = Array(ids[start..<min(start + w, ids.endIndex)])
                cache.reset()
                recorder.begin(tokens: part.count)
                try model.forward(part, cache: cache, logitsFor: .none)
                for (t, id) in part.enumerated() {
                    trace.document.append(Int32(doc)); trace.domain.append(d)
                    trace.position.append(Int32(start - ids.startIndex + t)); trace.token.append(Int32(id))
                }
                trace.chosen += recorder.chosen
                trace.weights += recorder.weights
                done += part.count
                progress?(done, total)
            }
        }
        return trace
    }

    mutating func reserve(_ n: Int) {
        for i in [\RoutingTrace.document, \.domain, \.position, \.token] { self[keyPath: i].reserveCapacity(n) }
        chosen.reserveCapacity(n * moeLayers.count * topK)
        weights.reserveCapacity(n * moeLayers.count * topK)
    }
}

/// Collects one pass's choices into [token, MoE layer, k] order as the layers report them.
final class RoutingRecorder: RoutingObserver {
    let layerSlot: [Int: Int]
    let topK: Int
    private(set) var chosen: [Int32] = []
    private(set) var weights: [Float] = []
    private var tokens = 0

    init(layers: [Int], topK: Int) {
        layerSlot = Dictionary(uniqueKeysWithValues: layers.enumerated().map { ($1, $0) })
        self.topK = topK
    }

    func begin(tokens: Int) {
        self.tokens = tokens
        chosen = Array(repeating: -1, count: tokens * layerSlot.count * topK)
        weights = Array(repeating: 0, count: tokens * layerSlot.count * topK)
    }

    func observe(layer: Int, tokens: Int, k: Int, chosen c: UnsafeBufferPointer<Int32>, weights w: UnsafeBufferPointer<Float>) {
        guard let slot = layerSlot[layer], tokens == self.tokens else { return }
        let L = layerSlot.count
        for t in 0..<tokens {
            let base = (t * L + slot) * topK
            for j in 0..<min(k, topK) {
                chosen[base + j] = c[t * k + j]
                weights[base + j] = c[t * k + j] >= 0 ? w[t * k + j] : 0
            }
        }
    }
}
