import Foundation
import MoEModel
import Testing
@testable import MoEServing

@Suite struct EngineTests {
    /// Runs one request to its end: the tokens shown, the finish reason and the cached prompt tokens.
    static func run(_ stream: InferenceEngine.Stream) async -> (tokens: [Int], finish: FinishReason?, stopToken: Int?, cached: Int) {
        var tokens: [Int] = [], finish: FinishReason?, stopToken: Int?, cached = 0
        for await event in stream.events {
            switch event {
            case let .prefilled(_, c): cached = c
            case .promptLogprobs: break
            case let .token(t, _): tokens.append(t)
            case let .finished(r, s): finish = r; stopToken = s
            }
        }
        return (tokens, finish, stopToken, cached)
    }

    /// Sequences decoded together (joining at different steps, different lengths and samplers; prompts whole or
    /// in chunks of 7 tokens, beside other sequences' decoding) give exactly what each gives alone through
    /// `Transformer.generate` — also when the KV pool holds only one context (16 pages of 4 positions), so that
    /// sequences are preempted and recompute their tokens when they come back.
    @Test(arguments: [(512, nil), (7, nil), (7, 16)])
    func batchedEqualsOneAtATime(stepTokens: Int, kvPages: Int?) async throws {
        var rng = Xoshiro256StarStar(seed: 5)
        let requests: [GenerationRequest] = (0..<7).map { i in
            let prompt = (0..<(3 + i * 5)).map { _ in Int(rng.next() % 300) }
            var sampling = i % 2 == 0 ? SamplingParameters.greedy : SamplingParameters(temperature: 0.9, topK: 40, seed: UInt64(i))
            sampling.repetitionPenalty = i == 3 ? 1.3 : 1
            return GenerationRequest(prompt: prompt, maxTokens: 4 + 3 * i, sampling: sampling, stopTokens: [])
        }
        let stats = try await Self.expectEachAsAlone(requests, stepTokens: stepTokens, kvPages: kvPages)
        #expect(stats.steps < requests.reduce(0) { $0 + $1.maxTokens }, "decode steps were shared")
        #expect((stats.preemptions > 0) == (kvPages != nil), "\(stats.preemptions) preemptions")
    }

    /// Runs `requests` together through an engine of 3 slots (contexts of 64, pages of 4 positions) and expects each
    /// to give what `Transformer.generate` gives it alone; returns the engine's statistics.
    static func expectEachAsAlone(_ requests: [GenerationRequest], stepTokens: Int, kvPages: Int?,
                                  directory: String = TestModel.directory) async throws -> InferenceEngine.Snapshot {
        let model = try Transformer(directory: directory, threads: 1)
        let reference = try Transformer(directory: directory, threads: 1)
        let engine = try InferenceEngine(model: model, parallel: 3, stepTokens: stepTokens, contextSize: 64, pageSize: 4,
                                         kvPages: kvPages)
        // All queued before the engine runs: which sequences share a step (and whether the pool runs out) does not
        // depend on how fast the requests arrive.
        let streams = try requests.map { try engine.submit($0) }
        engine.start()
        defer { engine.shutdown() }
        var results: [[Int]] = []
        for s in streams { results.append(await Self.run(s).tokens) }
        for (r, got) in zip(requests, results) {
            let expected = try reference.generate(prompt: r.prompt, maxTokens: r.maxTokens, sampling: r.sampling, stopTokens: [])
            #expect(got == expected.tokens)
        }
        #expect(engine.pages.freePages <= engine.pages.pageCount)
        return engine.statistics
    }

    /// Speculative decoding in the batched engine: greedy sequences with prompt-lookup drafts (prompts that repeat,
    /// so drafts are made, kept and rejected) beside sequences without, give exactly what each gives alone — also
    /// with chunked prompts and in a pool small enough that sequences are preempted and recomputed.
    @Test(arguments: [(512, nil), (7, 16)])
    func draftsVerifiedInTheBatchChangeNothing(stepTokens: Int, kvPages: Int?) async throws {
        var rng = Xoshiro256StarStar(seed: 9)
        let requests: [GenerationRequest] = (0..<7).map { i in
            let part = (0..<(3 + i * 2)).map { _ in Int(rng.next() % 300) }
            let sampling = i == 5 ? SamplingParameters(temperature: 0.9, topK: 40, seed: 3) : .greedy
            return GenerationRequest(prompt: part + part + part.prefix(2), maxTokens: 6 + 3 * i, sampling: sampling, stopTokens: [],
                                     drafter: i % 3 == 2 || i == 5 ? nil : .promptLookup(ngram: 3, tokens: 4))
        }
        let stats = try await Self.expectEachAsAlone(requests, stepTokens: stepTokens, kvPages: kvPages)
        #expect(stats.draftTokens > 0 && stats.acceptedDraftTokens > 0, "\(stats.acceptedDraftTokens)/\(stats.draftTokens) drafts kept")
        #expect(stats.acceptedDraftTokens < stats.draftTokens, "some drafts were rejected")
    }

    /// Drafts on a hybrid model: a rejected draft takes the sequence's DeltaNet state back to before the pass and
    /// runs the kept tokens again, so each greedy sequence still gives what it gives alone (a sampled one without drafts
    /// runs beside them: drafts keep sampling's distribution, not its draws). The same for gpt-oss's rings.
    @Test(arguments: [(512, nil), (7, 16)], ["qwen3_next", "gpt_oss"])
    func hybridDraftsChangeNothing(_ settings: (stepTokens: Int, kvPages: Int?), model name: String) async throws {
        let (stepTokens, kvPages) = settings
        var rng = Xoshiro256StarStar(seed: 4)
        let requests: [GenerationRequest] = (0..<6).map { i in
            let part = (0..<(3 + i * 2)).map { _ in 4 + Int(rng.next() % 120) }
            let sampling = i == 4 ? SamplingParameters(temperature: 0.9, topK: 40, seed: 3) : .greedy
            return GenerationRequest(prompt: part + part + part.prefix(2), maxTokens: 8 + 3 * i, sampling: sampling, stopTokens: [],
                                     drafter: i == 2 || i == 4 ? nil : .promptLookup(ngram: 3, tokens: 4))
        }
        let stats = try await Self.expectEachAsAlone(requests, stepTokens: stepTokens, kvPages: kvPages, directory: Self.fixture(name))
        #expect(stats.draftTokens > stats.acceptedDraftTokens, "\(stats.acceptedDraftTokens)/\(stats.draftTokens): some drafts rejected")
    }

    /// The same with drafts from the multi-token-prediction module (a tiny DeepSeek-V3 that has one): one or two
    /// drafts a step, the module fed every position the batched passes keep, also across preemptions.
    @Test(arguments: [(512, nil), (7, 16)])
    func multiTokenPredictionDraftsChangeNothing(stepTokens: Int, kvPages: Int?) async throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/training/deepseek_v3_mtp").path
        var rng = Xoshiro256StarStar(seed: 4)
        let requests: [GenerationRequest] = (0..<5).map { i in
            let prompt = (0..<(3 + i * 3)).map { _ in Int(rng.next() % 64) }
            let sampling = i == 4 ? SamplingParameters(temperature: 0.9, topK: 40, seed: 3) : .greedy
            return GenerationRequest(prompt: prompt, maxTokens: 8 + 2 * i, sampling: sampling, stopTokens: [],
                                     drafter: i == 4 ? nil : .multiTokenPrediction(tokens: i % 2 + 1))
        }
        let stats = try await Self.expectEachAsAlone(requests, stepTokens: stepTokens, kvPages: kvPages, directory: directory)
        #expect(stats.draftTokens > 0, "\(stats.acceptedDraftTokens)/\(stats.draftTokens) drafts kept")
    }

    /// A prompt starts only when the pool holds it and a page more for every running sequence: ten prompts of one
    /// page that grow to two, in a pool of sixteen pages, run eight at a time without a preemption (started all
    /// at once, ten would need twenty pages, and the youngest would be preempted and recomputed).
    @Test func promptsStartOnlyWithRoomToGrow() async throws {
        let model = try TestModel.transformer()
        let engine = try InferenceEngine(model: model, parallel: 10, contextSize: 64, pageSize: 4, kvPages: 16)
        let requests = (0..<10).map { i in
            GenerationRequest(prompt: [7 + i, 20, 30], maxTokens: 5, sampling: .greedy, stopTokens: [])
        }
        let streams = try requests.map { try engine.submit($0) }
        engine.start()
        defer { engine.shutdown() }
        for s in streams { #expect(await Self.run(s).tokens.count == 5) }
        #expect(engine.statistics.preemptions == 0)
    }

    /// A prompt waiting for room holds the pages of the prefix it reuses; a running sequence that needs a page takes
    /// those back before it would preempt anyone. A 30-token prefix stays in an idle slot (4 of 8 pages of 8
    /// positions); a second request decodes 40 tokens; a third, reusing the prefix, arrives while the pool cannot
    /// hold it and the second's growth, so it waits — and its prefix pages go to the second (no preemption), and
    /// it recomputes the prefix when it starts.
    @Test func waitingPrefixesAreReclaimedBeforePreempting() async throws {
        let model = try TestModel.transformer()
        let reference = try TestModel.transformer()
        let engine = try InferenceEngine(model: model, parallel: 2, contextSize: 64, pageSize: 8, kvPages: 8)
        let gate = DispatchSemaphore(value: 0)
        let steps = StepCounter()
        engine.observeSteps { if steps.increment() == 2 { gate.wait() } }   // after the decoder's first step
        engine.start()
        defer { engine.shutdown() }
        let prefix = (0..<30).map { 20 + $0 % 200 }
        let first = GenerationRequest(prompt: prefix, maxTokens: 1, sampling: .greedy, stopTokens: [])
        _ = await Self.run(try engine.submit(first))
        let long = GenerationRequest(prompt: (0..<10).map { 7 + $0 }, maxTokens: 40, sampling: .greedy, stopTokens: [])
        let decoder = try engine.submit(long)
        var events = decoder.events.makeAsyncIterator()
        var decoded: [Int] = []
        while let event = await events.next() { if case let .token(t, _) = event { decoded.append(t); break } }
        let waiting = GenerationRequest(prompt: prefix + (0..<20).map { 100 + $0 }, maxTokens: 3, sampling: .greedy, stopTokens: [])
        let waiter = try engine.submit(waiting)
        gate.signal()
        while let event = await events.next() { if case let .token(t, _) = event { decoded.append(t) } }
        let result = await Self.run(waiter)
        #expect(engine.statistics.preemptions == 0)
        #expect(result.cached == 0, "its prefix pages were taken back, so it recomputed them")
        #expect(decoded == (try reference.generate(prompt: long.prompt, maxTokens: 40, sampling: .greedy, stopTokens: []).tokens))
        #expect(result.tokens == (try reference.generate(prompt: waiting.prompt, maxTokens: 3, sampling: .greedy, stopTokens: []).tokens))
    }

    /// Prompts sharing a prefix share its KV pages: a request whose 42-token prefix is in a running sequence's
    /// cache takes pages only for what follows it (one copied on write), and says so in `cachedTokens`.
    @Test func sharedPrefixesSharePages() async throws {
        let model = try TestModel.transformer()
        let engine = try InferenceEngine(model: model, parallel: 2, contextSize: 64, pageSize: 8)
        // Held after the first step (the first prompt) until the second request is queued, so it meets the
        // first sequence running.
        let gate = DispatchSemaphore(value: 0)
        let steps = StepCounter()
        engine.observeSteps { if steps.increment() == 1 { gate.wait() } }
        engine.start()
        defer { engine.shutdown() }
        let prefix = (0..<42).map { 10 + $0 % 250 }
        let first = try engine.submit(GenerationRequest(prompt: prefix + [1, 2], maxTokens: 3, sampling: .greedy, stopTokens: []))
        var events = first.events.makeAsyncIterator()
        while let event = await events.next() { if case .token = event { break } }
        let second = try engine.submit(GenerationRequest(prompt: prefix + [3, 4], maxTokens: 2, sampling: .greedy, stopTokens: []))
        gate.signal()
        let result = await Self.run(second)
        while await events.next() != nil {}
        #expect(result.tokens.count == 2 && result.cached == 42)
        // The first holds 46 positions (6 pages of 8), the second 45: pages 0–4 (positions 0..<40) are shared, the
        // sixth of each is its own (whichever wrote first into the shared one copied it): 7 pages in all.
        #expect(engine.pages.freePages == engine.pages.pageCount - 7)
    }

    static func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/models/\(name)").path
    }
    static let hybridDirectory = fixture("qwen3_next")

    /// A hybrid model (Gated DeltaNet state beside the KV cache of its attention layers) decoded in the batched
    /// engine: sequences of different lengths, joining at different steps, prompts whole or in chunks, and
    /// preempted ones that recompute, give exactly what each gives alone. gpt-oss's sliding-window rings (window 6,
    /// prompts up to 33 tokens) are such fixed state too.
    @Test(arguments: [(512, nil), (7, nil), (7, 16)], ["qwen3_next", "gpt_oss"])
    func hybridBatchedEqualsOneAtATime(_ settings: (stepTokens: Int, kvPages: Int?), model name: String) async throws {
        let (stepTokens, kvPages) = settings
        var rng = Xoshiro256StarStar(seed: 9)
        let requests: [GenerationRequest] = (0..<7).map { i in
            let prompt = (0..<(3 + i * 5)).map { _ in 4 + Int(rng.next() % 120) }
            let sampling = i % 2 == 0 ? SamplingParameters.greedy : SamplingParameters(temperature: 0.9, topK: 40, seed: UInt64(i))
            return GenerationRequest(prompt: prompt, maxTokens: 4 + 3 * i, sampling: sampling, stopTokens: [])
        }
        let stats = try await Self.expectEachAsAlone(requests, stepTokens: stepTokens, kvPages: kvPages, directory: Self.fixture(name))
        // (gpt-oss's sliding layers take no pages: with its two full layers, 16 pages may or may not run out.)
        if name == "qwen3_next" { #expect((stats.preemptions > 0) == (kvPages != nil), "\(stats.preemptions) preemptions") }
    }

    /// A hybrid model's state cannot be cut back to any position: prompts reuse the positions where a state was
    /// saved (prompt chunk boundaries, the position before a prompt's last token) or all a slot holds (a chat's
    /// next turn), say so in `cachedTokens`, and give what recomputing gives.
    @Test func hybridPrefixReuseRestoresSavedStates() async throws {
        let model = try Transformer(directory: Self.hybridDirectory, threads: 1)
        let reference = try Transformer(directory: Self.hybridDirectory, threads: 1)
        let engine = try InferenceEngine(model: model, parallel: 1, stepTokens: 8, contextSize: 96, pageSize: 4)
        engine.start()
        defer { engine.shutdown() }
        let prompt = (0..<21).map { 4 + ($0 * 37) % 120 }
        func run(_ p: [Int], _ n: Int = 4) async throws -> (tokens: [Int], cached: Int) {
            let r = await Self.run(try engine.submit(GenerationRequest(prompt: p, maxTokens: n, sampling: .greedy, stopTokens: [])))
            let expected = try reference.generate(prompt: p, maxTokens: n, sampling: .greedy, stopTokens: [])
            #expect(r.tokens == expected.tokens)
            return (r.tokens, r.cached)
        }
        let first = try await run(prompt)
        #expect(first.cached == 0)
        // The same prompt: the state saved before its last token.
        #expect(try await run(prompt).cached == 20)
        // A chat's next turn (the prompt, the reply, more): everything the slot ran (the reply's last token never ran).
        let next = prompt + first.tokens + [5, 6, 7]
        #expect(try await run(next).cached == prompt.count + first.tokens.count - 1)
        // A prompt sharing 19 tokens: back to the chunk boundary at 16.
        #expect(try await run(Array(prompt[..<19]) + [9, 9, 9]).cached == 16)
    }

    /// A long prompt arriving while another sequence decodes runs in chunks of the step budget, and the
    /// decoding sequence gets a token in every one of those steps instead of waiting for the whole prompt.
    @Test func longPromptDoesNotStallDecoding() async throws {
        let model = try TestModel.transformer()
        let engine = try InferenceEngine(model: model, parallel: 2, stepTokens: 8)
        let log = StepLog()
        // Held after the first step until the long prompt is queued, so the short one cannot finish first.
        let gate = DispatchSemaphore(value: 0)
        engine.observeSteps { [engine] in if log.record(engine.statistics) == 1 { gate.wait() } }
        engine.start()
        defer { engine.shutdown() }
        let decoding = try engine.submit(GenerationRequest(prompt: [1, 2, 3], maxTokens: 60, sampling: .greedy, stopTokens: []))
        var shortTokens = 0
        var events = decoding.events.makeAsyncIterator()
        while let event = await events.next() { if case .token = event { shortTokens += 1; break } }
        let long = try engine.submit(GenerationRequest(prompt: (0..<64).map { 5 + $0 % 200 }, maxTokens: 1, sampling: .greedy,
                                                       stopTokens: []))
        gate.signal()
        let result = await Self.run(long)
        #expect(result.tokens.count == 1)
        while let event = await events.next() { if case .token = event { shortTokens += 1 } }
        #expect(shortTokens == 60)
        // The steps that ran part of the long prompt: never more than the budget (7 prompt tokens beside the
        // decoding one), and each also decoded a token.
        let steps = zip(log.snapshots.dropFirst(), log.snapshots).map {
            (prefilled: $0.prefilledTokens - $1.prefilledTokens, generated: $0.generatedTokens - $1.generatedTokens)
        }
        let prefilling = steps.filter { $0.prefilled > 0 }
        #expect(prefilling.reduce(0) { $0 + $1.prefilled } == 64)
        #expect(prefilling.allSatisfy { $0.prefilled <= 7 }, "\(prefilling)")
        #expect(prefilling.count >= 10)
        #expect(prefilling.allSatisfy { $0.generated >= 1 }, "\(prefilling)")
    }

    /// The engine's counters after each step.
    final class StepLog: @unchecked Sendable {
        private let lock = NSLock()
        private var list: [InferenceEngine.Snapshot] = []
        /// Returns how many are recorded.
        func record(_ s: InferenceEngine.Snapshot) -> Int { lock.lock(); defer { lock.unlock() }; list.append(s); return list.count }
        var snapshots: [InferenceEngine.Snapshot] { lock.lock(); defer { lock.unlock() }; return list }
    }

    /// Steps seen by the engine thread (the observer), read by the test.
    final class StepCounter: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        func increment() -> Int { lock.lock(); defer { lock.unlock() }; count += 1; return count }
    }

    @Test func refusals() throws {
        let model = try TestModel.transformer()
        let engine = try InferenceEngine(model: model, parallel: 1, queueLimit: 1)
        #expect(throws: EngineError.self) { try engine.submit(GenerationRequest(prompt: [], maxTokens: 1, sampling: .greedy, stopTokens: [])) }
        #expect(throws: EngineError.self) {
            try engine.submit(GenerationRequest(prompt: Array(repeating: 1, count: model.contextLength), maxTokens: 1, sampling: .greedy, stopTokens: []))
        }
        #expect(throws: EngineError.self) { try engine.submit(GenerationRequest(prompt: [100_000], maxTokens: 1, sampling: .greedy, stopTokens: [])) }
        // Not started: the first waits, the second finds the queue full.
        _ = try engine.submit(GenerationRequest(prompt: [1], maxTokens: 1, sampling: .greedy, stopTokens: []))
        #expect(throws: EngineError.queueFull(limit: 1)) {
            try engine.submit(GenerationRequest(prompt: [1], maxTokens: 1, sampling: .greedy, stopTokens: []))
        }
    }

    @Test func stopStringsHoldBackPartialMatches() {
        var s = StopStrings(["\n\n", "END"])
        #expect(s.add("Hello\n") == ("Hello", false))
        #expect(s.add("world E") == ("\nworld ", false))
        #expect(s.add("N") == ("", false))
        #expect(s.add("Dgame") == ("", true))
        var t = StopStrings(["xyz"])
        #expect(t.add("abx") == ("ab", false))
        #expect(t.flush() == "x")
        var none = StopStrings([])
        #expect(none.add("anything") == ("anything", false))
    }
}
