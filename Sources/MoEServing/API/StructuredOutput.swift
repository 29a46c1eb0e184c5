import Foundation
import MoEGrammar
import MoEModel
import MoETokenizer

/// `response_format` (OpenAI's `json_object` and `json_schema`) and the `grammar` extension (llama.cpp's GBNF):
/// what the output must match, enforced by constrained decoding.
enum StructuredOutput {
    /// The GBNF grammar a request asks for, nil for free text. Throws a 400 naming the field (and the schema
    /// keyword at fault).
    static func grammar(responseFormat: TemplateValue?, grammar: String?) throws(APIError) -> Grammar? {
        let text: String, param: String
        switch (responseFormat, grammar) {
        case (nil, nil): return nil
        case (_?, _?): throw .invalidRequest("Give 'response_format' or 'grammar', not both.", param: "grammar")
        case (nil, let g?):
            (text, param) = (g, "grammar")
        case (let format?, nil):
            param = "response_format"
            guard case .string(let type)? = format["type"] else {
                throw .invalidRequest("'response_format' must be {\"type\": \"text\" | \"json_object\" | \"json_schema\", …}.", param: param)
            }
            switch type {
            case "text": return nil
            case "json_object": text = JSONSchemaGrammar.anyObjectGBNF
            case "json_schema":
                guard let spec = format["json_schema"], case .object = spec else {
                    throw .invalidRequest("'response_format' of type \"json_schema\" needs a 'json_schema' object ({\"name\", \"schema\", \"strict\"}).", param: param)
                }
                do { text = try JSONSchemaGrammar.gbnf(schema: spec["schema"] ?? .bool(true)) } catch {
                    throw .invalidRequest("'response_format.json_schema.schema': \(error.message)", param: param)
                }
            default:
                throw .invalidRequest("'response_format.type' must be \"text\", \"json_object\" or \"json_schema\"; got \"\(type)\".", param: param)
            }
        }
        do { return try GBNF.parse(text) } catch {
            throw .invalidRequest(param == "grammar" ? "'grammar': \(error.message)" : "'response_format': \(error.message)", param: param)
        }
    }

    /// A constraint per choice over one shared matcher (its masks are cached per grammar state).
    static func constraints(_ grammar: Grammar, trie: TokenTrie, stopTokens: Set<Int>) -> @Sendable () -> any LogitsConstraint {
        let shared = GrammarVocabularyMatcher(grammar: grammar, trie: trie)
        return { GrammarConstraint(shared, stopTokens: stopTokens) }
    }
}


/// The vocabulary's byte trie, made on first use (a few hundred milliseconds for 150k tokens) and kept.
final class LazyTokenTrie: @unchecked Sendable {
    private let lock = NSLock()
    private var trie: TokenTrie?
    private let tokenizer: Tokenizer
    private let vocabSize: Int
    private let specials: Set<String>

    /// `specials`: special tokens to keep (a tool-call syntax's markers).
    init(tokenizer: Tokenizer, vocabSize: Int, specials: Set<String> = []) {
        self.tokenizer = tokenizer
        self.vocabSize = vocabSize
        self.specials = specials
    }

    var value: TokenTrie {
        lock.withLock {
            if let trie { return trie }
            let made = TokenTrie(tokenizer: tokenizer, vocabSize: vocabSize, specials: specials)
            trie = made
            return made
        }
    }
}
