import ArgumentParser
import Foundation
import MoETokenizer

/// `--tokenizer DIR`: a model directory with tokenizer.json (or the tokenizer.json file itself).
struct TokenizerOptions: ParsableArguments {
    @Option(help: "A model directory with tokenizer.json (and tokenizer_config.json), or a tokenizer.json file.")
    var tokenizer: String

    func load() throws -> Tokenizer {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: tokenizer, isDirectory: &isDirectory) else {
            throw ValidationError("--tokenizer \(tokenizer): no such file or directory")
        }
        if isDirectory.boolValue { return try Tokenizer(directory: tokenizer) }
        let data = try Data(contentsOf: URL(fileURLWithPath: tokenizer))
        return try Tokenizer(tokenizerJSON: data, path: tokenizer)
    }
}

/// `moe tokenize --tokenizer DIR "text"`: prints `{"ids": [1, 2, 3]}`.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode text into token ids, as Hugging Face tokenizers' encode does.",
        discussion: """
            Prints {"ids": [...]} on one line. Special tokens the tokenizer's post-processor adds (e.g. BOS) \
            are included unless --no-special is given; special tokens written in the text are always recognised.
            """)

    @OptionGroup var options: TokenizerOptions

    @Flag(help: "Do not add the post-processor's special tokens (HF add_special_tokens=False).")
    var noSpecial = false

    @Argument(help: "The text to encode.")
    var text: String

    func run() throws {
        let tokenizer = try options.load()
        let ids = tokenizer.encode(text, addSpecialTokens: !noSpecial)
        print("{\"ids\": [\(ids.map(String.init).joined(separator: ", "))]}")
    }
}

/// `moe detokenize --tokenizer DIR 1,2,3`: prints the decoded text.
struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode token ids (comma-separated) into text, as Hugging Face tokenizers' decode does.")

    @OptionGroup var options: TokenizerOptions

    @Flag(help: "Leave out special tokens (HF skip_special_tokens=True).")
    var skipSpecial = false

    @Argument(help: "Token ids, comma-separated, e.g. 1,2,3.")
    var ids: String

    func run() throws {
        let parts = ids.split(whereSeparator: { $0 == "," || $0 == " " })
        let list = try parts.map { part -> Int in
            guard let id = Int(part), id >= 0 else { throw ValidationError("'\(part)' is not a token id") }
            return id
        }
        let tokenizer = try options.load()
        if let bad = list.first(where: { $0 >= tokenizer.vocabSize }) {
            throw ValidationError("token id \(bad) is out of range (vocabulary size \(tokenizer.vocabSize))")
        }
        print(tokenizer.decode(list, skipSpecialTokens: skipSpecial))
    }
}
