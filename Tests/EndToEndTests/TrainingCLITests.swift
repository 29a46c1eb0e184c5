import Foundation
import Testing
import MoEFormats

/// `moe demo`, `moe pretrain` and `moe bench train` through the binary, as the README and scripts use them.
@Suite struct TrainingCLITests {
    func temporaryDirectory() -> String {
        let dir = NSTemporaryDirectory() + "moe-e2e-train-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// The README's main command, in its quick mode: report.json keeps its contract.
    @Test func demoQuickWritesTheReport() throws {
        let out = temporaryDirectory()
        let r = try CLI.run(["demo", "--quick", "--quiet", "--out", out])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("Samples") && r.stdout.contains("Routing"))
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as! [String: Any]
        let stages = report["stages"] as! [[String: Any]]
        #expect(stages.first?["name"] as? String == "pretrain")
        #expect((stages.first?["val_loss"] as? Double).map { $0.isFinite && $0 > 0 } == true)
        // Post-training stages follow, each with its held-out task accuracy; the report card sums them up.
        #expect(stages.map { $0["name"] as? String } == ["pretrain", "sft", "dpo", "grpo"])
        #expect(stages.allSatisfy { ($0["task_accuracy"] as? Double).map { (0...1).contains($0) } == true })
        #expect(FileManager.default.fileExists(atPath: out + "/report.md"))
        let routing = report["routing"] as! [String: Any]
        #expect((routing["domains"] as! [String: Any]).keys.sorted() == ["arithmetic", "code", "prose"])
        for f in ["pretrain/loss.svg", "pretrain/expert_load.svg", "routing.svg", "pretrain/model.safetensors", "tokenizer/tokenizer.json"] {
            #expect(FileManager.default.fileExists(atPath: out + "/" + f), "\(f) missing")
        }
        // The checkpoint runs in the inference engine.
        let g = try CLI.run(["generate", "--model", out + "/pretrain", "--prompt", "12 + 7 =", "--max-tokens", "4"])
        #expect(g.status == 0, "\(g.stderr)")

        // moe eval scores a text and a task file, ending with a JSON line.
        try "3 + 4 = 7\n12 + 7 = 19\n".write(toFile: out + "/text.txt", atomically: true, encoding: .utf8)
        let t = try CLI.run(["eval", "--model", out + "/pretrain", "--text", out + "/text.txt"])
        #expect(t.status == 0, "\(t.stderr)")
        let text = try JSONSerialization.jsonObject(with: Data((t.stdout.split(separator: "\n").last ?? "").utf8)) as! [String: Any]
        #expect((text["perplexity"] as? Double).map { $0 > 1 } == true && text["bits_per_byte"] is Double)
        try "{\"prompt\": \"3 + 4 =\", \"answer\": 7}\n{\"prompt\": \"9 - 5 =\", \"answer\": \"4\"}\n".write(toFile: out + "/tasks.jsonl", atomically: true, encoding: .utf8)
        let k = try CLI.run(["eval", "--model", out + "/pretrain", "--tasks", out + "/tasks.jsonl", "--max-tokens", "6", "--stop", "\\n"])
        #expect(k.status == 0, "\(k.stderr)")
        let tasks = try JSONSerialization.jsonObject(with: Data((k.stdout.split(separator: "\n").last ?? "").utf8)) as! [String: Any]
        #expect(tasks["total"] as? Int == 2 && (tasks["accuracy"] as? Double).map { (0...1).contains($0) } == true)
        try routingLab(model: out + "/pretrain", text: out + "/text.txt", out: out)
    }

    /// `moe study moe-vs-dense` (quick): three models with active parameters within 5 %, a chart and a conclusion;
    /// `moe demo --seeds 2 --study` (quick): each seed's report, the table across seeds, the study's section.
    @Test func studyAndSeedsReport() throws {
        let out = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let study = try CLI.run(["study", "moe-vs-dense", "--quick", "--quiet", "--out", out + "/study-run"])
        #expect(study.status == 0, "\(study.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/study-run/study/study.json"))) as! [String: Any]
        let arms = report["arms"] as! [[String: Any]]
        #expect(arms.map { $0["experts"] as? Int } == [0, 4, 8])
        let active = arms.map { $0["active_parameters"] as! Int }
        #expect(Double(active.max()! - active.min()!) / Double(active.min()!) < 0.05)
        #expect(arms.allSatisfy { ($0["curve"] as? [Any])?.isEmpty == false && $0["final_val_loss"] is Double })
        #expect(FileManager.default.fileExists(atPath: out + "/study-run/study/study.svg") && study.stdout.contains("in equal time"))

        let seeds = try CLI.run(["demo", "--quick", "--quiet", "--seeds", "2", "--study", "--out", out + "/seeds"])
        #expect(seeds.status == 0, "\(seeds.stderr)")
        #expect(seeds.stdout.contains("| seed 42 | seed 43 | mean | sd |") && seeds.stdout.contains("| grpo − sft |"), "\(seeds.stdout)")
        let one = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/seeds/seed-43/report.json"))) as! [String: Any]
        #expect((one["study"] as? [String: Any])?["arms"] is [Any])
        #expect(FileManager.default.fileExists(atPath: out + "/seeds/seeds.md"))
    }

    /// The routing lab on the demo's model: moe route's report against the JSONL records, a budget sweep, the
    /// budget in bench infer, and pruning.
    func routingLab(model: String, text: String, out: String) throws {
        let route = try CLI.run(["route", "--model", model, "--demo-corpus", "--max-tokens", "1500", "--out", out + "/route"])
        #expect(route.status == 0, "\(route.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/route/report.json"))) as! [String: Any]
        let domains = report["domains"] as! [[String: Any]]
        #expect(domains.map { $0["name"] as! String } == ["arithmetic", "code", "prose"])
        for d in domains {
            for row in d["share"] as! [[Double]] { #expect(abs(row.reduce(0, +) - 1) < 1e-9, "\(d["name"]!)") }
        }
        // The mutual information between domain and expert, counted again from routing.jsonl.
        let layers = (report["moe_layers"] as! [Int]).count, experts = report["experts"] as! Int
        var counts: [String: [[Double]]] = [:]
        let lines = try String(contentsOfFile: out + "/route/routing.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == report["tokens"] as? Int)
        for line in lines {
            let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let domain = record["domain"] as! String
            var c = counts[domain] ?? Array(repeating: Array(repeating: 0, count: experts), count: layers)
            for (l, chosen) in (record["experts"] as! [[Int]]).enumerated() { for e in chosen { c[l][e] += 1 } }
            counts[domain] = c
        }
        let mi = report["mutual_information_bits"] as! [Double]
        for l in 0..<layers {
            let total = counts.values.reduce(0.0) { $0 + $1[l].reduce(0, +) }
            var direct = 0.0
            for c in counts.values {
                let pd = c[l].reduce(0, +) / total
                for e in 0..<experts where c[l][e] > 0 {
                    let pe = counts.values.reduce(0.0) { $0 + $1[l][e] } / total, p = c[l][e] / total
                    direct += p * log2(p / (pd * pe))
                }
            }
            #expect(abs(direct - mi[l]) < 1e-9, "layer \(l): \(direct) vs \(mi[l])")
        }
        let html = try String(contentsOfFile: out + "/route/report.html", encoding: .utf8)
        #expect(html.contains("id=\"data\"") && !html.contains("src=\"http") && !html.contains("href=\"http"))   // nothing from the network
        for f in ["routing-arithmetic.svg", "routing-all.svg", "coactivation.svg"] {
            #expect(FileManager.default.fileExists(atPath: out + "/route/" + f), "\(f) missing")
        }

        // The budget sweep: the full row is the reference itself; K = 1 of 2 reads half the expert bytes.
        let sweep = try CLI.run(["eval", "--model", model, "--text", text, "--budget-sweep", "--decode-tokens", "8", "--thresholds", "0.5",
                                 "--out", out + "/budget"])
        #expect(sweep.status == 0, "\(sweep.stderr)")
        let rows = try JSONSerialization.jsonObject(with: Data((sweep.stdout.split(separator: "\n").last ?? "").utf8)) as! [[String: Any]]
        #expect(rows.map { $0["budget"] as? String } == ["full", "k=1", "t=0.5"])
        #expect(rows[0]["kl_divergence"] as? Double == 0 && rows[0]["top1_agreement"] as? Double == 1)
        #expect(rows[1]["mean_experts"] as? Double == 1 && rows[1]["expert_bytes_read"] as? Double == 0.5)
        for f in ["budget.md", "budget.json", "budget-kl.svg", "budget-speed.svg"] {
            #expect(FileManager.default.fileExists(atPath: out + "/budget/" + f), "\(f) missing")
        }
        let bench = try CLI.run(["bench", "infer", "--model", model, "--experts-per-token", "1", "--prompt-tokens", "16", "--gen-tokens", "8",
                                 "--repetitions", "1"])
        #expect(bench.status == 0 && bench.stdout.contains("(50% of the full top-k"), "\(bench.stdout) \(bench.stderr)")
        let tooMany = try CLI.run(["generate", "--model", model, "--prompt", "1 + 1 =", "--experts-per-token", "9"])
        #expect(tooMany.status != 0 && tooMany.stderr.contains("between 1 and the model's 2"), "\(tooMany.stderr)")

        // Pruning to 3 of 4 experts: a smaller checkpoint that runs, and the quality table.
        let prune = try CLI.run(["prune", "--model", model, "--demo-corpus", "--keep", "3", "--max-tokens", "2000", "--out", out + "/pruned"])
        #expect(prune.status == 0 && prune.stdout.contains("| pruned | 3 |"), "\(prune.stdout) \(prune.stderr)")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/pruned/config.json"))) as! [String: Any]
        #expect(config["num_experts"] as? Int == 3)
        let g = try CLI.run(["generate", "--model", out + "/pruned", "--prompt", "12 + 7 =", "--max-tokens", "4"])
        #expect(g.status == 0, "\(g.stderr)")
    }

    /// `--arch next --compare`: the hybrid family through every stage, the attention-only one pre-trained beside
    /// it on the same corpus and time, both in the report.
    @Test func demoComparesTheHybridFamily() throws {
        let out = temporaryDirectory()
        let r = try CLI.run(["demo", "--quick", "--quiet", "--out", out, "--arch", "next", "--compare"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as! [String: Any]
        let runs = report["architectures"] as! [[String: Any]]
        #expect(runs.map { $0["model_type"] as? String } == ["qwen3_next", "qwen3_moe"])
        #expect(runs.allSatisfy { ($0["val_loss"] as? Double).map { $0.isFinite && $0 > 0 } == true })
        #expect(try String(contentsOfFile: out + "/report.md", encoding: .utf8).contains("| qwen3_next |"))
        let inspect = try CLI.run(["inspect", "--model", out + "/pretrain"])
        #expect(inspect.stdout.contains("recurrent state:"), "\(inspect.stdout)")
        #expect(try CLI.run(["demo", "--quick", "--out", out, "--arch", "rnn"]).status != 0)
    }

    /// A directory with a small text (data.txt) and a tokenizer trained on it (tok/).
    func foxCorpus() throws -> String {
        let dir = temporaryDirectory()
        let text = (0..<400).map { i in "The fox \(i % 13) ran to the river and back \(i % 7) times." }.joined(separator: "\n")
        try text.write(toFile: dir + "/data.txt", atomically: true, encoding: .utf8)
        let r = try CLI.run(["tokenizer", "train", "--input", dir + "/data.txt", "--vocab-size", "300", "--out", dir + "/tok", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        return dir
    }

    /// pretrain → resume → a write that fails (file-size limit, as a full disk): a clear error and the
    /// previous checkpoint intact.
    @Test func pretrainResumesAndSurvivesAFullDisk() throws {
        let dir = try foxCorpus()
        var r: CLI.Result
        let common = ["pretrain", "--config", "tiny", "--data", dir + "/data.txt", "--tokenizer", dir + "/tok", "--out", dir + "/run",
                      "--batch", "2", "--seq-len", "32", "--checkpoint-every", "2", "--eval-every", "2", "--quiet"]
        r = try CLI.run(common + ["--steps", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir + "/run/checkpoint-2/optimizer.safetensors"))
        r = try CLI.run(common + ["--steps", "4", "--resume"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("resumed from"))
        let metrics = try String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(metrics.count == 4)
        let before = try Data(contentsOf: URL(fileURLWithPath: dir + "/run/checkpoint-4/model.safetensors"))

        // 64 KiB is enough for metrics lines but not for a model file.
        let quoted = ([CLI.executable] + common + ["--steps", "6", "--resume"]).map { "'\($0)'" }.joined(separator: " ")
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        shell.arguments = ["-c", "ulimit -f 64; exec \(quoted)"]
        let err = Pipe()
        shell.standardError = err
        shell.standardOutput = Pipe()
        try shell.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        shell.waitUntilExit()
        #expect(shell.terminationStatus != 0)
        #expect(stderr.contains("cannot write the checkpoint"), "\(stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/run/checkpoint-4/model.safetensors")) == before)
        #expect(!FileManager.default.fileExists(atPath: dir + "/run/checkpoint-6"))
    }

    /// --mtp-depth 1: the module is trained (its loss logged), saved under DeepSeek-V3's names, needed again to
    /// resume, and drafts for `moe generate --speculative mtp` without changing its greedy text.
    @Test func pretrainTrainsAMultiTokenPredictionModule() throws {
        let dir = try foxCorpus()
        var r: CLI.Result
        let common = ["pretrain", "--config", "tiny", "--data", dir + "/data.txt", "--tokenizer", dir + "/tok", "--out", dir + "/run",
                      "--batch", "2", "--seq-len", "32", "--eval-every", "2", "--quiet"]
        r = try CLI.run(common + ["--steps", "4", "--mtp-depth", "1"])
        #expect(r.status == 0, "\(r.stderr)")
        let metrics = try String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8)
        #expect(metrics.contains("\"mtp_ce\"") && metrics.contains("\"val_mtp_ce\""))
        let config = try String(contentsOfFile: dir + "/run/config.json", encoding: .utf8)
        #expect(config.contains("\"num_nextn_predict_layers\" : 1"))
        let names = try SafeTensorsFile(path: dir + "/run/model.safetensors").tensors.keys
        for n in ["eh_proj", "enorm", "hnorm", "shared_head.norm", "shared_head.head", "embed_tokens", "input_layernorm"] {
            #expect(names.contains("model.layers.2.\(n).weight"), "\(n)")
        }
        r = try CLI.run(common + ["--steps", "6", "--resume"])
        #expect(r.status != 0 && r.stderr.contains("--mtp-depth 1"), "\(r.stderr)")
        let generate = ["generate", "--model", dir + "/run", "--prompt", "The fox", "--max-tokens", "16", "--print-ids"]
        let plain = try CLI.run(generate), fast = try CLI.run(generate + ["--speculative", "mtp", "--draft-tokens", "2"])
        #expect(plain.status == 0 && fast.status == 0, "\(fast.stderr)")
        #expect(fast.stdout == plain.stdout && fast.stderr.contains("drafts "), "\(fast.stdout) vs \(plain.stdout)")
    }

    @Test func pretrainRejectsAnEmptyCorpus() throws {
        let dir = temporaryDirectory()
        try "".write(toFile: dir + "/empty.txt", atomically: true, encoding: .utf8)
        try "some words here and there".write(toFile: dir + "/seed.txt", atomically: true, encoding: .utf8)
        _ = try CLI.run(["tokenizer", "train", "--input", dir + "/seed.txt", "--vocab-size", "270", "--out", dir + "/tok", "--quiet"])
        let r = try CLI.run(["pretrain", "--config", "tiny", "--data", dir + "/empty.txt", "--tokenizer", dir + "/tok", "--out", dir + "/run"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("no tokens"), "\(r.stderr)")
    }

    @Test func benchTrainEndsWithTheTokensPerSecondLine() throws {
        let r = try CLI.run(["bench", "train", "--preset", "tiny", "--steps", "1", "--warmup", "0", "--batch", "2", "--seq-len", "16",
                             "--peer-python", ""])
        #expect(r.status == 0, "\(r.stderr)")
        let last = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.hasPrefix("tokens/s: ") && Double(last.dropFirst("tokens/s: ".count)) != nil, "\(last)")
    }
}

extension TrainingCLITests {
    /// moe sft, dpo and reward on a demo model: they run and write models that load, and bad lines are named.
    @Test func postTrainingCommandsRunOnADemoModel() throws {
        let out = temporaryDirectory()
        let d = try CLI.run(["demo", "--quick", "--quiet", "--out", out])
        #expect(d.status == 0, "\(d.stderr)")
        let lines = (0..<12).map { i in "{\"messages\": [{\"role\": \"user\", \"content\": \"What is \(i) + 1?\"}, {\"role\": \"assistant\", \"content\": \"\(i) + 1 = \(i + 1)\"}]}" }
        try lines.joined(separator: "\n").write(toFile: out + "/chat.jsonl", atomically: true, encoding: .utf8)
        let r = try CLI.run(["sft", "--model", out + "/pretrain", "--data", out + "/chat.jsonl", "--out", out + "/sft-cli", "--batch", "4",
                             "--steps", "3", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("fine-tuned 3 steps"))
        let g = try CLI.run(["generate", "--model", out + "/sft-cli", "--prompt", "What is 2 + 1?", "--chat", "--max-tokens", "4"])
        #expect(g.status == 0, "\(g.stderr)")
        // DPO and a reward model on the same model, with text and conversational pairs.
        let prefs = (0..<8).map { i in
            i % 2 == 0 ? "{\"prompt\": \"\(i) + 1 =\", \"chosen\": \" \(i + 1)\", \"rejected\": \" \(i + 3)\"}"
                       : "{\"prompt\": [{\"role\": \"user\", \"content\": \"What is \(i) + 1?\"}], \"chosen\": [{\"role\": \"assistant\", \"content\": \"\(i + 1)\"}], \"rejected\": [{\"role\": \"assistant\", \"content\": \"\(i + 2)\"}]}"
        }
        try prefs.joined(separator: "\n").write(toFile: out + "/prefs.jsonl", atomically: true, encoding: .utf8)
        let dpo = try CLI.run(["dpo", "--model", out + "/pretrain", "--data", out + "/prefs.jsonl", "--out", out + "/dpo-cli", "--batch", "2",
                               "--steps", "2", "--quiet"])
        #expect(dpo.status == 0, "\(dpo.stderr)")
        #expect(FileManager.default.fileExists(atPath: out + "/dpo-cli/metrics.svg"))
        let rm = try CLI.run(["reward", "train", "--model", out + "/pretrain", "--data", out + "/prefs.jsonl", "--out", out + "/rm",
                              "--batch", "2", "--steps", "2", "--quiet"])
        #expect(rm.status == 0, "\(rm.stderr)")
        let score = try CLI.run(["reward", "score", "--model", out + "/rm", "--data", out + "/prefs.jsonl"])
        #expect(score.status == 0 && score.stdout.contains("\"accuracy\""), "\(score.stderr)")
        // GRPO with the exact-answer reward; an empty prompt set is refused.
        try "{\"prompt\": \"3 + 4 =\", \"answer\": 7}\n{\"prompt\": \"2 + 2 =\", \"answer\": \"4\"}\n".write(toFile: out + "/prompts.jsonl", atomically: true, encoding: .utf8)
        let grpo = try CLI.run(["grpo", "--model", out + "/pretrain", "--prompts", out + "/prompts.jsonl", "--reward", "exact-answer",
                                "--out", out + "/grpo-cli", "--group", "4", "--prompts-per-batch", "1", "--max-new-tokens", "4", "--steps", "2",
                                "--beta", "0.04", "--quiet"])
        #expect(grpo.status == 0 && grpo.stdout.contains("mean reward"), "\(grpo.stderr)")
        try "\n".write(toFile: out + "/noprompts.jsonl", atomically: true, encoding: .utf8)
        let none = try CLI.run(["grpo", "--model", out + "/pretrain", "--prompts", out + "/noprompts.jsonl", "--out", out + "/grpo2"])
        #expect(none.status != 0 && none.stderr.contains("no prompts"), "\(none.stderr)")
        let wrongVocab = try CLI.run(["grpo", "--model", out + "/pretrain", "--prompts", out + "/prompts.jsonl", "--out", out + "/grpo3",
                                      "--reward", "model:" + CLI.fixtures + "/qwen3_moe"])
        #expect(wrongVocab.status != 0 && wrongVocab.stderr.contains("score head"), "\(wrongVocab.stderr)")
        // PPO with the reward model (the value model starts from it): the policy goes to OUT, the value model to
        // OUT/value; a reward "model" without a score head is refused.
        let ppo = try CLI.run(["ppo", "--policy", out + "/pretrain", "--reward", out + "/rm", "--prompts", out + "/prompts.jsonl",
                               "--out", out + "/ppo", "--prompts-per-batch", "2", "--response-length", "4", "--ppo-epochs", "2",
                               "--steps", "2", "--missing-eos-penalty", "1", "--quiet"])
        #expect(ppo.status == 0 && ppo.stdout.contains("mean score"), "\(ppo.stderr)")
        for f in ["model.safetensors", "value/model.safetensors", "value/config.json", "tokenizer.json", "metrics.jsonl"] {
            #expect(FileManager.default.fileExists(atPath: out + "/ppo/" + f), "ppo/\(f) missing")
        }
        let ppoMetrics = (try? String(contentsOfFile: out + "/ppo/metrics.jsonl", encoding: .utf8))?.split(separator: "\n") ?? []
        #expect(ppoMetrics.count == 2 && ppoMetrics.allSatisfy { $0.contains("\"mean_score\"") && $0.contains("\"value_loss\"") })
        let g2 = try CLI.run(["generate", "--model", out + "/ppo", "--prompt", "3 + 4 =", "--max-tokens", "3"])
        #expect(g2.status == 0, "\(g2.stderr)")
        let noScore = try CLI.run(["ppo", "--policy", out + "/pretrain", "--reward", out + "/pretrain", "--prompts", out + "/prompts.jsonl",
                                   "--out", out + "/ppo2", "--steps", "1", "--quiet"])
        #expect(noScore.status != 0 && noScore.stderr.contains("score head"), "\(noScore.stderr)")
        let noPrompts = try CLI.run(["ppo", "--policy", out + "/pretrain", "--reward", out + "/rm", "--prompts", out + "/noprompts.jsonl",
                                     "--out", out + "/ppo3", "--quiet"])
        #expect(noPrompts.status != 0 && noPrompts.stderr.contains("no prompts"), "\(noPrompts.stderr)")

        try "{\"prompt\": \"x\", \"chosen\": 3}\n".write(toFile: out + "/badprefs.jsonl", atomically: true, encoding: .utf8)
        let badPrefs = try CLI.run(["dpo", "--model", out + "/pretrain", "--data", out + "/badprefs.jsonl", "--out", out + "/dpo2"])
        #expect(badPrefs.status != 0 && badPrefs.stderr.contains("badprefs.jsonl:1"), "\(badPrefs.stderr)")

        // gpt-oss: pre-trained from a config.json, fine-tuned with its experts saved as MXFP4 (and the rest in bf16), read
        // back by the engine; DPO with LoRA on it.
        let oss = """
            {"model_type": "gpt_oss", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_local_experts": 4, "num_experts_per_tok": 2,
             "sliding_window": 16, "layer_types": ["sliding_attention", "full_attention"], "max_position_embeddings": 256,
             "rms_norm_eps": 1e-5, "tie_word_embeddings": false}
            """
        try oss.write(toFile: out + "/oss.json", atomically: true, encoding: .utf8)
        try (0..<100).map { "The number \($0) plus one is \($0 + 1)." }.joined(separator: "\n").write(toFile: out + "/oss.txt", atomically: true, encoding: .utf8)
        let ossPretrain = try CLI.run(["pretrain", "--config", out + "/oss.json", "--data", out + "/oss.txt", "--tokenizer", out + "/pretrain",
                                       "--out", out + "/oss", "--steps", "2", "--batch", "2", "--seq-len", "32", "--quiet"])
        #expect(ossPretrain.status == 0, "\(ossPretrain.stderr)")
        let ossSFT = try CLI.run(["sft", "--model", out + "/oss", "--data", out + "/chat.jsonl", "--out", out + "/oss-sft", "--batch", "2",
                                  "--steps", "2", "--save-mxfp4", "--save-dtype", "bf16", "--quiet"])
        #expect(ossSFT.status == 0, "\(ossSFT.stderr)")
        let inspect = try CLI.run(["inspect", "--model", out + "/oss-sft"])
        #expect(inspect.status == 0 && inspect.stdout.contains("MXFP4") && inspect.stdout.contains("BF16"), "\(inspect.stdout)\(inspect.stderr)")
        let ossChat = try CLI.run(["generate", "--model", out + "/oss-sft", "--prompt", "What is 2 + 1?", "--chat", "--max-tokens", "4"])
        #expect(ossChat.status == 0, "\(ossChat.stderr)")
        let ossDPO = try CLI.run(["dpo", "--model", out + "/oss", "--data", out + "/prefs.jsonl", "--out", out + "/oss-dpo", "--batch", "2",
                                  "--steps", "2", "--quiet", "--lora-rank", "2", "--val-fraction", "0"])
        #expect(ossDPO.status == 0 && FileManager.default.fileExists(atPath: out + "/oss-dpo/adapter_model.safetensors"), "\(ossDPO.stderr)")
        let notOss = try CLI.run(["sft", "--model", out + "/pretrain", "--data", out + "/chat.jsonl", "--out", out + "/sft3", "--steps", "1",
                                  "--save-mxfp4", "--quiet"])
        #expect(notOss.status != 0 && notOss.stderr.contains("gpt-oss only"), "\(notOss.stderr)")

        try (lines[0] + "\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n").write(toFile: out + "/bad.jsonl", atomically: true, encoding: .utf8)
        let bad = try CLI.run(["sft", "--model", out + "/pretrain", "--data", out + "/bad.jsonl", "--out", out + "/sft2"])
        #expect(bad.status != 0 && bad.stderr.contains("bad.jsonl:2") && bad.stderr.contains("no assistant turn"), "\(bad.stderr)")
    }
}

extension TrainingCLITests {
    /// moe sft and dpo with --lora-rank write PEFT's adapter files (no model), resume, and `moe lora merge` makes a
    /// model that generates; bad ranks and adapters that do not fit are refused.
    @Test func sftAndDPOWithLoRAThenMerge() throws {
        let out = temporaryDirectory()
        let d = try CLI.run(["demo", "--quick", "--quiet", "--out", out])
        #expect(d.status == 0, "\(d.stderr)")
        let lines = (0..<12).map { i in "{\"messages\": [{\"role\": \"user\", \"content\": \"What is \(i) + 1?\"}, {\"role\": \"assistant\", \"content\": \"\(i) + 1 = \(i + 1)\"}]}" }
        try lines.joined(separator: "\n").write(toFile: out + "/chat.jsonl", atomically: true, encoding: .utf8)
        let sft = ["sft", "--model", out + "/pretrain", "--data", out + "/chat.jsonl", "--out", out + "/lora", "--batch", "4", "--quiet",
                   "--lora-rank", "4", "--lora-alpha", "8", "--checkpoint-every", "2"]
        let r = try CLI.run(sft + ["--steps", "2"])
        #expect(r.status == 0 && r.stderr.contains("LoRA: rank 4"), "\(r.stderr)")
        let resumed = try CLI.run(sft + ["--steps", "3", "--resume"])
        #expect(resumed.status == 0 && resumed.stderr.contains("resumed from"), "\(resumed.stderr)")
        for f in ["adapter_config.json", "adapter_model.safetensors", "checkpoint-3/adapter_model.safetensors"] {
            #expect(FileManager.default.fileExists(atPath: out + "/lora/" + f), "\(f) missing")
        }
        #expect(!FileManager.default.fileExists(atPath: out + "/lora/model.safetensors"))
        let merge = try CLI.run(["lora", "merge", "--model", out + "/pretrain", "--adapter", out + "/lora", "--out", out + "/merged"])
        #expect(merge.status == 0, "\(merge.stderr)")
        let g = try CLI.run(["generate", "--model", out + "/merged", "--prompt", "What is 2 + 1?", "--chat", "--max-tokens", "4"])
        #expect(g.status == 0, "\(g.stderr)")

        try "{\"prompt\": \"1 + 1 =\", \"chosen\": \" 2\", \"rejected\": \" 3\"}\n{\"prompt\": \"2 + 1 =\", \"chosen\": \" 3\", \"rejected\": \" 4\"}\n"
            .write(toFile: out + "/prefs.jsonl", atomically: true, encoding: .utf8)
        let dpo = try CLI.run(["dpo", "--model", out + "/pretrain", "--data", out + "/prefs.jsonl", "--out", out + "/dpo-lora", "--batch", "2",
                               "--steps", "2", "--quiet", "--lora-rank", "2", "--lora-targets", "q_proj,v_proj", "--val-fraction", "0"])
        #expect(dpo.status == 0 && FileManager.default.fileExists(atPath: out + "/dpo-lora/adapter_model.safetensors"), "\(dpo.stderr)")

        let zero = try CLI.run(sft + ["--out", out + "/bad", "--lora-rank", "0"])
        #expect(zero.status != 0 && zero.stderr.contains("--lora-rank must be positive"), "\(zero.stderr)")
        let target = try CLI.run(sft + ["--out", out + "/bad", "--lora-targets", "qproj"])
        #expect(target.status != 0 && target.stderr.contains("'qproj' matches no weight"), "\(target.stderr)")
        let misfit = try CLI.run(["lora", "merge", "--model", CLI.fixtures + "/qwen3_moe", "--adapter", out + "/lora", "--out", out + "/bad"])
        #expect(misfit.status != 0 && misfit.stderr.contains("adapter_model.safetensors: model.layers."), "\(misfit.stderr)")
    }
}
