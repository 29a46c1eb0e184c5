import Foundation
import Testing
import MoEFormats
@testable import MoETraining

/// TRL 1.12's PPOTrainer, one outer step (scripts/make_ppo_fixtures.py, Tests/Fixtures/posttraining/ppo). TRL
/// left-pads the queries to Q and lays responses out at R fixed positions; here each row is right-padded:
/// the query without its left pads, then the response up to and including its last real token
/// (`sequence_lengths`), so response position t of row r sits at batch position r·T + q_r − 1 + t.
enum PPOFixture {
    static func json() throws -> [String: Any] { try PostTrainingFixtures.json("ppo") }
    static let directory = PostTrainingFixtures.root + "/ppo"

    static func config(_ e: [String: Any]) -> [String: Any] { e["config"] as! [String: Any] }
    static func responseLength(_ e: [String: Any]) -> Int { config(e)["response_length"] as! Int }

    static func settings(_ e: [String: Any], estimator: String = "k1") -> PPO.Settings {
        let c = config(e)
        var s = PPO.Settings()
        s.klCoef = c["kl_coef"] as! Double; s.klEstimator = estimator; s.gamma = c["gamma"] as! Double; s.lambda = c["lam"] as! Double
        s.clipRange = c["cliprange"] as! Double; s.clipRangeValue = c["cliprange_value"] as! Double
        s.valueCoef = c["vf_coef"] as! Double; s.temperature = c["temperature"] as! Double
        s.whitenRewards = c["whiten_rewards"] as! Bool; s.missingEOSPenalty = c["missing_eos_penalty"] as? Double
        return s
    }

    /// `len` of PPO.swift: the response tokens of each row, the stop token included (TRL's sequence_lengths + 1).
    static func lengths(_ e: [String: Any]) -> [Int] { (e["sequence_lengths"] as! [Int]).map { $0 + 1 } }

    /// The queries without their left pads.
    static func queries(_ e: [String: Any]) -> [[Int]] {
        let pad = e["pad_token_id"] as! Int
        return (e["queries"] as! [[Int]]).map { Array($0.drop { $0 == pad }) }
    }

    /// Right-padded rows: query ++ postprocessed response up to its last real token.
    static func batch(_ e: [String: Any]) throws -> PaddedBatch {
        let q = queries(e), len = lengths(e), responses = e["postprocessed_responses"] as! [[Int]]
        return try PaddedBatch(sequences: q.indices.map { q[$0] + responses[$0].prefix(len[$0]) }, scoredFrom: q.map(\.count),
                               pad: e["pad_token_id"] as! Int)
    }

    /// The batch position of response position t of row r.
    static func position(_ e: [String: Any], _ batch: PaddedBatch, row r: Int, t: Int) -> Int {
        r * batch.seqLen + queries(e)[r].count - 1 + t
    }

    /// [B][R] → the batch's [rows × seqLen] positions, for t < limit(r) (0 elsewhere).
    static func layout(_ e: [String: Any], _ x: Any?, _ batch: PaddedBatch, upTo limit: (Int) -> Int) -> [Float] {
        var out = [Float](repeating: 0, count: batch.rows * batch.seqLen)
        for (r, row) in (x as! [[Double]]).enumerated() {
            for t in 0..<min(row.count, limit(r)) { out[position(e, batch, row: r, t: t)] = Float(row[t]) }
        }
        return out
    }

    static func flat(_ x: Any?) -> [Double] { (x as! [[Double]]).flatMap { $0 } }

    static func maxDiff(_ a: [Double], _ b: [Double]) -> Double {
        precondition(a.count == b.count, "\(a.count) vs \(b.count)")
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    /// Every gradient of the models (names prefixed `policy.` / `value.`) against grads.safetensors, names
    /// covered both ways; returns the largest |g − g_ref| / max|g_ref| seen.
    @discardableResult
    static func expectGradients(_ models: [(prefix: String, model: TrainableModel)]) throws -> Float {
        let reference = try SafeTensorsFile(path: directory + "/grads.safetensors")
        let ours = Set(models.flatMap { m in m.model.store.tensors.map { m.prefix + $0.name } })
        #expect(Set(reference.tensors.keys) == ours, "only in the fixture: \(Set(reference.tensors.keys).subtracting(ours).sorted()); only here: \(ours.subtracting(reference.tensors.keys).sorted())")
        var worst: Float = 0
        for (prefix, model) in models {
            for t in model.store.tensors {
                guard let r = reference.tensors[prefix + t.name] else { continue }
                let ref = try FloatEncoding.floats(r)
                #expect(ref.count == t.count, "\(prefix + t.name): \(ref.count) vs \(t.count) elements")
                guard ref.count == t.count else { continue }
                var refMax: Float = 0, diff: Float = 0
                for i in 0..<t.count {
                    refMax = max(refMax, abs(ref[i])); diff = max(diff, abs(model.store.grads[t.offset + i] - ref[i]))
                }
                #expect(diff <= 1e-4 * refMax + 1e-6, "\(prefix + t.name): max |g − g_ref| \(diff), max |g_ref| \(refMax)")
                if refMax > 0 { worst = max(worst, diff / refMax) }
            }
        }
        return worst
    }
}

@Suite struct PPOTests {
    /// Steps 3–6 of TRL's rollout from its own log-probs, values and scores: per-token KL, rewards with the
    /// score one past the stop token, GAE, returns, whitened advantages — for the k1 and the k3 estimate.
    @Test(arguments: ["k1", "k3"]) func rolloutMathMatchesTRL(estimator: String) throws {
        let e = try PPOFixture.json()
        let R = PPOFixture.responseLength(e), lengths = PPOFixture.lengths(e)
        let a = PPO.advantages(logProbs: PPOFixture.flat(e["logprobs"]), referenceLogProbs: PPOFixture.flat(e["ref_logprobs"]),
                               values: PPOFixture.flat(e["values"]), scores: e["scores"] as! [Double], lengths: lengths,
                               responseLength: R, settings: PPOFixture.settings(e, estimator: estimator))
        let want = estimator == "k1" ? e : e["k3"] as! [String: Any]
        for key in ["kl", "rewards", "advantages", "returns"] {
            let ours = key == "kl" ? a.kl : key == "rewards" ? a.rewards : key == "advantages" ? a.advantages : a.returns
            let d = PPOFixture.maxDiff(ours, PPOFixture.flat(want[key]))
            print("ppo rollout \(estimator) \(key): max |Δ| \(d)")
            #expect(d < 1e-5, "\(estimator) \(key): max |Δ| \(d)")
        }
        // The score sits at actual_end (one past the stop token when there is room).
        for (r, end) in (e["actual_end"] as! [Int]).enumerated() {
            #expect(end == (lengths[r] < R ? lengths[r] : lengths[r] - 1))
        }
    }

    /// Log-probs of the policy and the reference at temperature 0.7 (TRL: logits / (T + 1e-7)), the value
    /// model at every response position (and one past the last token), the reward model's scores.
    @Test func forwardPassesMatchTRL() throws {
        let e = try PPOFixture.json()
        let batch = try PPOFixture.batch(e), lengths = PPOFixture.lengths(e), R = PPOFixture.responseLength(e)
        let settings = PPOFixture.settings(e)
        #expect(settings.logitDivisor == Float(PPOFixture.config(e)["temperature_divisor"] as! Double))
        func compare(_ name: String, _ ours: [Float], _ want: Any?, upTo limit: (Int) -> Int, tolerance: Double) {
            var d = 0.0
            for (r, row) in (want as! [[Double]]).enumerated() {
                for t in 0..<min(R, limit(r)) {
                    d = max(d, abs(Double(ours[PPOFixture.position(e, batch, row: r, t: t)]) - row[t]))
                }
            }
            print("ppo forward \(name): max |Δ| \(d)")
            #expect(d <= tolerance, "\(name): max |Δ| \(d)")
        }
        let policy = try TrainableModel.load(directory: PPOFixture.directory + "/policy", threads: 2)
        compare("logprobs", try policy.tokenLogProbs(batch, temperature: settings.logitDivisor), e["logprobs"], upTo: { lengths[$0] },
                tolerance: 2e-5)
        let reference = try TrainableModel.load(directory: PPOFixture.directory + "/reference", threads: 2)
        compare("ref_logprobs", try reference.tokenLogProbs(batch, temperature: settings.logitDivisor), e["ref_logprobs"],
                upTo: { lengths[$0] }, tolerance: 2e-5)
        // Only where something is scored: the log-probs are 0 elsewhere.
        let scored = (0..<batch.rows * batch.seqLen).filter { batch.targets[$0] >= 0 }.count
        #expect(scored == lengths.reduce(0, +))

        let value = try TrainableModel.load(directory: PPOFixture.directory + "/value", threads: 2)
        #expect(value.head == .score)
        compare("values", try value.positionScores(batch), e["values"], upTo: { lengths[$0] + 1 }, tolerance: 1e-5)

        let reward = try TrainableModel.load(directory: PPOFixture.directory + "/reward", threads: 2)
        let scores = try RewardModeling.scores(reward, batch)
        let d = PPOFixture.maxDiff(scores, e["scores_before_penalty"] as! [Double])
        print("ppo forward scores: max |Δ| \(d)")
        #expect(d < 1e-5, "scores: max |Δ| \(d)")
        // The missing-EOS penalty as the rollout applies it.
        let penalised = scores.indices.map { (e["contain_eos_token"] as! [Int])[$0] != 0 ? scores[$0] : scores[$0] - settings.missingEOSPenalty! }
        #expect(PPOFixture.maxDiff(penalised, e["scores"] as! [Double]) < 1e-5)
    }

    /// The captured optimisation step (2nd PPO epoch, weights after the first AdamW step): policy and value
    /// losses, clip fractions, entropy, approximate KL and every gradient of both models.
    @Test func optimisationStepMatchesTRL() throws {
        let e = try PPOFixture.json()
        let want = e["step"] as! [String: Any]
        let batch = try PPOFixture.batch(e), lengths = PPOFixture.lengths(e), R = PPOFixture.responseLength(e)
        let policy = try TrainableModel.load(directory: PPOFixture.directory + "/policy_epoch2", threads: 2)
        let value = try TrainableModel.load(directory: PPOFixture.directory + "/value_epoch2", threads: 2)
        policy.store.zeroGrads(); value.store.zeroGrads()
        let policyTokens: (Int) -> Int = { lengths[$0] }, valueTokens: (Int) -> Int = { lengths[$0] + 1 }
        let valueMask = PPOFixture.layout(e, lengths.map { _ in [Double](repeating: 1, count: R) }, batch, upTo: valueTokens).map { $0 != 0 }
        #expect(valueMask.filter { $0 }.count == lengths.reduce(0) { $0 + min(R, $1 + 1) })
        let r = try PPO.step(policy: policy, value: value, batch: batch,
                             old: PPOFixture.layout(e, e["logprobs"], batch, upTo: policyTokens),
                             advantages: PPOFixture.layout(e, e["advantages"], batch, upTo: policyTokens),
                             oldValues: PPOFixture.layout(e, e["values"], batch, upTo: valueTokens),
                             returns: PPOFixture.layout(e, e["returns"], batch, upTo: valueTokens), valueMask: valueMask,
                             settings: PPOFixture.settings(e), balance: BalanceLosses())
        let tokens = Double(lengths.reduce(0, +)), all = Double(lengths.count * R)
        let checks: [(String, Double, Double, Double)] = [
            ("pg_loss", r.policyLoss, want["pg_loss"] as! Double, 1e-5),
            ("vf_loss", r.valueLoss, want["vf_loss"] as! Double, 1e-5),
            ("loss", r.loss, want["loss"] as! Double, 1e-5),
            ("pg_clipfrac", r.policyClipFraction, want["pg_clipfrac"] as! Double, 1e-6),
            ("vf_clipfrac", r.valueClipFraction, want["vf_clipfrac"] as! Double, 1e-6),
            ("entropy (policy tokens)", r.entropy, want["entropy_mean_over_policy_tokens"] as! Double, 1e-5),
            // Ours averages ½(log ρ)² over the response tokens, TRL's over all B·R entries (0 at pads).
            ("approxkl", r.approxKL * tokens / all, want["approxkl"] as! Double, 1e-6),
        ]
        for (name, ours, theirs, tolerance) in checks {
            print("ppo step \(name): \(ours) vs \(theirs), |Δ| \(abs(ours - theirs))")
            #expect(abs(ours - theirs) <= tolerance, "\(name): \(ours) vs \(theirs)")
        }
        #expect(abs(r.loss - (r.policyLoss + 0.1 * r.valueLoss)) < 1e-12)
        let worst = try PPOFixture.expectGradients([("policy.", policy), ("value.", value)])
        print("ppo step gradients: max |Δg| / max |g_ref| \(worst)")

        // With no scale nothing is back-propagated, and the losses are the same.
        policy.store.zeroGrads(); value.store.zeroGrads()
        let again = try PPO.step(policy: policy, value: value, batch: batch,
                                 old: PPOFixture.layout(e, e["logprobs"], batch, upTo: policyTokens),
                                 advantages: PPOFixture.layout(e, e["advantages"], batch, upTo: policyTokens),
                                 oldValues: PPOFixture.layout(e, e["values"], batch, upTo: valueTokens),
                                 returns: PPOFixture.layout(e, e["returns"], batch, upTo: valueTokens), valueMask: valueMask,
                                 settings: PPOFixture.settings(e), balance: BalanceLosses(), scale: nil)
        #expect(abs(again.loss - r.loss) < 1e-9)
        #expect((0..<policy.store.count).allSatisfy { policy.store.grads[$0] == 0 })
        #expect((0..<value.store.count).allSatisfy { value.store.grads[$0] == 0 })
    }

    /// PPOObjective (what the Trainer runs) on the captured step laid out as PPORollouts lays out a rollout:
    /// TRL's losses and logged metrics (objective/scores, objective/kl) and the same gradients.
    @Test func objectiveMatchesTRLsStepAndMetrics() throws {
        let e = try PPOFixture.json()
        let want = e["step"] as! [String: Any], logged = e["trl_metrics"] as! [String: Any]
        let batch = try PPOFixture.batch(e), lengths = PPOFixture.lengths(e), R = PPOFixture.responseLength(e)
        let policy = try TrainableModel.load(directory: PPOFixture.directory + "/policy_epoch2", threads: 2)
        let value = try TrainableModel.load(directory: PPOFixture.directory + "/value_epoch2", threads: 2)
        policy.store.zeroGrads(); value.store.zeroGrads()
        let p: (Int) -> Int = { lengths[$0] }, v: (Int) -> Int = { lengths[$0] + 1 }
        let mask = PPOFixture.layout(e, lengths.map { _ in [Double](repeating: 1, count: R) }, batch, upTo: v)
        let b = TrainingBatch(batch, rowValues: e["scores"] as! [Double],
                              positionValues: ["old": PPOFixture.layout(e, e["logprobs"], batch, upTo: p),
                                               "advantages": PPOFixture.layout(e, e["advantages"], batch, upTo: p),
                                               "kl": PPOFixture.layout(e, e["kl"], batch, upTo: p),
                                               "values": PPOFixture.layout(e, e["values"], batch, upTo: v),
                                               "returns": PPOFixture.layout(e, e["returns"], batch, upTo: v), "value_mask": mask])
        let r = try PPOObjective(value: value, settings: PPOFixture.settings(e)).step(policy, b, balance: BalanceLosses(), scale: 1)
        let m = r.metrics
        #expect(abs(r.loss.total - (want["loss"] as! Double)) < 1e-5, "loss \(r.loss.total)")
        #expect(abs((m["policy_loss"] ?? .nan) - (want["pg_loss"] as! Double)) < 1e-5)
        #expect(abs((m["value_loss"] ?? .nan) - (want["vf_loss"] as! Double)) < 1e-5)
        #expect(abs((m["mean_score"] ?? .nan) - (logged["objective/scores"] as! Double)) < 1e-5, "mean_score \(m["mean_score"] ?? .nan)")
        #expect(abs((m["kl"] ?? .nan) - (logged["objective/kl"] as! Double)) < 1e-5, "kl \(m["kl"] ?? .nan)")
        #expect(m["response_tokens"] == Double(lengths.reduce(0, +)) / Double(lengths.count))
        try PPOFixture.expectGradients([("policy.", policy), ("value.", value)])
    }

    /// PPORollouts on the fixture's models and queries (its own samples): the batch holds the log-probs,
    /// values, penalised scores, advantages and returns that TRL's formulas give for those samples, at the
    /// positions PPO.step reads (response token t of row r at r·T + q_r − 1 + t; values one further).
    @Test func rolloutBatchIsLaidOutAsTRLs() throws {
        let e = try PPOFixture.json()
        let dir = PPOTask.temporaryDirectory("fixture-rollout")
        func load(_ name: String) throws -> TrainableModel { try TrainableModel.load(directory: PPOFixture.directory + "/" + name, threads: 2) }
        let policy = try load("policy"), reference = try load("reference"), reward = try load("reward"), value = try load("value")
        let settings = PPOFixture.settings(e), R = PPOFixture.responseLength(e)
        let rollouts = try PPORollouts(policy: policy, reference: reference, reward: reward, value: value, prompts: PPOFixture.queries(e),
                                       promptsPerBatch: 3, responseLength: R, iterations: 2, settings: settings, 
                                       seed: 9, pad: e["pad_token_id"] as! Int)   // seed 9: one row stops at EOS
        let b = try rollouts.next()
        #expect(try rollouts.next().tokens.inputs == b.tokens.inputs)   // the second PPO epoch reuses the rollout
        let batch = b.tokens, T = batch.seqLen
        // Each row: a fixture query, then its response (stopping at EOS or after R tokens).
        let starts = (0..<batch.rows).map { r in (0..<T).first { batch.targets[r * T + $0] >= 0 }! + 1 }
        let lengths = (0..<batch.rows).map { batch.lengths[$0] - starts[$0] }
        let rows = (0..<batch.rows).map { r in (0..<batch.lengths[r]).map { Int(batch.inputs[r * T + $0]) } }
        #expect(Set(rows.indices.map { Array(rows[$0].prefix(starts[$0])) }) == Set(PPOFixture.queries(e)))
        let eos = e["eos_token_id"] as! Int
        for r in rows.indices {
            let response = rows[r].dropFirst(starts[r])
            #expect(lengths[r] >= 1 && lengths[r] <= R && (lengths[r] == R || response.last == eos) && !response.dropLast().contains(eos))
        }
        #expect(rows.contains { $0.last == eos } && lengths.contains(R), "response lengths \(lengths)")
        // TRL's [B][R'] view (R' = the longest response, generate() stopping when every row has stopped).
        let Rb = lengths.max()!
        func responseView(_ x: [Float], extra: Int) -> [Double] {
            (0..<batch.rows).flatMap { r in (0..<Rb).map { t in t < lengths[r] + extra ? Double(x[r * T + starts[r] - 1 + t]) : 0 } }
        }
        let logp = responseView(try policy.tokenLogProbs(batch, temperature: settings.logitDivisor), extra: 0)
        let ref = responseView(try reference.tokenLogProbs(batch, temperature: settings.logitDivisor), extra: 0)
        let values = responseView(try value.positionScores(batch), extra: 1)
        let scores = try RewardModeling.scores(reward, batch).enumerated().map { r, s in rows[r].last == eos ? s : s - settings.missingEOSPenalty! }
        #expect(PPOFixture.maxDiff(b.rowValues, scores) < 1e-9)
        let a = PPO.advantages(logProbs: logp, referenceLogProbs: ref, values: values, scores: scores, lengths: lengths, responseLength: Rb,
                               settings: settings)
        let pv = b.positionValues
        var worst = 0.0
        for r in 0..<batch.rows {
            for i in 0..<T {
                let t = i - (starts[r] - 1), at = r * T + i
                let policyToken = t >= 0 && t < lengths[r], valueToken = t >= 0 && t <= lengths[r] && t < Rb
                #expect((batch.targets[at] >= 0) == policyToken)
                #expect((pv["value_mask"]![at] != 0) == valueToken)
                func check(_ key: String, _ want: Double) { worst = max(worst, abs(Double(pv[key]![at]) - want)) }
                check("old", policyToken ? logp[r * Rb + t] : 0)
                check("advantages", policyToken ? a.advantages[r * Rb + t] : 0)
                check("kl", policyToken ? a.kl[r * Rb + t] : 0)
                check("values", valueToken ? values[r * Rb + t] : 0)
                check("returns", valueToken ? a.returns[r * Rb + t] : 0)
            }
        }
        print("ppo rollout on the fixture models: response lengths \(lengths), scores \(scores), max |Δ| \(worst)")
        #expect(worst < 1e-5, "rollout batch vs TRL's formulas: max |Δ| \(worst)")
        #expect(abs(rollouts.lastMeanScore - scores.reduce(0, +) / 3) < 1e-9)
    }

    /// The rollout batch PPORollouts builds from TRL's samples: run through PPO.step it gives TRL's epoch-0
    /// losses on the initial weights (ratio 1 up to KV-cache noise).
    @Test func rolloutLayoutGivesTRLsFirstEpoch() throws {
        let e = try PPOFixture.json()
        let batch = try PPOFixture.batch(e), lengths = PPOFixture.lengths(e), R = PPOFixture.responseLength(e)
        let policy = try TrainableModel.load(directory: PPOFixture.directory + "/policy", threads: 2)
        let value = try TrainableModel.load(directory: PPOFixture.directory + "/value", threads: 2)
        let settings = PPOFixture.settings(e)
        // Our own log-probs and values of the rollout, as PPORollouts.rollout computes them.
        let old = try policy.tokenLogProbs(batch, temperature: settings.logitDivisor)
        let values = try value.positionScores(batch)
        let a = PPO.advantages(logProbs: PPOFixture.flat(e["logprobs"]), referenceLogProbs: PPOFixture.flat(e["ref_logprobs"]),
                               values: PPOFixture.flat(e["values"]), scores: e["scores"] as! [Double], lengths: lengths,
                               responseLength: R, settings: settings)
        func rows(_ x: [Double]) -> [[Double]] { (0..<lengths.count).map { Array(x[$0 * R..<($0 + 1) * R]) } }
        let valueMask = PPOFixture.layout(e, lengths.map { _ in [Double](repeating: 1, count: R) }, batch, upTo: { lengths[$0] + 1 })
        let r = try PPO.step(policy: policy, value: value, batch: batch, old: old,
                             advantages: PPOFixture.layout(e, rows(a.advantages), batch, upTo: { lengths[$0] }),
                             oldValues: zip(values, valueMask).map { $0 * $1 },
                             returns: PPOFixture.layout(e, rows(a.returns), batch, upTo: { lengths[$0] + 1 }),
                             valueMask: valueMask.map { $0 != 0 }, settings: settings, balance: BalanceLosses(), scale: nil)
        let epoch0 = (e["ppo_epochs"] as! [[String: Any]])[0]
        #expect(abs(r.policyLoss) < 1e-6 && abs(r.policyLoss - (epoch0["pg_loss"] as! Double)) < 1e-5, "pg_loss \(r.policyLoss)")
        #expect(abs(r.valueLoss - (epoch0["vf_loss"] as! Double)) < 1e-5, "vf_loss \(r.valueLoss)")
        #expect(abs(r.loss - (epoch0["loss"] as! Double)) < 1e-5, "loss \(r.loss)")
        #expect(r.policyClipFraction == 0 && r.valueClipFraction == 0)
    }

    /// What PPO.step refuses: per-position arrays of the wrong size.
    @Test func stepRefusesMisshapenInputs() throws {
        let e = try PPOFixture.json()
        let batch = try PPOFixture.batch(e)
        let policy = try TrainableModel.load(directory: PPOFixture.directory + "/policy", threads: 1)
        let value = try TrainableModel.load(directory: PPOFixture.directory + "/value", threads: 1)
        let n = batch.rows * batch.seqLen, zeros = [Float](repeating: 0, count: n)
        #expect {
            try PPO.step(policy: policy, value: value, batch: batch, old: zeros, advantages: zeros, oldValues: zeros, returns: [],
                         valueMask: [Bool](repeating: false, count: n), settings: PPO.Settings(), balance: BalanceLosses())
        } throws: { "\($0)".contains("per position") }
        // A value "model" without a score head.
        #expect {
            try PPO.step(policy: policy, value: policy, batch: batch, old: zeros, advantages: zeros, oldValues: zeros, returns: zeros,
                         valueMask: [Bool](repeating: false, count: n), settings: PPO.Settings(), balance: BalanceLosses())
        } throws: { "\($0)".contains("score head") }
    }
}

/// PPO in the training loop on a seeded synthetic task: a random tiny policy, a random reward model whose
/// score head is rescaled so the scores of different last tokens spread by about one unit.
enum PPOTask {
    static let vocab = 32

    static func config(vocab: Int = PPOTask.vocab) throws -> ModelConfig {
        try ModelPreset.config("tiny", vocabSize: vocab,
                               overrides: ["hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
                                           "num_experts": 4, "moe_intermediate_size": 32, "max_position_embeddings": 64])
    }

    static let prompts: [[Int]] = (0..<8).map { i in [1 + i % 7, 3 + (i * 5) % 11, 8 + i] }

    /// policy/, reward/ under `dir` (the value model starts from the reward model, as `moe ppo` does).
    static func write(to dir: String) throws {
        let policy = try TrainableModel(config: try config(), threads: 2)
        policy.initialize(seed: 11)
        try policy.save(to: dir + "/policy")
        let reward = try TrainableModel(config: try config(), head: .score, threads: 2)
        reward.initialize(seed: 12)
        // Scores of every possible last token after each prompt: rescale score.weight to unit spread.
        let sequences = prompts.flatMap { p in (0..<vocab).map { p + [$0] } }
        let batch = try PaddedBatch(sequences: sequences, scoredFrom: sequences.map { $0.count - 1 }, pad: 0)
        let s = try RewardModeling.scores(reward, batch)
        let mean = s.reduce(0, +) / Double(s.count)
        let std = (s.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(s.count)).squareRoot()
        let head = reward.store.tensors.first { $0.name == "score.weight" }!
        for i in 0..<head.count { reward.store.values[head.offset + i] /= Float(std) }
        try reward.save(to: dir + "/reward")
    }

    struct Run { let trainer: Trainer; let rollouts: PPORollouts; let policy: TrainableModel; let value: TrainableModel }

    static func run(_ dir: String, out: String, steps: Int, checkpointEvery: Int? = nil, lr: Double = 3e-3,
                    iterations: Int = 2, klCoef: Double = 0.05, promptsPerBatch: Int = 8, seed: UInt64 = 5) throws -> Run {
        let policy = try TrainableModel.load(directory: dir + "/policy", threads: 2)
        let reference = try TrainableModel.load(directory: dir + "/policy", threads: 2)
        let reward = try TrainableModel.load(directory: dir + "/reward", threads: 2)
        let value = try TrainableModel.load(directory: dir + "/reward", head: .score, threads: 2)
        var ppo = PPO.Settings()
        ppo.temperature = 1; ppo.klCoef = klCoef
        let rollouts = try PPORollouts(policy: policy, reference: reference, reward: reward, value: value, prompts: prompts,
                                       promptsPerBatch: promptsPerBatch, responseLength: 4, iterations: iterations, settings: ppo,
                                       seed: seed, pad: 0)
        var settings = TrainingSettings()
        settings.steps = steps; settings.learningRate = lr; settings.warmup = 2; settings.evalEvery = steps
        settings.checkpointEvery = checkpointEvery ?? steps; settings.logEvery = 1
        let trainer = try Trainer(model: policy, settings: settings, batches: rollouts,
                                  objective: PPOObjective(value: value, settings: ppo), stage: "ppo", out: out,
                                  jointlyTrained: [("value", value)])
        return Run(trainer: trainer, rollouts: rollouts, policy: policy, value: value)
    }

    static func temporaryDirectory(_ name: String) -> String {
        let dir = NSTemporaryDirectory() + "moe-ppo-\(name)-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }
}

@Suite struct PPOTrainingTests {
    /// PPO raises the reward model's mean score within a bounded number of seeded steps, with the KL to the
    /// reference bounded (and held lower by a larger KL coefficient); the policy and the value model are
    /// written to OUT and OUT/value.
    @Test func ppoRaisesTheMeanScore() throws {
        let dir = PPOTask.temporaryDirectory("task")
        try PPOTask.write(to: dir)
        func train(_ out: String, klCoef: Double) throws -> (run: PPOTask.Run, scores: [Double], kl: [Double]) {
            let run = try PPOTask.run(dir, out: out, steps: 120, lr: 1e-2, klCoef: klCoef, promptsPerBatch: 16)
            _ = try run.trainer.run()
            let log = MetricsLog.read(path: out + "/metrics.jsonl")
            return (run, log.compactMap { $0.metrics?["mean_score"] }, log.compactMap { $0.metrics?["kl"] })
        }
        let start = Date()
        let out = dir + "/out"
        let (run, scores, kl) = try train(out, klCoef: 0.2)
        let seconds = Date().timeIntervalSince(start)
        #expect(scores.count == 120 && kl.count == 120)
        func mean(_ x: ArraySlice<Double>) -> Double { x.reduce(0, +) / Double(max(x.count, 1)) }
        let first = mean(scores.prefix(10)), last = mean(scores.suffix(10))
        print(String(format: "ppo task: mean score %.3f → %.3f, kl %.3f → %.3f (max %.3f), %.1f s", first, last, mean(kl.prefix(10)),
                     mean(kl.suffix(10)), kl.max() ?? .nan, seconds))
        #expect(last > first + 0.5, "mean score \(first) → \(last)")
        // The KL (per sequence, 4 tokens) stays bounded, and a weaker penalty lets it grow further.
        #expect(kl.allSatisfy { $0.isFinite && $0 < 8 } && mean(kl.suffix(10)) < 5, "kl \(kl.suffix(10))")
        let loose = try train(dir + "/loose", klCoef: 0.02)
        print(String(format: "ppo task, β 0.02: mean score → %.3f, kl → %.3f", mean(loose.scores.suffix(10)), mean(loose.kl.suffix(10))))
        #expect(mean(loose.kl.suffix(10)) > mean(kl.suffix(10)) + 1, "kl with β 0.02 \(mean(loose.kl.suffix(10))) vs β 0.2 \(mean(kl.suffix(10)))")

        for f in ["model.safetensors", "value/model.safetensors", "value/config.json", "metrics.svg", "checkpoint-120/value/optimizer.safetensors"] {
            #expect(FileManager.default.fileExists(atPath: out + "/" + f), "\(f) missing")
        }
        // The saved value model is the trained one, with its score head.
        let value = try TrainableModel.load(directory: out + "/value", threads: 1)
        #expect(value.head == .score)
        #expect((0..<value.store.count).allSatisfy { value.store.values[$0] == run.value.store.values[$0] })
    }

    /// A run stopped mid-rollout (after 3 steps of 2 per rollout) and resumed equals an uninterrupted one:
    /// same samples, losses and final policy and value weights.
    @Test func resumeEqualsAnUninterruptedRun() throws {
        let dir = PPOTask.temporaryDirectory("resume")
        try PPOTask.write(to: dir)
        _ = try PPOTask.run(dir, out: dir + "/straight", steps: 6, checkpointEvery: 3).trainer.run()
        _ = try PPOTask.run(dir, out: dir + "/interrupted", steps: 6, checkpointEvery: 3).trainer.run()
        try FileManager.default.removeItem(atPath: dir + "/interrupted/checkpoint-6")
        let resumed = try PPOTask.run(dir, out: dir + "/interrupted", steps: 6, checkpointEvery: 3)
        #expect(try resumed.trainer.resume())
        #expect(resumed.trainer.step == 3)
        _ = try resumed.trainer.run()
        expectSameRun(dir + "/straight", dir + "/interrupted", steps: 6, metrics: ["mean_score", "value_loss"])
        for f in ["model.safetensors", "value/model.safetensors"] {
            let x = try SafeTensorsFile(path: dir + "/straight/" + f), y = try SafeTensorsFile(path: dir + "/interrupted/" + f)
            #expect(Set(x.tensors.keys) == Set(y.tensors.keys))
            for (name, t) in x.tensors { #expect(try FloatEncoding.floats(t) == FloatEncoding.floats(y.tensors[name]!), "\(f): \(name)") }
        }
    }

    /// A reward or value model with another vocabulary or no score head, no prompts, nothing to sample:
    /// refused up front with a message that says what is wrong.
    @Test func badInputIsRefused() throws {
        let dir = PPOTask.temporaryDirectory("bad")
        try PPOTask.write(to: dir)
        let policy = try TrainableModel.load(directory: dir + "/policy", threads: 1)
        let reward = try TrainableModel.load(directory: dir + "/reward", threads: 1)
        let otherVocab = try TrainableModel(config: try PPOTask.config(vocab: 64), head: .score, threads: 1)
        func make(reward r: TrainableModel = reward, value v: TrainableModel? = nil, reference: TrainableModel? = nil,
                  prompts: [[Int]] = PPOTask.prompts, responseLength: Int = 4) throws -> PPORollouts {
            try PPORollouts(policy: policy, reference: reference ?? policy, reward: r, value: v ?? reward, prompts: prompts,
                            promptsPerBatch: 2, responseLength: responseLength, iterations: 1, settings: PPO.Settings(),
                            seed: 1, pad: 0)
        }
        _ = try make()
        #expect { try make(reward: otherVocab) } throws: { "\($0)".contains("reward model's vocabulary (64) differs from the policy's (32)") }
        #expect { try make(value: otherVocab) } throws: { "\($0)".contains("value model's vocabulary (64) differs") }
        #expect { try make(prompts: []) } throws: { "\($0)".contains("no prompts") }
        #expect { try make(reward: policy) } throws: { "\($0)".contains("score head") }
        #expect { try make(value: policy) } throws: { "\($0)".contains("score head") }
        #expect { try make(reference: reward) } throws: { "\($0)".contains("language-model head") }
        #expect { try make(prompts: [[1, 2], []]) } throws: { "\($0)".contains("prompt 2 is empty") }
        #expect { try make(prompts: [[1, 40]]) } throws: { "\($0)".contains("token id 40, outside the policy's vocabulary (32)") }
        #expect { try make(responseLength: 0) } throws: { "\($0)".contains("must be positive") }
        #expect { try make(responseLength: 100) } throws: { "\($0)".contains("exceeds") }
        // A reward "model" without a score head cannot score either.
        let b = try PaddedBatch(sequences: [[1, 2, 3]], scoredFrom: [1], pad: 0)
        #expect { try RewardModeling.scores(policy, b) } throws: { "\($0)".contains("score head") }
        #expect { try policy.positionScores(b) } throws: { "\($0)".contains("score head") }
    }
}
