import ArgumentParser
import Foundation
import MoEFormats
import MoEKernels
import MoEServing
import MoETokenizer
import MoETraining

/// `moe demo [--out DIR]`: the main job — corpus → tokenizer → pre-trained MoE → samples and routing report.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a small MoE from scratch on a built-in corpus and show what its experts do (no downloads).",
        discussion: """
            Generates a corpus of arithmetic, a small programming language and templated prose; trains a \
            byte-level BPE tokenizer on it and pre-trains a qwen3_moe model (8 experts, top-2) for --steps steps (the \
            time they take here is printed; --minutes sizes by time instead), then SFT, DPO and GRPO on two-digit sums \
            with their held-out accuracy after each stage (`--arch next`: the hybrid qwen3_next; `--compare`: both, reported side by side); prints samples per \
            domain and which experts each domain uses. OUT holds the corpus (corpus.jsonl, \
            for `moe pretrain --data`), the tokenizer, the model (OUT/pretrain, a Hugging Face directory), metrics.jsonl, loss.svg, expert_load.svg, \
            routing.svg and report.json ({"stages": [{"name": "pretrain", "val_loss": …}], "routing": …}).
            """)

    @Option(help: "Output directory.") var out: String = "demo-out"
    @Option(help: "Steps of pre-training (a report card that does not depend on the machine's speed; about 5 minutes on two cores).")
    var steps: Int = DemoPipeline.defaultPretrainSteps
    @Option(help: "Size pre-training by time instead: this many minutes (the figures then depend on the machine).") var minutes: Double?
    @Option(help: "Run the whole demo for this many seeds (--seed, --seed + 1, …; OUT/seed-S each) and print each stage's mean and spread.")
    var seeds: Int = 1
    @Option(help: "Worker threads (default: the number of cores).") var threads: Int?
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Flag(help: "A tiny corpus, model and run: the whole path in seconds (for tests).") var quick = false
    @Flag(help: "Keep OUT/pretrain from an earlier run and redo only the stages after pre-training.") var reusePretrained = false
    @Flag(help: "No progress bar.") var quiet = false
    @Flag(help: "When done, serve the final model through the OpenAI-compatible API (as `moe serve`; ledger OUT/ledger.sqlite).") var serve = false
    @Option(help: "With --serve: the port (0: any free port).") var port = 8080
    @Option(help: "The model family: moe (qwen3_moe) or next (the hybrid qwen3_next: Gated DeltaNet layers, gated attention every fourth).")
    var arch: String = "moe"
    @Flag(help: "Also pre-train the other family on the same corpus for as many steps (OUT/pretrain-ARCH) and report both.")
    var compare = false
    @Flag(help: "Also run `moe study moe-vs-dense` on the same corpus (OUT/study) and add its table to the report.") var study = false
    @Option(help: "With --study: minutes of pre-training for each of its three models.") var studyMinutes: Double = 2

    func validate() throws {
        if !((minutes ?? 1) > 0) || !(studyMinutes > 0) || steps < 1 || seeds < 1 {
            throw ValidationError("--steps, --seeds, --minutes and --study-minutes must be positive")
        }
        if seeds > 1 && (serve || reusePretrained) { throw ValidationError("--seeds runs fresh demos: drop --serve and --reuse-pretrained") }
        if DemoArchitecture(rawValue: arch) == nil { throw ValidationError("--arch must be moe or next, not '\(arch)'") }
    }

    func run() async throws {
        signal(SIGXFSZ, SIG_IGN)
        var options = DemoPipeline.Options(out: out)
        options.pretrainSteps = minutes == nil ? steps : nil
        options.trainSeconds = (minutes ?? 5) * 60
        options.quick = quick
        options.reusePretrained = reusePretrained
        options.seed = seed
        options.architecture = DemoArchitecture(rawValue: arch)!
        options.compare = compare
        options.study = study
        options.studySeconds = studyMinutes * 60
        if let threads { options.threads = max(1, threads) }
        if seeds > 1 {
            var reports: [DemoReport] = []
            for seed in self.seed..<(self.seed + UInt64(seeds)) {
                var o = options
                o.seed = seed
                o.out = "\(out)/seed-\(seed)"
                printError("== seed \(seed) → \(o.out)")
                let bar = ProgressBar(quiet: quiet)
                reports.append(try DemoPipeline(options: o, log: { printError($0) }, progress: { bar.show($0) }).run())
                bar.finish()
            }
            let table = DemoReport.acrossSeeds(reports, seeds: Array(self.seed..<(self.seed + UInt64(seeds))))
            try AtomicFile.write(Data(table.utf8), to: "\(out)/seeds.md")
            print(table, terminator: "")
            print("wrote \(out)/seeds.md and each seed's report in \(out)/seed-S")
            return
        }
        let bar = ProgressBar(quiet: quiet)
        let report = try DemoPipeline(options: options, log: { printError($0) }, progress: { bar.show($0) }).run()
        bar.finish()

        print("\n== Samples (temperature 0.7) ==")
        for (domain, samples) in report.samples.sorted(by: { $0.key < $1.key }) {
            print("[\(domain)]")
            for s in samples {
                // The prompt, then what the model wrote, indented as the text it is.
                let text = (s.prompt + s.completion).split(separator: "\n", omittingEmptySubsequences: false)
                print(text.map { "    " + $0 }.joined(separator: "\n") + "\n")
            }
        }
        let r = report.routing
        print("\n== Routing (held-out documents; share of each domain's top-k choices per expert) ==")
        for (domain, d) in r.domains.sorted(by: { $0.key < $1.key }) {
            print(String(format: "[%@] %d tokens, balance %.2f (1 = evenly spread)", domain, d.tokens, d.balance))
            for l in 0..<r.layers {
                let shares = d.share[l].map { String(format: "%4.0f%%", $0 * 100) }.joined(separator: " ")
                print("  layer \(l): \(shares)   top: \(d.topExperts[l].map(String.init).joined(separator: ", "))")
            }
        }
        print(String(format: "domain separation: %.2f (mean total-variation distance between domains' expert shares; 0 = same experts)",
                     r.domainSeparation))
        print("\n" + report.reportCard())
        print("wrote \(out)/report.json, \(out)/pretrain/loss.svg, \(out)/pretrain/expert_load.svg, \(out)/routing.svg")
        if serve, let final = report.stages.last?.model {
            var options = ServerOptions()
            options.port = port
            options.ledgerPath = "\(out)/ledger.sqlite"
            print("\nserving \(final) (Ctrl-C stops)")
            try await Serve.serve(directory: final, threads: threads ?? WorkerPool.defaultThreadCount, options: options)
        }
    }
}
