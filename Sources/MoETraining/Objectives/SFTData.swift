import Foundation
import MoETokenizer

/// One conversation rendered with the model's chat template and tokenized, with the tokens supervised
/// fine-tuning trains on: every assistant message's content and the end-of-turn token after it (so the model
/// learns to stop), nothing of the system or user turns or the template's headers.
public struct SFTExample: Sendable, Equatable {
    public let ids: [Int]
    /// trained[i]: token i is a target of the loss.
    public let trained: [Bool]
}

public enum SFTData {
    /// Reads `{"messages": [{"role", "content"}, …]}` per line; errors name the file and line.
    public static func conversations(path: String) throws -> [[ChatMessage]] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw DataError.fileNotFound(path)
        }
        var out: [[ChatMessage]] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.allSatisfy(\.isWhitespace) { continue }
            struct Record: Decodable { let messages: [ChatMessage] }
            let record: Record
            do { record = try JSONDecoder().decode(Record.self, from: Data(line.utf8)) } catch {
                throw DataError.malformedLine(path: path, line: i + 1, reason: "expected {\"messages\": [{\"role\", \"content\"}, …]}")
            }
            guard record.messages.contains(where: { $0.role == "assistant" }) else {
                throw DataError.malformedLine(path: path, line: i + 1, reason: "the conversation has no assistant turn to train on")
            }
            out.append(record.messages)
        }
        if out.isEmpty { throw DataError.emptyCorpus(path) }
        return out
    }

    /// Renders the whole conversation once (templates are not always prefix-stable: Qwen3's drops earlier
    /// turns' reasoning), finds each assistant message's content in the rendered text in order, and encodes
    /// the pieces between those spans separately so each piece's tokens know whether they are trained.
    public static func example(_ messages: [ChatMessage], tokenizer: Tokenizer, template: ChatTemplate) throws -> SFTExample {
        var extra: [String: TemplateValue] = [:]
        if let bos = tokenizer.bosToken { extra["bos_token"] = .string(bos) }
        if let eos = tokenizer.eosToken { extra["eos_token"] = .string(eos) }
        let text = try template.render(messages: messages, addGenerationPrompt: false, extra: extra)
        let specials = tokenizer.addedTokens.filter(\.special).map(\.content).sorted { $0.count > $1.count }

        var spans: [Range<String.Index>] = []
        var cursor = text.startIndex
        for (n, m) in messages.enumerated() where m.role == "assistant" {
            let content = m.content ?? ""
            let wanted = [content, content.trimmingCharacters(in: .whitespacesAndNewlines)].filter { !$0.isEmpty }
            guard let found = wanted.lazy.compactMap({ text.range(of: $0, range: cursor..<text.endIndex) }).first else {
                throw TrainingError.badArgument("the chat template does not write assistant message \(n + 1) verbatim, so its tokens cannot be found")
            }
            var end = found.upperBound
            // The end-of-turn marker right after the content (<|im_end|>, <|eot_id|>, </s>, …).
            if let marker = specials.first(where: { text[end...].hasPrefix($0) }) { end = text.index(end, offsetBy: marker.count) }
            spans.append(found.lowerBound..<end)
            cursor = end
        }
        var ids: [Int] = [], trained: [Bool] = []
        func add(_ piece: Substring, _ train: Bool) {
            if piece.isEmpty { return }
            let t = tokenizer.encode(String(piece), addSpecialTokens: false)
            ids += t
            trained += Array(repeating: train, count: t.count)
        }
        var last = text.startIndex
        for s in spans {
            add(text[last..<s.lowerBound], false)
            add(text[s], true)
            last = s.upperBound
        }
        add(text[last...], false)
        return SFTExample(ids: ids, trained: trained)
    }

    /// A batch of examples, one per row (right-padded: no attention across examples), targets only where the
    /// next token is trained.
    public static func batch(_ examples: [SFTExample], pad: Int) throws -> PaddedBatch {
        let T = examples.map(\.ids.count).max() ?? 0
        var targets = [Int32](repeating: -100, count: examples.count * T)
        for (r, e) in examples.enumerated() {
            for t in 0..<(e.ids.count - 1) where e.trained[t + 1] { targets[r * T + t] = Int32(e.ids[t + 1]) }
        }
        return try PaddedBatch(sequences: examples.map(\.ids), targets: targets, pad: pad)
    }
}
