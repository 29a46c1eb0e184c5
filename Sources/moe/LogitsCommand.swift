import ArgumentParser
import MoEModel

/// `moe logits`: the logits of every position, as JSON `{"logits": [[...], ...]}` (a contract).
struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the logits of every input position as JSON {\"logits\": [[...], ...]}.")

    @OptionGroup var options: ModelOptions

    @OptionGroup var input: PromptOptions

    func run() throws {
        let ids = try input.ids(modelDirectory: options.model).ids
        let model = try options.load(defaultActivations: .int16)  // the contract: f32 math
        let cache = model.makeCache(capacity: min(model.contextLength, ids.count))
        let logits = try model.forward(ids, cache: cache, logitsFor: .all)
        let vocab = model.config.vocabSize
        var out = "{\"logits\": ["
        out.reserveCapacity(ids.count * vocab * 12)
        for t in 0..<ids.count {
            if t > 0 { out += ", " }
            out += "["
            for v in 0..<vocab {
                if v > 0 { out += ", " }
                out += jsonNumber(logits[t * vocab + v])
            }
            out += "]"
        }
        out += "]}"
        print(out)
    }
}
