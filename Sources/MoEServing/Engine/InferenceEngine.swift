import Foundation
import MoEModel

/// Continuous batching with chunked prefill: one thread owns the model and, step after step, runs one pass
/// over every active sequence — the next token of each decoding sequence and a chunk of each new prompt, their
/// expert work grouped across sequences by the MoE block — admitting new requests between steps and dropping
/// those whose consumer went away.
///
/// ```swift
/// let engine = InferenceEngine(model: model, parallel: 8)
/// engine.start()
/// let stream = try engine.submit(GenerationRequest(prompt: ids, maxTokens: 64, sampling: .greedy, stopTokens: model.eosTokenIds))
/// for await event in stream.events { … }     // .prefilled, .token…, .finished
/// ```
///
/// Per step: admit waiting requests into free slots (each prompt shares the KV pages of its longest common
/// prefix with any slot's tokens); then one `Transformer.forward(_ chunks:)` over the last token of every
/// decoding sequence plus as many prompt tokens of the prefilling ones as `stepTokens` leaves room for (oldest
/// first, as vLLM's and llama-server's schedulers), and one sample per sequence that has logits. A long prompt
/// so never stalls the streams in flight for more than one step's budget, and prompts arriving together share
/// their passes over the weights.
///
/// KV memory is one `KVPagePool` planned at start: sequences take pages as they grow and share the pages of a
/// common prefix. A prompt starts only when the pool holds all of it and a page more for each running sequence.
/// When a sequence needs a page and none is free, idle slots' cached prefixes go first (least recently used),
/// then the prefixes reused by prompts not yet started, then the youngest running sequence is preempted as vLLM
/// does: its pages are freed and it waits at the head of the queue, to recompute its prompt and generated tokens
/// when pages free up; its stream just pauses.
public final class InferenceEngine: @unchecked Sendable {
    public let model: Transformer
    /// Sequences decoded together at most.
    public let parallel: Int
    /// Requests allowed to wait for a slot; more are refused (`EngineError.queueFull`).
    public let queueLimit: Int
    /// Positions each sequence's KV cache holds (prompt + generated): the served context.
    public let contextSize: Int
    /// Tokens one step runs at most (decoding sequences' tokens plus prompt chunks); a step always takes every
    /// decoding sequence's token and at least one prompt token when a prompt waits.
    public let stepTokens: Int
    /// The KV pages every sequence's cache draws from.
    public let pages: KVPagePool

    /// A consumer's view of one submitted sequence. Stopping iteration (or `cancel()`) frees its slot
    /// before the next step.
    public struct Stream: Sendable {
        public let id: Int
        public let events: AsyncStream<GenerationEvent>
        let engine: InferenceEngine
        public func cancel() { engine.cancel(id) }
    }

    /// Counters for /metrics.
    public struct Snapshot: Sendable {
        public var waiting = 0
        public var active = 0
        public var steps = 0
        public var generatedTokens = 0
        public var prefilledTokens = 0
        public var cachedTokens = 0
        /// Sequences preempted for want of KV pages (recomputed later).
        public var preemptions = 0
        /// Speculative decoding: draft tokens verified, and how many were kept.
        public var draftTokens = 0
        public var acceptedDraftTokens = 0
        public var kvPages = 0
        public var kvPagesFree = 0
    }

    struct Pending {
        let id: Int
        let request: GenerationRequest
        let continuation: AsyncStream<GenerationEvent>.Continuation
    }

    /// A running sequence (engine thread only).
    final class Sequence {
        let id: Int
        let request: GenerationRequest
        let continuation: AsyncStream<GenerationEvent>.Continuation
        var slot = -1
        var sampler: Sampler
        var history: [Int]
        var generated: [Int] = []
        /// Tokens whose keys and values must be in the cache before the sequence decodes: the prompt, or after
        /// a preemption the prompt and every token generated so far.
        var context: [Int]
        /// Prompt tokens reused from a cached prefix at the first admission.
        var cached = 0
        /// Tokens of `context` whose keys and values are in the cache; the sequence decodes once all are.
        var prefilled = 0
        /// Whether `.prefilled` was sent (once, at the end of the first prefill).
        var announced = false
        /// Whether a chunk of `context` ran since the sequence was last admitted.
        var started = false
        /// The last sampled token, fed to the next decode step.
        var next = 0
        /// The draft tokens fed after `next` in the current step.
        var draft: [Int] = []
        /// Hybrid models: the linear-attention state before the current step's drafts ran (a rejected draft
        /// restores it and runs the kept tokens again), and the position it belongs to.
        var stateBeforeDrafts: RecurrentState?
        var positionBeforeDrafts = 0
        /// Multi-token-prediction drafting (`speculative: "mtp"`): the module's cache and the recorded positions.
        var mtp: MTPDrafts?
        /// `promptLogprobs`: prompt tokens 1… scored so far (each from the row after the token before it).
        var promptScores: [TokenLogprob] = []
        var decoding: Bool { prefilled == context.count }
        init(_ p: Pending) {
            id = p.id; request = p.request; continuation = p.continuation
            sampler = Sampler(p.request.sampling)
            history = p.request.prompt
            context = p.request.prompt
        }
    }

    let lock = NSCondition()
    // Guarded by `lock`:
    private var waiting: [Pending] = []
    private var cancelled: Set<Int> = []
    private var running = false
    private var stopping = false
    private var nextID = 0
    var snapshot = Snapshot()
    private var afterStep: (@Sendable () -> Void)?
    // Engine thread only:
    var slots: [Slot]
    /// Running sequences, oldest first (by id).
    private var active: [Sequence] = []
    /// Preempted sequences, oldest first, admitted again before any new request.
    private var requeued: [Sequence] = []
    private var clock = 0
    var rawLogits: [Float] = []
    /// Kept tokens to run again after the step (`runAgainAfterRejectedDrafts`).
    var reruns: [SequenceChunk] = []
    private var thread: Thread?
    /// Counts the experts each row of a pass kept (MoE models), for the requests' `usage`.
    private var expertCounter: RowExpertCounter?

    /// `contextSize`: positions per sequence (default and at most the model's context). `kvPages` pages of
    /// `pageSize` positions are allocated here (default: enough for every slot's whole context); at least one
    /// context's worth is needed, so that the oldest sequence can always finish. Plan the memory first
    /// (`ModelServer` sizes the pool from `--memory-limit`). Throws `badInput` for a pool too small or whose
    /// size overflows.
    public init(model: Transformer, parallel: Int, queueLimit: Int? = nil, stepTokens: Int = 256, contextSize: Int? = nil,
                pageSize: Int = 64, kvPages: Int? = nil) throws {
        self.model = model
        self.parallel = max(1, parallel)
        self.queueLimit = queueLimit ?? max(64, 8 * parallel)
        self.stepTokens = max(1, stepTokens)
        let contextSize = max(2, min(contextSize ?? model.contextLength, model.contextLength))
        self.contextSize = contextSize
        let perContext = Self.pages(positions: contextSize, pageSize: pageSize)
        let count = kvPages ?? perContext * self.parallel
        guard count >= perContext else {
            throw ModelError.badInput("\(count) KV pages of \(pageSize) positions cannot hold one sequence of \(contextSize) positions (\(perContext) pages)")
        }
        pages = try model.makePagePool(pages: count, pageSize: pageSize)
        slots = try (0..<self.parallel).map { [pages] _ in Slot(cache: try KVCache(pool: pages, capacity: contextSize)) }
        snapshot.kvPages = count
        snapshot.kvPagesFree = count
        let moeLayers = model.moeBlocks.count
        if moeLayers > 0 {
            expertCounter = RowExpertCounter(moeLayers: moeLayers)
            model.routingObserver = expertCounter
        }
    }

    /// Pages of `pageSize` positions that hold `positions` positions.
    public static func pages(positions: Int, pageSize: Int) -> Int {
        let size = max(pageSize, 1)
        return positions / size + (positions % size == 0 ? 0 : 1)
    }

    /// Starts the engine thread (idempotent).
    public func start() {
        lock.lock(); defer { lock.unlock() }
        guard !running, !stopping else { return }
        running = true
        let thread = Thread { [self] in loop() }
        thread.name = "moe-engine"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// Stops after the current step; every unfinished stream ends (without a `finished` event).
    public func shutdown() {
        lock.lock()
        stopping = true
        lock.signal()
        lock.unlock()
    }

    public var statistics: Snapshot {
        lock.lock(); defer { lock.unlock() }
        return snapshot
    }

    /// Queues a request. Throws `queueFull` when `queueLimit` requests already wait, `invalid` for a
    /// prompt that cannot run.
    public func submit(_ request: GenerationRequest) throws(EngineError) -> Stream {
        guard !request.prompt.isEmpty else { throw .invalid("the prompt is empty") }
        guard request.prompt.count < contextSize else {
            throw .invalid("the prompt has \(request.prompt.count) tokens; the context holds \(contextSize) and one must be left to generate")
        }
        let vocab = model.config.vocabSize
        if let bad = request.prompt.first(where: { $0 < 0 || $0 >= vocab }) {
            throw .invalid("token id \(bad) is outside the vocabulary (0..<\(vocab))")
        }
        if let bad = request.logitBias.first(where: { $0.key < 0 || $0.key >= vocab || !$0.value.isFinite }) {
            throw .invalid("logit_bias: token id \(bad.key) is outside the vocabulary (0..<\(vocab)) or its bias is not finite")
        }
        lock.lock(); defer { lock.unlock() }
        guard !stopping else { throw .shutDown }
        guard waiting.count < queueLimit else { throw .queueFull(limit: queueLimit) }
        let id = nextID
        nextID += 1
        let (events, continuation) = AsyncStream.makeStream(of: GenerationEvent.self)
        continuation.onTermination = { [weak self] reason in
            if case .cancelled = reason { self?.cancel(id) }
        }
        waiting.append(Pending(id: id, request: request, continuation: continuation))
        snapshot.waiting = waiting.count
        lock.signal()
        return Stream(id: id, events: events, engine: self)
    }

    /// Runs `body` on the engine thread after every decode step (tests use it to hold the engine at a known
    /// point; nil removes it).
    func observeSteps(_ body: (@Sendable () -> Void)?) {
        lock.lock(); afterStep = body; lock.unlock()
    }

    func cancel(_ id: Int) {
        lock.lock()
        cancelled.insert(id)
        lock.signal()
        lock.unlock()
    }

    // MARK: - The engine thread

    private func loop() {
        while true {
            lock.lock()
            while !stopping && waiting.isEmpty && active.isEmpty && requeued.isEmpty && cancelled.isEmpty { lock.wait() }
            if stopping {
                let left = waiting
                waiting.removeAll()
                lock.unlock()
                for p in left { p.continuation.finish() }
                for s in active + requeued { s.continuation.finish() }
                active.removeAll()
                requeued.removeAll()
                return
            }
            let dropped = cancelled
            cancelled.removeAll()
            waiting.removeAll { p in
                guard dropped.contains(p.id) else { return false }
                p.continuation.finish()
                return true
            }
            var admitted: [Pending] = []
            // Preempted sequences come back first.
            let room = parallel - active.count - requeued.count
                + (active + requeued).filter { dropped.contains($0.id) }.count
            while admitted.count < room, !waiting.isEmpty { admitted.append(waiting.removeFirst()) }
            snapshot.waiting = waiting.count
            lock.unlock()

            for s in active where dropped.contains(s.id) {
                s.continuation.finish()
                release(s)
            }
            active.removeAll { dropped.contains($0.id) }
            for s in requeued where dropped.contains(s.id) { s.continuation.finish() }
            requeued.removeAll { dropped.contains($0.id) }
            let returning = requeued
            requeued.removeAll()
            for s in returning { admit(s) }
            for p in admitted { admit(Sequence(p)) }
            if !active.isEmpty { step() }

            lock.lock()
            snapshot.active = active.count
            snapshot.kvPagesFree = pages.freePages
            let observer = afterStep
            lock.unlock()
            observer?()
        }
    }

    /// Finds a slot and reuses the longest cached prefix (sharing its pages); the rest of the sequence's
    /// context runs in the next steps.
    private func admit(_ s: Sequence) {
        let prompt = s.context
        // Never reuse the whole prompt: its last token must run to give the logits of the first new token. The
        // multi-token-prediction module needs every position's last-layer state: nothing is reused for it.
        var drafts = 0
        if case let .multiTokenPrediction(n)? = s.request.drafter { drafts = n }
        // Scoring the prompt needs the logits after each of its tokens: nothing is reused for it either.
        let limit = drafts > 0 || (s.request.promptLogprobs && !s.announced) ? 0 : prompt.count - 1
        // Keys and values computed with another expert budget are not this sequence's: no reuse across budgets.
        let budget = s.request.expertBudget ?? model.expertBudget
        func reusable(_ i: Int) -> Int {
            slots[i].budget == budget ? slots[i].reusable(commonPrefix(slots[i].tokens, prompt, limit: limit)) : 0
        }
        var source = -1, sourceLength = 0
        for i in slots.indices {
            let n = reusable(i)
            if n > sourceLength { source = i; sourceLength = n }
        }
        let free = slots.indices.filter { !slots[$0].busy }
        guard let target = (source >= 0 && !slots[source].busy) ? source
                : free.max(by: { (reusable($0), -slots[$0].lastUsed) < (reusable($1), -slots[$1].lastUsed) })
        else {
            // Cannot happen: admission is bounded by `parallel` free slots.
            s.continuation.finish()
            return
        }
        var reused = reusable(target)
        if source >= 0, source != target, sourceLength > reused,
           (try? slots[target].cache.copyPrefix(from: slots[source].cache, count: sourceLength,
                                                state: slots[source].state(at: sourceLength))) != nil {
            reused = sourceLength
            slots[target].states = slots[source].states.filter { $0.position <= reused }.map { ($0.position, $0.state.snapshot()) }
        } else if reused < slots[target].cache.count, let state = slots[target].state(at: reused) {
            slots[target].cache.restore(to: reused, state: state)
        } else {
            slots[target].cache.truncate(to: reused)
        }
        slots[target].keepStates(upTo: reused)
        clock += 1
        slots[target].busy = true
        slots[target].lastUsed = clock
        slots[target].tokens = Array(prompt[..<reused])
        slots[target].budget = budget
        s.slot = target
        s.prefilled = reused
        if drafts > 0 && s.mtp == nil {
            let capacity = min(slots[target].cache.capacity, s.request.prompt.count + s.request.maxTokens + 1)
            s.mtp = try? MTPDrafts(model: model, capacity: capacity, tokens: drafts)
        }
        if !s.announced {
            s.cached = reused
            lock.lock()
            snapshot.cachedTokens += reused
            lock.unlock()
        }
        // Oldest first: a sequence coming back from preemption takes its place by age.
        active.insert(s, at: active.firstIndex { $0.id > s.id } ?? active.endIndex)
    }

    /// Makes room in the pool without preempting: frees the pages of the least recently used idle slot, else
    /// the reused prefix of the youngest prompt not yet started (it recomputes it when it starts). Returns false
    /// when neither holds pages.
    private func reclaim() -> Bool {
        if let victim = slots.indices.filter({ !slots[$0].busy && slots[$0].cache.pagesHeld > 0 })
            .min(by: { slots[$0].lastUsed < slots[$1].lastUsed }) {
            slots[victim].cache.reset()
            slots[victim].tokens = []
            slots[victim].states = []
            return true
        }
        guard let s = active.last(where: { !$0.started && slots[$0.slot].cache.pagesHeld > 0 }) else { return false }
        slots[s.slot].cache.reset()
        slots[s.slot].tokens = []
        slots[s.slot].states = []
        s.prefilled = 0
        if !s.announced {
            lock.lock()
            snapshot.cachedTokens -= s.cached
            lock.unlock()
            s.cached = 0
        }
        return true
    }

    /// Pages `reclaim` can free (at most: a page shared with a running sequence stays).
    private func reclaimablePages() -> Int {
        slots.reduce(0) { $0 + ($1.busy ? 0 : $1.cache.pagesHeld) }
            + active.reduce(0) { $0 + ($1.started ? 0 : slots[$1.slot].cache.pagesHeld) }
    }

    /// Frees the pages of a running sequence and queues it to recompute its context (prompt and generated
    /// tokens) when it is admitted again.
    private func preempt(_ s: Sequence) {
        active.removeAll { $0 === s }
        slots[s.slot].cache.reset()
        slots[s.slot].tokens = []
        slots[s.slot].states = []
        release(s)
        s.mtp?.reset()
        s.context = s.history
        s.prefilled = 0
        s.started = false
        requeued.insert(s, at: requeued.firstIndex { $0.id > s.id } ?? requeued.endIndex)
        lock.lock()
        snapshot.preemptions += 1
        lock.unlock()
    }

    /// Pages held by idle slots (at most what evicting them frees: a page shared with a running sequence stays).
    private func idlePages() -> Int {
        slots.reduce(0) { $0 + ($1.busy ? 0 : $1.cache.pagesHeld) }
    }

    /// Takes the pages `cache` needs to hold `n` positions, evicting idle slots' prefixes when the pool is short.
    private func reserve(_ cache: KVCache, upTo n: Int) -> Bool {
        while !cache.reserve(upTo: n) {
            guard reclaim() else { return false }
        }
        return true
    }

    /// One pass over every decoding sequence's next token and the prompt chunks that fit the step's budget, then
    /// one sample per sequence that decoded or finished its prompt.
    private func step() {
        var chunks: [SequenceChunk] = [], members: [Sequence] = []
        // Decoding sequences, oldest first, each take the page for their next token, preempting the youngest
        // running sequence when none is left.
        var index = 0
        // Decoding sequences not yet given their page (drafts leave one free page for each).
        var decodingLeft = active.reduce(0) { $0 + ($1.decoding ? 1 : 0) }
        while index < active.count {
            let s = active[index]
            guard s.decoding else { index += 1; continue }
            let cache = slots[s.slot].cache
            decodingLeft -= 1
            // Drafts ride along when their pages are free beyond a page for every later decoding sequence (so they
            // never cause a preemption); at most what the request may still generate after `next`, and what the
            // cache holds.
            s.draft = []
            if let drafter = s.request.drafter {
                let room = max(0, min(s.request.maxTokens - s.generated.count - 1, cache.capacity - cache.count - 1))
                let draft = s.mtp.map { mtpDrafts(s, $0, limit: room) } ?? drafter.draft(after: s.history, limit: room)
                if !draft.isEmpty && cache.pagesMissing(upTo: cache.count + 1 + draft.count) + decodingLeft <= pages.freePages
                    && reserve(cache, upTo: cache.count + 1 + draft.count) {
                    s.draft = draft
                    if let state = cache.recurrent {
                        if let saved = s.stateBeforeDrafts { saved.copy(from: state) } else { s.stateBeforeDrafts = state.snapshot() }
                        s.positionBeforeDrafts = cache.count
                    }
                }
            }
            if reserve(cache, upTo: cache.count + 1) {
                chunks.append(SequenceChunk(tokens: [s.next] + s.draft, cache: cache, logitsForAll: !s.draft.isEmpty,
                                            expertBudget: s.request.expertBudget))
                members.append(s)
                index += 1
            } else {
                // The youngest is at or after `index`: every sequence before it already has its page.
                preempt(active[active.count - 1])
            }
        }
        var budget = max(stepTokens - chunks.reduce(0) { $0 + $1.tokens.count }, 1)
        var started = active.reduce(0) { $0 + ($1.started ? 1 : 0) }
        for s in active where !s.decoding && budget > 0 {
            let context = s.context, cache = slots[s.slot].cache
            // A prompt starts only when the pool holds all of it and, besides, a page more for every sequence
            // already running: prompts started without that room would take the pages that running sequences
            // need next, and preempt them (which frees pages for more prompts to start: a thrash).
            if !s.started {
                // (Its own reused prefix is among the reclaimable pages, and already counted as not missing.)
                let room = pages.freePages + reclaimablePages() - cache.pagesHeld
                guard cache.pagesMissing(upTo: context.count + 1) + started <= room else { continue }
                started += 1
                s.started = true
            }
            var n = min(budget, context.count - s.prefilled)
            if cache.recurrent != nil { n = min(n, Self.nextStateBoundary(after: s.prefilled, context: context.count, step: stepTokens) - s.prefilled) }
            if !reserve(cache, upTo: cache.count + n) {
                // Run what the pages it could take hold, once the position after the cache's is writable.
                n = cache.pagesMissing(upTo: cache.count + 1) == 0
                    ? min(n, cache.pagesHeld * pages.pageSize - cache.count) : 0
                guard n > 0 else { continue }
            }
            chunks.append(SequenceChunk(tokens: Array(context[s.prefilled..<(s.prefilled + n)]), cache: cache,
                                        wantsLogits: s.prefilled + n == context.count,
                                        logitsForAll: s.request.promptLogprobs && !s.announced, expertBudget: s.request.expertBudget))
            members.append(s)
            budget -= n
        }
        if chunks.isEmpty {
            // Every sequence waits for pages that others hold: the youngest gives its pages up.
            if active.count > 1 { preempt(active[active.count - 1]) }
            else if let s = active.first { s.continuation.finish(); release(s); active.removeAll() }
            return
        }
        let logits: UnsafeMutableBufferPointer<Float>
        expertCounter?.begin(rows: chunks.reduce(0) { $0 + $1.tokens.count })
        do {
            logits = try model.forward(chunks)
        } catch {
            // Room and token ids are checked before a token is fed; end everything rather than spin. The caches
            // did not move, but forget their tokens rather than trust them.
            for s in active {
                slots[s.slot].tokens = []
                slots[s.slot].states = []
                if s.decoding { finish(s, .length, stopToken: nil) } else { s.continuation.finish(); release(s) }
            }
            active.removeAll()
            return
        }
        let vocab = model.config.vocabSize
        var ended: Set<Int> = []
        var row = 0, prefilledTokens = 0, hiddenRow = 0
        for (s, chunk) in zip(members, chunks) {
            // Every position the pass ran, for the module (rejected drafts are dropped again in `verify`).
            s.mtp?.record(rows: hiddenRow..<(hiddenRow + chunk.tokens.count))
            if let expertCounter, let tally = s.request.expertTally {
                tally.add(kept: expertCounter.perRow[hiddenRow..<(hiddenRow + chunk.tokens.count)].reduce(0, +),
                          tokenLayers: chunk.tokens.count * expertCounter.moeLayers)
            }
            hiddenRow += chunk.tokens.count
            slots[s.slot].tokens += chunk.tokens
            if !s.decoding {
                let start = s.prefilled
                s.prefilled += chunk.tokens.count
                if chunk.logitsForAll {
                    // A row per token: all but the last score the prompt; the last samples when the prompt is done.
                    scorePrompt(s, from: start, rows: logits.baseAddress! + row * vocab, count: chunk.tokens.count)
                    row += chunk.tokens.count - (s.decoding ? 1 : 0)
                }
                saveState(s)
                prefilledTokens += chunk.tokens.count
                guard s.decoding else { continue }
                if !s.announced {
                    s.announced = true
                    if s.request.promptLogprobs { s.continuation.yield(.promptLogprobs(s.promptScores)) }
                    s.continuation.yield(.prefilled(promptTokens: s.request.prompt.count, cachedTokens: s.cached))
                }
            }
            if s.request.maxTokens <= 0 {
                finish(s, .length, stopToken: nil)
                ended.insert(s.id)
            } else if !s.draft.isEmpty {
                if !verify(s, logits.baseAddress! + row * vocab) { ended.insert(s.id) }
                row += s.draft.count
            } else if !sample(s, logits.baseAddress! + row * vocab) {
                ended.insert(s.id)
            }
            row += 1
        }
        runAgainAfterRejectedDrafts()
        if !ended.isEmpty { active.removeAll { ended.contains($0.id) } }
        lock.lock()
        snapshot.steps += 1
        snapshot.prefilledTokens += prefilledTokens
        lock.unlock()
    }

    /// Hybrid models: the sequences whose drafts were partly rejected in this step went back to their state before
    /// the pass (`verify`); their kept tokens run again here, in one pass, so state and cache end where the tokens
    /// do. (A pass that fails — it cannot, the pages are held — sends its sequences back to recompute.)
    private func runAgainAfterRejectedDrafts() {
        guard !reruns.isEmpty else { return }
        defer { reruns.removeAll() }
        if (try? model.forward(reruns)) == nil {
            for chunk in reruns {
                guard let slot = slots.firstIndex(where: { $0.cache === chunk.cache }) else { continue }
                if let s = active.first(where: { $0.slot == slot && slots[slot].busy }) { preempt(s); continue }
                slots[slot].cache.reset()
                slots[slot].tokens = []
                slots[slot].states = []
            }
            return
        }
        // The pages past the kept tokens, held through the pass, go back.
        for chunk in reruns { chunk.cache.truncate(to: chunk.cache.count) }
    }

    /// The module's drafts after the last token of `s`: it is first fed the positions recorded since its last
    /// drafts, each with the token that followed it. A module that cannot run stops drafting for the sequence.
    private func mtpDrafts(_ s: Sequence, _ mtp: MTPDrafts, limit: Int) -> [Int] {
        let first = mtp.fed + 1, last = mtp.fed + mtp.recorded
        guard last < s.history.count, let drafts = try? mtp.commit(next: Array(s.history[first..<(last + 1)]), limit: limit) else {
            s.mtp = nil
            return []
        }
        return drafts
    }

    func finish(_ s: Sequence, _ reason: FinishReason, stopToken: Int?) {
        s.continuation.yield(.finished(reason, stopToken: stopToken))
        s.continuation.finish()
        release(s)
    }

    /// Saves the recurrent state of a prefilling sequence whose chunk ended at a boundary (see
    /// `nextStateBoundary`), keeping the newest `savedStates`.
    private func saveState(_ s: Sequence) {
        let slot = s.slot
        guard let state = slots[slot].cache.recurrent, s.prefilled < s.context.count,
              s.prefilled % stepTokens == 0 || s.prefilled == s.context.count - 1 else { return }
        slots[slot].keepStates(upTo: s.prefilled - 1)
        // The oldest saved state makes room, its buffer reused (a state is megabytes on large models).
        let saved: RecurrentState
        if slots[slot].states.count >= Self.savedStates {
            saved = slots[slot].states.removeFirst().state
            saved.copy(from: state)
        } else {
            saved = state.snapshot()
        }
        slots[slot].states.append((s.prefilled, saved))
    }

    private func release(_ s: Sequence) {
        slots[s.slot].busy = false
    }
}

/// Length of the common prefix of `a` and `b`, at most `limit`.
func commonPrefix(_ a: [Int], _ b: [Int], limit: Int) -> Int {
    let n = min(a.count, b.count, limit)
    var i = 0
    while i < n && a[i] == b[i] { i += 1 }
    return i
}
