import Foundation

/// A tokenizer.json `post_processor`: what `encode(_:addSpecialTokens: true)` wraps around the ids.
///
///     // {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}],
///     //  "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
///     processor.process([5, 6])           // [1, 5, 6]
///     processor.process([5, 6], pair: [7]) // per the "pair" template
indirect enum PostProcessor: Sendable {
    /// Template pieces: `.sequence(0)` is $A, `.sequence(1)` is $B, `.special(ids)` a special token's ids.
    enum Item: Sendable, Equatable {
        case sequence(Int)
        case special([Int])
    }

    case template(single: [Item], pair: [Item])
    /// Roberta: `<s> A </s>` and `<s> A </s> </s> B </s>`.
    case roberta(cls: Int, sep: Int)
    /// Bert: `[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]`.
    case bert(cls: Int, sep: Int)
    /// ByteLevel post-processing only trims offsets: no effect on ids.
    case passthrough
    case sequence([PostProcessor])

    init(json: JSONValue) throws {
        guard let type = json["type"]?.string else { throw TokenizerError.unsupported("post_processor without a \"type\"") }
        switch type {
        case "TemplateProcessing":
            var specials: [String: [Int]] = [:]
            if let map = json["special_tokens"]?.object {
                for (name, value) in map {
                    guard let ids = value["ids"]?.array?.compactMap(\.int) else {
                        throw TokenizerError.unsupported("TemplateProcessing special token \(name) has no \"ids\"")
                    }
                    specials[name] = ids
                }
            }
            func items(_ key: String) throws -> [Item] {
                guard let list = json[key]?.array else { return [] }
                return try list.map { item in
                    if let seq = item["Sequence"] {
                        return .sequence(seq["id"]?.string == "B" ? 1 : 0)
                    }
                    if let special = item["SpecialToken"], let name = special["id"]?.string {
                        guard let ids = specials[name] else {
                            throw TokenizerError.unsupported("TemplateProcessing uses special token \(name) missing from special_tokens")
                        }
                        return .special(ids)
                    }
                    throw TokenizerError.unsupported("TemplateProcessing item is neither Sequence nor SpecialToken")
                }
            }
            self = .template(single: try items("single"), pair: try items("pair"))
        case "RobertaProcessing", "BertProcessing":
            guard let cls = json["cls"]?[1]?.int, let sep = json["sep"]?[1]?.int else {
                throw TokenizerError.unsupported("\(type) needs \"cls\" and \"sep\" as [token, id]")
            }
            self = type == "RobertaProcessing" ? .roberta(cls: cls, sep: sep) : .bert(cls: cls, sep: sep)
        case "ByteLevel":
            self = .passthrough
        case "Sequence":
            guard let items = json["processors"]?.array else { throw TokenizerError.unsupported("Sequence post-processor without \"processors\"") }
            self = .sequence(try items.map(PostProcessor.init(json:)))
        default:
            throw TokenizerError.unsupported("post-processor type \(type) is not supported (supported: TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence)")
        }
    }

    /// The ids with the special tokens added (HF `post_process` with `add_special_tokens`).
    func process(_ a: [Int], pair b: [Int]? = nil) -> [Int] {
        switch self {
        case let .template(single, pair):
            var out: [Int] = []
            for item in b == nil ? single : pair {
                switch item {
                case let .sequence(i): out.append(contentsOf: i == 0 ? a : (b ?? []))
                case let .special(ids): out.append(contentsOf: ids)
                }
            }
            return out
        case let .roberta(cls, sep):
            guard let b else { return [cls] + a + [sep] }
            return [cls] + a + [sep, sep] + b + [sep]
        case let .bert(cls, sep):
            guard let b else { return [cls] + a + [sep] }
            return [cls] + a + [sep] + b + [sep]
        case .passthrough:
            return a + (b ?? [])
        case let .sequence(items):
            // HF's Sequence processor passes the pair through each processor in turn; after a processor
            // that merged the pair, later ones see one sequence.
            var first = a, second = b
            for p in items {
                if case .passthrough = p { continue }
                first = p.process(first, pair: second)
                second = nil
            }
            return second.map { first + $0 } ?? first
        }
    }
}
