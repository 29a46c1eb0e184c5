import Foundation
import MoEFormats
import MoETokenizer

/// Everything between "a config, a tokenizer and some text files" and a ready `Trainer`: the model's
/// configuration (a preset sized to the tokenizer, or a config.json), the token shards (built once into
/// OUT/data and reused), a new model with HF initialisation, or the newest checkpoint when resuming.
public enum TrainingSetup {
    /// `config`: a preset name or a config.json path (or a directory holding one).
    public static func modelConfig(_ config: String, tokenizer: Tokenizer, eosToken: Int) throws -> ModelConfig {
        if ModelPreset.names.contains(config) {
            return try ModelPreset.config(config, vocabSize: tokenizer.vocabSize, overrides: ["eos_token_id": eosToken])
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: config, isDirectory: &isDirectory) else {
            throw TrainingError.badArgument("--config \(config): neither a preset (\(ModelPreset.names.joined(separator: ", "))) nor a file")
        }
        let c = try isDirectory.boolValue ? ModelConfig(directory: config)
            : ModelConfig(json: Data(contentsOf: URL(fileURLWithPath: config)), path: config)
        guard c.vocabSize >= tokenizer.vocabSize else {
            throw TrainingError.badArgument("the config's vocab_size (\(c.vocabSize)) is smaller than the tokenizer's (\(tokenizer.vocabSize))")
        }
        return c
    }

    /// The end-of-text id documents are separated by: the tokenizer's EOS, else `<|endoftext|>`.
    public static func eosToken(_ tokenizer: Tokenizer) throws -> Int {
        if let e = tokenizer.eosTokenIds.first { return e }
        if let e = tokenizer.id(forToken: "<|endoftext|>") { return e }
        throw TrainingError.badArgument("the tokenizer has no EOS token (tokenizer_config.json eos_token) to separate documents")
    }

    /// Tokenizes `dataFiles` once into OUT/data (train.bin, val.bin), or reuses shards made from the same inputs.
    public static func shards(dataFiles: [String], tokenizer: Tokenizer, eosToken: Int, validationFraction: Double,
                              out: String, progress: ((Int, Int) -> Void)? = nil) throws -> (train: TokenShard, validation: TokenShard) {
        var documents: [String] = []
        for f in dataFiles { documents += try TrainingText.documents(path: f) }
        return try shards(documents: documents, tokenizer: tokenizer, eosToken: eosToken, validationFraction: validationFraction,
                          out: out, progress: progress)
    }

    public static func shards(documents: [String], tokenizer: Tokenizer, eosToken: Int, validationFraction: Double,
                              out: String, progress: ((Int, Int) -> Void)? = nil) throws -> (train: TokenShard, validation: TokenShard) {
        let dir = "\(out)/data"
        let fingerprint = TokenizedCorpus.Fingerprint(documents: documents, vocabSize: tokenizer.vocabSize, eosToken: eosToken,
                                                      validationFraction: validationFraction)
        if let existing = try TokenizedCorpus.load(shardDirectory: dir, expecting: fingerprint) { return existing }
        return try TokenizedCorpus.build(documents: documents, encode: { tokenizer.encode($0, addSpecialTokens: false) },
                                         eosToken: eosToken, vocabSize: tokenizer.vocabSize,
                                         validationFraction: validationFraction, shardDirectory: dir, progress: progress)
    }

    /// Creates OUT if needed and checks that it can be written, before any work is done.
    public static func prepareOutput(_ out: String) throws {
        do { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) } catch {
            throw TrainingError.badArgument("cannot create the output directory \(out): \(error.localizedDescription)")
        }
        guard FileManager.default.isWritableFile(atPath: out) else {
            throw TrainingError.badArgument("the output directory \(out) is not writable")
        }
    }

    /// The tokenizer files of `directory` that a checkpoint should carry.
    public static func tokenizerFiles(_ directory: String) -> [String] {
        ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "vocab.json", "merges.txt"]
            .map { "\(directory)/\($0)" }.filter { FileManager.default.fileExists(atPath: $0) }
    }
}
