import ArgumentParser
import Foundation
import MoEFormats
import MoEModel
import MoETokenizer
import MoETraining

/// `moe route`: which experts a text uses, token by token and layer by layer, and what that says per domain.
struct Route: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Trace the routing of texts: every token's experts per layer, and per domain the experts' shares, balance, mutual information and co-activation.",
        discussion: """
            Each --data file is a domain (its name without the extension): a text file is one document, a JSONL \
            file one document per line (its --text-field); with --domains FIELD the domain is each line's FIELD \
            instead. Writes to --out: routing.jsonl (one line per token: its experts and weights in every MoE \
            layer), report.json, heat maps (routing-DOMAIN.svg: MoE layer × expert shares; coactivation.svg) and \
            report.html, one self-contained page (no network) with the text coloured by each token's expert.
            """)

    @OptionGroup var options: ModelOptions
    @Option(parsing: .upToNextOption, help: "Text or JSONL files; each is a domain unless --domains is given.") var data: [String] = []
    @Option(help: "A text to trace instead of files (domain \"prompt\").") var prompt: String?
    @Flag(help: "Trace documents of moe demo's built-in corpus (arithmetic, code, prose; not those it trains on) instead of files.")
    var demoCorpus = false
    @Option(help: "The JSONL field that names each line's domain.") var domains: String?
    @Option(help: "The JSONL field holding each line's text.") var textField = "text"
    @Option(help: "Where the report goes.") var out = "routing"
    @Option(help: "Tokens per forward pass (each window from an empty cache).") var window = 1024
    @Option(help: "At most this many tokens of each domain.") var maxTokens = 20000
    @Option(help: "Tokens of each domain shown in report.html.") var htmlTokens = 1000

    func validate() throws {
        if [!data.isEmpty, prompt != nil, demoCorpus].filter({ $0 }).count != 1 { throw ValidationError("give one of --data FILE…, --prompt TEXT and --demo-corpus") }
        if window < 1 || maxTokens < 1 || htmlTokens < 0 { throw ValidationError("--window and --max-tokens must be positive") }
    }

    func run() throws {
        let model = try options.load()
        guard let tokenizer = try Tokenizer.forModel(options.model) else {
            throw ValidationError("\(options.model) has no tokenizer (tokenizer.json, or a GGUF file's)")
        }
        let documents: [RoutedDocument]
        if let prompt { documents = [RoutedDocument(domain: "prompt", text: prompt)] }
        else if demoCorpus { documents = DemoCorpus.documents(count: 90, seed: 0xD0C5).map { RoutedDocument(domain: $0.domain.rawValue, text: $0.text) } }
        else { documents = try RoutedDocument.load(paths: data, domainField: domains, textField: textField) }
        let bar = ProgressBar(label: "route", unit: .items)
        let clock = ContinuousClock.now
        let trace = try RoutingTrace.collect(model, tokenizer: tokenizer, documents: documents, window: window,
                                             maxTokensPerDomain: maxTokens) { bar.update(done: $0, total: $1) }
        bar.finish()
        let d = ContinuousClock.now - clock
        let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        var report = RoutingReport(trace, model: URL(fileURLWithPath: options.model).lastPathComponent)
        report.tokensPerSecond = Double(trace.tokens) / max(seconds, 1e-9)

        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try AtomicFile.write(try encoder.encode(report), to: "\(out)/report.json")
        try RoutingPage.writeJSONL(trace, tokenizer: tokenizer, to: "\(out)/routing.jsonl")
        for map in RoutingPage.heatMaps(report) { try SVGPlot.write(map.svg, to: "\(out)/\(map.name)") }
        try AtomicFile.write(Data(RoutingPage.html(report, trace: trace, tokenizer: tokenizer, tokensPerDomain: htmlTokens).utf8),
                             to: "\(out)/report.html")

        printError(String(format: "%d tokens in %.1f s (%.0f tokens/s), %d MoE layers × %d experts, top-%d; CPU %@",
                          trace.tokens, seconds, report.tokensPerSecond ?? 0, report.moeLayers.count, report.experts, report.topK, cpuName()))
        for domain in report.domains {
            printError(String(format: "  %@: %d tokens, load CV %.2f, normalised entropy %.3f (means over layers)", domain.name, domain.tokens,
                              RoutingPage.mean(domain.coefficientOfVariation), RoutingPage.mean(domain.normalizedEntropy)))
        }
        if report.domains.count > 1 {
            printError(String(format: "  I(domain; expert): %.4f bits (mean over layers; H(domain) = %.3f)",
                              RoutingPage.mean(report.mutualInformation), report.domainEntropy))
        }
        printError("wrote \(out)/report.json, routing.jsonl, report.html and the heat maps")
    }
}
