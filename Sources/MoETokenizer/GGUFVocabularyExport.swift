import Foundation
import MoEFormats

/// A Hugging Face tokenizer as GGUF `tokenizer.*` metadata, as llama.cpp's converter writes it for byte-level BPE
/// vocabularies (`tokenizer.ggml.model` `gpt2`): tokens by id up to the embedding size (ids without a token become
/// `[PAD<id>]`, unused), token types (normal 1, control 3 for special added tokens and `<|…|>`-looking ones,
/// user-defined 4 for other added tokens, unused 5), merges as "a b", the pre-tokenizer named by its split regex,
/// the special ids, whether BOS/EOS are added, and the chat template.
extension Tokenizer {
    /// llama.cpp's name for a tokenizer.json split regex: the regexes of llama.cpp's table, read with tokenizer.json's
    /// spellings (`(?i:'s|…)` for the contractions, GPT-2's trailing `|\s+`, which llama.cpp's GPT-2 splitter applies
    /// without spelling it).
    static func ggufPreTokenizerName(for pattern: String) -> String? {
        var canonical = pattern.replacingOccurrences(of: "(?i:'s|'t|'re|'ve|'m|'ll|'d)",
                                                     with: "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])")
        if canonical == #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"# {
            canonical = String(canonical.dropLast(4))
        }
        return ["gpt-2", "llama-bpe", "qwen2", "qwen35"].first { ggufPreTokenizers[$0]?.patterns == [canonical] }
    }

    /// The `tokenizer.*` metadata of this tokenizer for a model whose embedding has `vocabularySize` rows.
    public func ggufMetadata(vocabularySize: Int) throws -> [(key: String, value: GGUFValue)] {
        guard model is BPEModel, case .byteLevel? = decoder else {
            throw TokenizerError.unsupported("\(path): only byte-level BPE tokenizers are written to GGUF (SentencePiece-style ones are not yet)")
        }
        guard let pattern = preTokenizerPattern, let pre = Self.ggufPreTokenizerName(for: pattern) else {
            throw TokenizerError.unsupported("\(path): llama.cpp has no pre-tokenizer for the split regex \((preTokenizerPattern ?? "(none)").debugDescription)")
        }
        guard vocabularySize >= vocabSize else {
            throw TokenizerError.badFile(path: path, reason: "has \(vocabSize) tokens, more than the model's \(vocabularySize) embedding rows")
        }
        var tokens: [GGUFValue] = [], types: [GGUFValue] = []
        tokens.reserveCapacity(vocabularySize); types.reserveCapacity(vocabularySize)
        for id in 0..<vocabularySize {
            guard let token = token(forId: id) else {
                tokens.append(.string("[PAD\(id)]")); types.append(.int32(5))
                continue
            }
            tokens.append(.string(token))
            if let added = added.byId[id] {
                types.append(.int32(added.special || Self.looksSpecial(token) ? 3 : 4))
            } else {
                types.append(.int32(1))
            }
        }
        var m: [(key: String, value: GGUFValue)] = [
            ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string(pre)),
            ("tokenizer.ggml.tokens", .array(.string, tokens)), ("tokenizer.ggml.token_type", .array(.int32, types)),
            ("tokenizer.ggml.merges", .array(.string, try mergeLines().map(GGUFValue.string))),
        ]
        if let bos = bosTokenId { m.append(("tokenizer.ggml.bos_token_id", .uint32(UInt32(bos)))) }
        if let eos = eosTokenIds.first { m.append(("tokenizer.ggml.eos_token_id", .uint32(UInt32(eos)))) }
        if let pad = padTokenId { m.append(("tokenizer.ggml.padding_token_id", .uint32(UInt32(pad)))) }
        // What the post-processor adds around a text is what llama.cpp must add.
        let marks = encode("", addSpecialTokens: true)
        m.append(("tokenizer.ggml.add_bos_token", .bool(bosTokenId != nil && marks.first == bosTokenId)))
        m.append(("tokenizer.ggml.add_eos_token", .bool(eosTokenIds.first != nil && marks.last == eosTokenIds.first)))
        if let template = chatTemplate { m.append(("tokenizer.chat_template", .string(template))) }
        return m
    }

    /// The converter's `does_token_look_special`: added tokens some models forget to mark special.
    static func looksSpecial(_ t: String) -> Bool {
        ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(t) || (t.hasPrefix("<|") && t.hasSuffix("|>"))
            || (t.hasPrefix("<｜") && t.hasSuffix("｜>")) || (t.hasPrefix("<unused") && t.hasSuffix(">"))
    }

    /// The merges of tokenizer.json in rank order, as "a b" (tokenizer.json stores them so, or as pairs).
    private func mergeLines() throws -> [String] {
        let data = try Self.read(path)
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let model = json["model"] as? [String: Any] else {
            throw TokenizerError.badFile(path: path, reason: "not a tokenizer.json object with a \"model\"")
        }
        let merges = model["merges"] as? [Any] ?? []
        return try merges.enumerated().map { i, merge in
            if let line = merge as? String { return line }
            if let pair = merge as? [String], pair.count == 2 { return pair[0] + " " + pair[1] }
            throw TokenizerError.badFile(path: path, reason: "model.merges[\(i)] is neither \"a b\" nor [\"a\", \"b\"]")
        }
    }
}
