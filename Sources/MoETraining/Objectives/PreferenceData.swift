import Foundation
import MoETokenizer

/// A preference pair as token ids: the prompt, and the chosen and rejected completions that follow it.
public struct PreferencePair: Sendable, Equatable {
    public var prompt: [Int], chosen: [Int], rejected: [Int]
}

/// TRL's preference shape, one JSON object per line: `{"prompt", "chosen", "rejected"}`, each either text or a
/// list of chat messages (conversational). Conversational pairs are rendered with the chat template — the
/// prompt with the generation prompt, each completion as the rest of the rendered conversation — and text
/// completions get the EOS token appended, as TRL does.
public enum PreferenceData {
    public static func pairs(path: String, tokenizer: Tokenizer) throws -> [PreferencePair] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw DataError.fileNotFound(path)
        }
        var template: ChatTemplate?
        var out: [PreferencePair] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.allSatisfy(\.isWhitespace) {
            func bad(_ why: String) -> DataError { .malformedLine(path: path, line: i + 1, reason: why) }
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { throw bad("not a JSON object") }
            func messages(_ key: String) throws -> [ChatMessage]? {
                guard let list = o[key] as? [[String: Any]] else { return nil }
                return try list.map { m in
                    guard let role = m["role"] as? String, let content = m["content"] as? String else { throw bad("\"\(key)\" messages need \"role\" and \"content\"") }
                    return ChatMessage(role: role, content: content)
                }
            }
            if let prompt = try messages("prompt") {
                guard let chosen = try messages("chosen"), let rejected = try messages("rejected") else {
                    throw bad("a conversational prompt needs \"chosen\" and \"rejected\" message lists")
                }
                if template == nil { template = try tokenizer.chatTemplateOrChatML() }
                do { out.append(try pair(prompt: prompt, chosen: chosen, rejected: rejected, tokenizer: tokenizer, template: template!)) }
                catch { throw bad("\(error)") }
            } else if let prompt = o["prompt"] as? String, let chosen = o["chosen"] as? String, let rejected = o["rejected"] as? String {
                let eos = tokenizer.eosTokenIds.first.map { [$0] } ?? []
                out.append(PreferencePair(prompt: tokenizer.encode(prompt, addSpecialTokens: false),
                                          chosen: tokenizer.encode(chosen, addSpecialTokens: false) + eos,
                                          rejected: tokenizer.encode(rejected, addSpecialTokens: false) + eos))
            } else {
                throw bad("expected \"prompt\", \"chosen\" and \"rejected\", each text or a list of messages")
            }
            guard !out.last!.chosen.isEmpty, !out.last!.rejected.isEmpty, !out.last!.prompt.isEmpty else { throw bad("an empty prompt or completion") }
        }
        if out.isEmpty { throw DataError.emptyCorpus(path) }
        return out
    }

    /// A conversational pair: the prompt rendered with the generation prompt, each completion as the rest of
    /// the rendered conversation.
    public static func pair(prompt: [ChatMessage], chosen: [ChatMessage], rejected: [ChatMessage], tokenizer: Tokenizer,
                            template: ChatTemplate) throws -> PreferencePair {
        var extra: [String: TemplateValue] = [:]
        if let bos = tokenizer.bosToken { extra["bos_token"] = .string(bos) }
        if let eos = tokenizer.eosToken { extra["eos_token"] = .string(eos) }
        let p = try template.render(messages: prompt, addGenerationPrompt: true, extra: extra)
        func completion(_ c: [ChatMessage]) throws -> [Int] {
            let full = try template.render(messages: prompt + c, addGenerationPrompt: false, extra: extra)
            guard full.hasPrefix(p) else { throw TrainingError.badArgument("the chat template does not render the prompt as a prefix of the conversation") }
            return tokenizer.encode(String(full.dropFirst(p.count)), addSpecialTokens: false)
        }
        return PreferencePair(prompt: tokenizer.encode(p, addSpecialTokens: false), chosen: try completion(chosen),
                              rejected: try completion(rejected))
    }
}

/// Preference pairs in batches for DPO or a reward model, in a seeded order reshuffled every epoch, with the
/// reference model's log-probs (DPO) as the batches' row values; validation = the held-out pairs in order.
public struct PairBatches: BatchSource {
    let pairs: [PreferencePair], held: [PreferencePair]
    /// Per pair: the reference log-probs of (chosen, rejected); empty for a reward model.
    let reference: [(chosen: Double, rejected: Double)], heldReference: [(chosen: Double, rejected: Double)]
    let pad: Int, seed: UInt64
    /// Whole sequences (reward model: the score reads the last token) rather than prompt + scored completion.
    let wholeSequences: Bool
    public let batchSize: Int, seqLen: Int
    var position: ExampleBatches.Position

    public init(train: [PreferencePair], validation: [PreferencePair], reference: [(chosen: Double, rejected: Double)] = [],
                validationReference: [(chosen: Double, rejected: Double)] = [], batchSize: Int, pad: Int, seed: UInt64,
                wholeSequences: Bool = false) throws {
        guard !train.isEmpty else { throw TrainingError.badArgument("no training pairs") }
        pairs = train; held = validation; self.reference = reference; heldReference = validationReference
        self.batchSize = batchSize; self.pad = pad; self.seed = seed; self.wholeSequences = wholeSequences
        seqLen = (train + validation).map { $0.prompt.count + max($0.chosen.count, $0.rejected.count) }.max()!
        position = .init(count: train.count)
    }

    func batch(_ indices: [Int], from list: [PreferencePair], reference refs: [(chosen: Double, rejected: Double)]) throws -> TrainingBatch {
        let picked = indices.map { list[$0] }
        let tokens = wholeSequences
            ? try RewardModeling.batch(chosen: picked.map { $0.prompt + $0.chosen }, rejected: picked.map { $0.prompt + $0.rejected }, pad: pad)
            : try DPO.batch(prompts: picked.map(\.prompt), chosen: picked.map(\.chosen), rejected: picked.map(\.rejected), pad: pad)
        let values = refs.isEmpty ? [] : indices.map { refs[$0].chosen } + indices.map { refs[$0].rejected }
        return TrainingBatch(tokens, rowValues: values)
    }

    public mutating func next() throws -> TrainingBatch {
        try batch(position.take(batchSize, seed: seed), from: pairs, reference: reference)
    }

    public func validation(maxBatches: Int) -> [TrainingBatch] {
        stride(from: 0, to: min(held.count, maxBatches * batchSize), by: batchSize).compactMap {
            try? batch(Array($0..<min($0 + batchSize, held.count)), from: held, reference: heldReference)
        }
    }

    public func savedState() throws -> Data { try JSONEncoder().encode(position) }

    public mutating func restore(_ state: Data) throws {
        let saved = try JSONDecoder().decode(ExampleBatches.Position.self, from: state)
        guard saved.count == pairs.count else { throw TrainingError.resume("the training pairs changed (\(pairs.count) now, \(saved.count) in the checkpoint)") }
        position = saved
    }
}
