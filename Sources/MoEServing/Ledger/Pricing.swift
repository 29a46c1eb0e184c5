/// What a request costs, in US dollars per million tokens, as API price lists quote it.
///
/// Cached prompt tokens are charged as ordinary input: on a self-hosted server (as with llama.cpp's
/// prompt cache) a cache hit saves compute, not money anyone bills for, so one input price keeps it simple.
///
///     let pricing = Pricing(inputPerMillion: 0.50, outputPerMillion: 1.50)
///     pricing.cost(prompt: 1_000, completion: 200)  // 0.0008
public struct Pricing: Sendable, Equatable, Codable {
    /// USD per million prompt (input) tokens.
    public var inputPerMillion: Double
    /// USD per million completion (output) tokens.
    public var outputPerMillion: Double

    public init(inputPerMillion: Double, outputPerMillion: Double) {
        self.inputPerMillion = inputPerMillion
        self.outputPerMillion = outputPerMillion
    }

    /// Nothing is charged; the ledger still counts tokens.
    public static let free = Pricing(inputPerMillion: 0, outputPerMillion: 0)

    /// prompt × input / 1e6 + completion × output / 1e6, in USD.
    public func cost(prompt: Int, completion: Int) -> Double {
        Double(prompt) * inputPerMillion / 1e6 + Double(completion) * outputPerMillion / 1e6
    }
}
