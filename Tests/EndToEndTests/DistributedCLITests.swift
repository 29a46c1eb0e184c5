import Foundation
import MoEFormats
import Testing

/// Open MPI's launcher, where installed (CI installs openmpi-bin and sets MOE_TEST_MPI=1, which makes it required).
private let mpirun: String? = {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
        let path = "\(dir)/mpirun"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}()
private let mpiRequired = ProcessInfo.processInfo.environment["MOE_TEST_MPI"] == "1"

/// Data parallel training over MPI (`mpirun -np 2`, two ranks on this machine): the same run as one process with
/// the same global batch (`--accumulation`), to float summation order.
@Suite(.serialized) struct DistributedCLITests {
    static let launcher = [mpirun ?? "mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2"]

    @Test func mpiIsThereWhenCIAsksForIt() {
        #expect(!mpiRequired || mpirun != nil, "MOE_TEST_MPI=1 but no mpirun on PATH (Debian: apt-get install openmpi-bin)")
    }

    /// metrics.jsonl's losses (1e-5) and the final weights (1e-5 relative) of two runs.
    func expectSameRun(_ a: String, _ b: String, steps: Int) throws {
        func losses(_ dir: String) throws -> [Double] {
            try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
                (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["loss"] as! Double
            }
        }
        let la = try losses(a), lb = try losses(b)
        #expect(la.count == steps && lb.count == steps)
        for (x, y) in zip(la, lb) { #expect(abs(x - y) <= 1e-5, "losses \(la) vs \(lb)") }
        let wa = try SafeTensorsFile(path: a + "/model.safetensors"), wb = try SafeTensorsFile(path: b + "/model.safetensors")
        #expect(Set(wa.tensors.keys) == Set(wb.tensors.keys))
        var worst: Float = 0
        // A key bias's gradient is zero in exact arithmetic (softmax ignores a shift shared by all keys): AdamW
        // turns its round-off into full steps, so it differs with the summation order and is left out.
        for (name, t) in wa.tensors where !name.hasSuffix("k_proj.bias") {
            let x = try FloatEncoding.floats(t), y = try FloatEncoding.floats(wb.tensors[name]!)
            let scale = max(x.map(abs).max() ?? 0, 1e-6)
            worst = max(worst, zip(x, y).map { abs($0 - $1) / scale }.max() ?? 0)
        }
        #expect(worst <= 1e-5, "largest relative weight difference \(worst)")
    }

    /// Pre-training on two ranks = one process with the same global batch; a checkpoint of the two-rank run resumes
    /// in one process and ends where the one-process run ends.
    @Test(.enabled(if: mpirun != nil, "needs Open MPI's mpirun (Debian: openmpi-bin)"))
    func pretrainOnTwoRanksEqualsOneProcess() throws {
        let dir = try TrainingCLITests().foxCorpus()
        let common = ["pretrain", "--config", "tiny", "--data", dir + "/data.txt", "--tokenizer", dir + "/tok", "--batch", "2",
                      "--seq-len", "32", "--accumulation", "2", "--eval-every", "2", "--checkpoint-every", "2", "--threads", "1", "--quiet"]
        var r = try CLI.run(common + ["--steps", "4", "--out", dir + "/one"])
        #expect(r.status == 0, "\(r.stderr)")
        r = try CLI.run(common + ["--steps", "4", "--out", dir + "/two"], launcher: Self.launcher)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("data parallel: 2 MPI ranks"), "\(r.stderr)")
        #expect(r.stdout.components(separatedBy: "trained 4 steps").count == 2, "rank 0 alone reports: \(r.stdout)")
        try expectSameRun(dir + "/one", dir + "/two", steps: 4)
        // The communication report: each step's all-reduced bytes (the f32 gradients and a few sums) and times.
        let line = try String(contentsOfFile: dir + "/two/metrics.jsonl", encoding: .utf8).split(separator: "\n")[0]
        let metrics = try #require((try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["metrics"] as? [String: Double])
        let parameters = try SafeTensorsFile(path: dir + "/one/model.safetensors").tensors.values.reduce(0) { $0 + $1.elementCount }
        #expect(metrics["allreduce_bytes"].map { $0 >= Double(parameters * 4) && $0 < Double(parameters * 4 + 4096) } == true, "\(metrics)")
        #expect(metrics["allreduce_ms"] != nil && metrics["compute_ms"] != nil)

        r = try CLI.run(common + ["--steps", "2", "--out", dir + "/resumed"], launcher: Self.launcher)
        #expect(r.status == 0, "\(r.stderr)")
        r = try CLI.run(common + ["--steps", "4", "--out", dir + "/resumed", "--resume"])
        #expect(r.status == 0 && r.stderr.contains("resumed from"), "\(r.stderr)")
        try expectSameRun(dir + "/one", dir + "/resumed", steps: 4)

        // ZeRO-1: each rank keeps and steps its share of AdamW's state; the run and its checkpoints are the same.
        r = try CLI.run(common + ["--steps", "4", "--out", dir + "/zero", "--shard-optimizer"], launcher: Self.launcher)
        #expect(r.status == 0, "\(r.stderr)")
        try expectSameRun(dir + "/one", dir + "/zero", steps: 4)
        r = try CLI.run(common + ["--steps", "2", "--out", dir + "/zero-resumed", "--shard-optimizer"], launcher: Self.launcher)
        #expect(r.status == 0, "\(r.stderr)")
        r = try CLI.run(common + ["--steps", "4", "--out", dir + "/zero-resumed", "--resume"])
        #expect(r.status == 0 && r.stderr.contains("resumed from"), "\(r.stderr)")
        try expectSameRun(dir + "/one", dir + "/zero-resumed", steps: 4)

        // A global batch the ranks cannot share evenly is refused.
        r = try CLI.run(common.map { $0 == "2" ? "3" : $0 } + ["--steps", "1", "--out", dir + "/odd"], launcher: Self.launcher)
        #expect(r.status != 0 && r.stderr.contains("multiple of the 2 MPI ranks"), "\(r.stderr)")
    }

    /// Expert parallel on two ranks (each runs half the experts of every layer, tokens exchanged both ways) = one
    /// process with the same global batch, for the qwen3_moe preset and qwen2_moe (gated shared expert, a dense layer);
    /// the two-rank checkpoint resumes in one process.
    @Test(.enabled(if: mpirun != nil, "needs Open MPI's mpirun (Debian: openmpi-bin)"))
    func expertParallelOnTwoRanksEqualsOneProcess() throws {
        let dir = try TrainingCLITests().foxCorpus()
        // The qwen2_moe training fixture's config with room for the corpus's tokenizer.
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: CLI.fixtures
            .replacingOccurrences(of: "/models", with: "/training") + "/qwen2_moe/config.json"))) as! [String: Any]
        config["vocab_size"] = 1024
        let qwen2 = dir + "/qwen2_moe.json"
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: qwen2))
        for (name, config) in [("qwen3", "tiny"), ("qwen2", qwen2)] {
            let common = ["pretrain", "--config", config, "--data", dir + "/data.txt", "--tokenizer", dir + "/tok", "--batch", "2",
                          "--seq-len", "32", "--accumulation", "2", "--eval-every", "2", "--checkpoint-every", "2", "--threads", "1",
                          "--quiet"]
            var r = try CLI.run(common + ["--steps", "4", "--out", dir + "/\(name)-one"])
            #expect(r.status == 0, "\(r.stderr)")
            r = try CLI.run(common + ["--steps", "4", "--out", dir + "/\(name)-ep", "--expert-parallel", "2"], launcher: Self.launcher)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.contains("expert parallel: each rank runs 4 of the 8 experts"), "\(r.stderr)")
            try expectSameRun(dir + "/\(name)-one", dir + "/\(name)-ep", steps: 4)
            // The report: tokens sent to other ranks' experts; the experts' gradients stay off the all-reduce.
            let line = try String(contentsOfFile: dir + "/\(name)-ep/metrics.jsonl", encoding: .utf8).split(separator: "\n")[0]
            let metrics = try #require((try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["metrics"] as? [String: Double])
            let weights = try SafeTensorsFile(path: dir + "/\(name)-one/model.safetensors").tensors
            let experts = weights.filter { $0.key.contains(".experts.") }.values.reduce(0) { $0 + $1.elementCount }
            let all = weights.values.reduce(0) { $0 + $1.elementCount }
            #expect(experts > 0 && metrics["allreduce_bytes"].map { $0 < Double((all - experts) * 4 + 4096) } == true, "\(metrics)")
            #expect(metrics["alltoall_bytes"].map { $0 > 0 } == true && metrics["alltoall_ms"] != nil, "\(metrics)")
        }
        let common = ["pretrain", "--config", "tiny", "--data", dir + "/data.txt", "--tokenizer", dir + "/tok", "--batch", "2",
                      "--seq-len", "32", "--accumulation", "2", "--eval-every", "2", "--checkpoint-every", "2", "--threads", "1", "--quiet"]
        var r = try CLI.run(common + ["--steps", "2", "--out", dir + "/resumed", "--expert-parallel", "2"], launcher: Self.launcher)
        #expect(r.status == 0, "\(r.stderr)")
        r = try CLI.run(common + ["--steps", "4", "--out", dir + "/resumed", "--resume"])
        #expect(r.status == 0 && r.stderr.contains("resumed from"), "\(r.stderr)")
        try expectSameRun(dir + "/qwen3-one", dir + "/resumed", steps: 4)

        r = try CLI.run(common + ["--steps", "1", "--out", dir + "/three", "--expert-parallel", "3"], launcher: Self.launcher)
        #expect(r.status != 0 && r.stderr.contains("--expert-parallel 3 must equal the number of MPI ranks (2)"), "\(r.stderr)")
    }

    /// SFT and DPO on two ranks = one process, data parallel and expert parallel.
    @Test(.enabled(if: mpirun != nil, "needs Open MPI's mpirun (Debian: openmpi-bin)"))
    func sftAndDPOOnTwoRanksEqualOneProcess() throws {
        let dir = try TrainingCLITests().foxCorpus()
        var r = try CLI.run(["pretrain", "--config", "tiny", "--data", dir + "/data.txt", "--tokenizer", dir + "/tok", "--batch", "2",
                             "--seq-len", "32", "--steps", "2", "--out", dir + "/base", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        let sft = (0..<24).map { i in
            #"{"messages": [{"role": "user", "content": "Where did the fox \#(i % 13) run?"}, {"role": "assistant", "content": "To the river, \#(i % 7) times."}]}"#
        }.joined(separator: "\n")
        try sft.write(toFile: dir + "/sft.jsonl", atomically: true, encoding: .utf8)
        let pairs = (0..<24).map { i in
            #"{"prompt": "The fox \#(i % 13)", "chosen": " ran to the river.", "rejected": " ran \#(i % 7) times away."}"#
        }.joined(separator: "\n")
        try pairs.write(toFile: dir + "/pairs.jsonl", atomically: true, encoding: .utf8)
        for (stage, data) in [("sft", "/sft.jsonl"), ("dpo", "/pairs.jsonl")] {
            let common = [stage, "--model", dir + "/base", "--data", dir + data, "--batch", "2", "--seq-len", "128", "--accumulation", "2",
                          "--steps", "3", "--eval-every", "3", "--threads", "1", "--quiet"]
            r = try CLI.run(common + ["--out", dir + "/\(stage)-one"])
            #expect(r.status == 0, "\(stage): \(r.stderr)")
            r = try CLI.run(common + ["--out", dir + "/\(stage)-two"], launcher: Self.launcher)
            #expect(r.status == 0, "\(stage): \(r.stderr)")
            try expectSameRun(dir + "/\(stage)-one", dir + "/\(stage)-two", steps: 3)
            r = try CLI.run(common + ["--out", dir + "/\(stage)-ep", "--expert-parallel", "2"], launcher: Self.launcher)
            #expect(r.status == 0, "\(stage): \(r.stderr)")
            try expectSameRun(dir + "/\(stage)-one", dir + "/\(stage)-ep", steps: 3)
        }
    }

    /// GRPO and PPO on two ranks = one process with the same --accumulation: each rank trains on its share of the
    /// rollout batches, passing over the others' without sampling them (one use each), or making them (several).
    @Test(.enabled(if: mpirun != nil, "needs Open MPI's mpirun (Debian: openmpi-bin)"))
    func grpoAndPPOOnTwoRanksEqualOneProcess() throws {
        let dir = try TrainingCLITests().foxCorpus()
        var r = try CLI.run(["pretrain", "--config", "tiny", "--data", dir + "/data.txt", "--tokenizer", dir + "/tok", "--batch", "2",
                             "--seq-len", "32", "--steps", "2", "--out", dir + "/base", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        let pairs = (0..<8).map { i in #"{"prompt": "The fox \#(i)", "chosen": " ran to the river.", "rejected": " ran \#(i) times."}"# }
        try pairs.joined(separator: "\n").write(toFile: dir + "/pairs.jsonl", atomically: true, encoding: .utf8)
        r = try CLI.run(["reward", "train", "--model", dir + "/base", "--data", dir + "/pairs.jsonl", "--out", dir + "/rm", "--batch", "2",
                         "--steps", "2", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        let prompts = (0..<6).map { i in #"{"prompt": "The fox \#(i) ran", "answer": "\#(i)"}"# }
        try prompts.joined(separator: "\n").write(toFile: dir + "/prompts.jsonl", atomically: true, encoding: .utf8)
        let runs: [(String, [String])] = [
            ("grpo", ["grpo", "--model", dir + "/base", "--prompts", dir + "/prompts.jsonl", "--reward", "exact-answer", "--group", "4",
                      "--prompts-per-batch", "1", "--max-new-tokens", "4", "--beta", "0.04", "--temperature", "0.8"]),
            ("grpo-reused", ["grpo", "--model", dir + "/base", "--prompts", dir + "/prompts.jsonl", "--reward", "exact-answer", "--group", "4",
                             "--prompts-per-batch", "1", "--max-new-tokens", "4", "--iterations", "3"]),
            ("ppo", ["ppo", "--policy", dir + "/base", "--reward", dir + "/rm", "--prompts", dir + "/prompts.jsonl", "--prompts-per-batch", "2",
                     "--response-length", "4", "--ppo-epochs", "1"]),
            ("ppo-reused", ["ppo", "--policy", dir + "/base", "--reward", dir + "/rm", "--prompts", dir + "/prompts.jsonl",
                            "--prompts-per-batch", "2", "--response-length", "4", "--ppo-epochs", "3"]),
        ]
        for (name, command) in runs {
            let common = command + ["--accumulation", "2", "--steps", "2", "--threads", "1", "--quiet"]
            r = try CLI.run(common + ["--out", dir + "/\(name)-one"])
            #expect(r.status == 0, "\(name): \(r.stderr)")
            r = try CLI.run(common + ["--out", dir + "/\(name)-two"], launcher: Self.launcher)
            #expect(r.status == 0, "\(name): \(r.stderr)")
            #expect(r.stdout.components(separatedBy: "trained 2 steps").count == 2, "rank 0 alone reports: \(r.stdout)")
            try expectSameRun(dir + "/\(name)-one", dir + "/\(name)-two", steps: 2)
        }
    }

    /// Asking for MPI without its library is a clear error; stages without data parallelism refuse it.
    @Test func missingMPIAndUnsupportedStagesAreClearErrors() throws {
        let dir = try TrainingCLITests().foxCorpus()
        var r = try CLI.run(["pretrain", "--config", "tiny", "--data", dir + "/data.txt", "--tokenizer", dir + "/tok", "--steps", "1",
                             "--out", dir + "/run", "--distributed", "--quiet"], environment: ["MOE_MPI_LIBRARY": "/nonexistent/libmpi.so.40"])
        #expect(r.status != 0 && r.stderr.contains("needs Open MPI's /nonexistent/libmpi.so.40"), "\(r.stderr)")
        r = try CLI.run(["grpo", "--model", dir + "/run", "--prompts", dir + "/p.jsonl", "--reward", "exact-answer", "--out", dir + "/g",
                         "--expert-parallel", "2"])
        #expect(r.status != 0 && r.stderr.contains("runs data parallel, not --expert-parallel"), "\(r.stderr)")
    }
}
