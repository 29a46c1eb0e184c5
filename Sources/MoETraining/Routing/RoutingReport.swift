import Foundation

/// What a `RoutingTrace` shows, as `moe route` writes it to report.json: per domain each expert's share of the
/// choices and how balanced they are, how much the expert tells about the domain (mutual information), which experts
/// are chosen together, and how much one layer's choice tells about the next's.
public struct RoutingReport: Codable, Sendable {
    public struct Domain: Codable, Sendable {
        public var name: String
        public var tokens: Int
        /// [MoE layer][expert]: the expert's share of this domain's choices in that layer (each row sums to 1).
        public var share: [[Double]]
        /// [MoE layer][expert]: the expert's share of the routing weight.
        public var weightShare: [[Double]]
        /// Per MoE layer: load balance as the coefficient of variation of the experts' choice counts (0 = even).
        public var coefficientOfVariation: [Double]
        /// Per MoE layer: entropy of `share` over log(experts) (1 = even).
        public var normalizedEntropy: [Double]
        enum CodingKeys: String, CodingKey {
            case name, tokens, share
            case weightShare = "weight_share", coefficientOfVariation = "coefficient_of_variation", normalizedEntropy = "normalized_entropy"
        }
    }

    /// A pair of experts chosen together, in one layer.
    public struct Pair: Codable, Sendable {
        public var layer: Int
        public var experts: [Int]
        /// Tokens that chose both.
        public var tokens: Int
        /// P(both) / (P(first) · P(second)): how much more often than by chance.
        public var lift: Double
    }

    public var model: String
    public var moeLayers: [Int]
    public var experts: Int
    public var topK: Int
    public var tokens: Int
    public var domains: [Domain]
    /// All domains together.
    public var all: Domain
    /// Per MoE layer: I(domain; expert) in bits over every choice (0 = the experts say nothing of the domain), and
    /// H(domain), its ceiling.
    public var mutualInformation: [Double]
    public var domainEntropy: Double
    /// [expert i][expert j]: P(j chosen | i chosen) for one token in one layer, over all layers (the diagonal is 0).
    public var coactivation: [[Double]]
    /// The pairs most often chosen together (beyond chance) in each layer, up to 5 a layer.
    public var topPairs: [Pair]
    /// Per pair of consecutive MoE layers: normalised mutual information between a token's first expert in the one
    /// and in the next (1 = the next layer's choice follows from this one's, 0 = unrelated).
    public var layerStability: [Double]
    public var tokensPerSecond: Double?

    enum CodingKeys: String, CodingKey {
        case model, experts, tokens, domains, all, coactivation
        case moeLayers = "moe_layers", topK = "top_k", mutualInformation = "mutual_information_bits"
        case domainEntropy = "domain_entropy_bits", topPairs = "top_pairs", layerStability = "layer_stability"
        case tokensPerSecond = "tokens_per_second"
    }

    public init(_ trace: RoutingTrace, model: String) {
        let L = trace.moeLayers.count, E = trace.experts, K = trace.topK, D = trace.domains.count
        self.model = model; moeLayers = trace.moeLayers; experts = E; topK = K; tokens = trace.tokens

        // counts[d][l][e] and mass[d][l][e] in one pass.
        var counts = [[[Double]]](repeating: .init(repeating: .init(repeating: 0, count: E), count: L), count: D)
        var mass = counts
        var domainTokens = [Int](repeating: 0, count: D)
        for t in 0..<trace.tokens {
            let d = Int(trace.domain[t])
            domainTokens[d] += 1
            for l in 0..<L {
                for j in 0..<K {
                    let i = (t * L + l) * K + j, e = Int(trace.chosen[i])
                    guard e >= 0 else { continue }
                    counts[d][l][e] += 1; mass[d][l][e] += Double(trace.weights[i])
                }
            }
        }
        func summary(_ name: String, _ tokens: Int, _ c: [[Double]], _ m: [[Double]]) -> Domain {
            func normalised(_ row: [Double]) -> [Double] { let s = row.reduce(0, +); return row.map { s > 0 ? $0 / s : 0 } }
            let cv = c.map { row -> Double in
                let mean = row.reduce(0, +) / Double(E)
                guard mean > 0 else { return 0 }
                return (row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(E)).squareRoot() / mean
            }
            let entropy = c.map { row -> Double in
                let p = normalised(row)
                return E > 1 ? -p.reduce(0) { $0 + ($1 > 0 ? $1 * log($1) : 0) } / log(Double(E)) : 1
            }
            return Domain(name: name, tokens: tokens, share: c.map(normalised), weightShare: m.map(normalised),
                          coefficientOfVariation: cv, normalizedEntropy: entropy)
        }
        domains = (0..<D).map { summary(trace.domains[$0], domainTokens[$0], counts[$0], mass[$0]) }
        let allCounts = (0..<L).map { l in (0..<E).map { e in (0..<D).reduce(0.0) { $0 + counts[$1][l][e] } } }
        let allMass = (0..<L).map { l in (0..<E).map { e in (0..<D).reduce(0.0) { $0 + mass[$1][l][e] } } }
        all = summary("all", trace.tokens, allCounts, allMass)
        mutualInformation = (0..<L).map { l in Self.mutualInformation(counts.map { $0[l] }) }
        let domainChoices = (0..<D).map { d in counts[d].first?.reduce(0, +) ?? 0 }
        domainEntropy = Self.entropy(domainChoices)

        // Co-activation: pairs within one token's choices in one layer.
        var together = [[Double]](repeating: .init(repeating: 0, count: E), count: E)
        var chosenBy = [Double](repeating: 0, count: E)
        var pairs: [Pair] = []
        var layerTogether = [Int](repeating: 0, count: E * E)
        for l in 0..<L {
            for i in layerTogether.indices { layerTogether[i] = 0 }
            for t in 0..<trace.tokens {
                let base = (t * L + l) * K
                for a in 0..<K where trace.chosen[base + a] >= 0 {
                    let ea = Int(trace.chosen[base + a])
                    chosenBy[ea] += 1
                    for b in 0..<K where b != a && trace.chosen[base + b] >= 0 {
                        let eb = Int(trace.chosen[base + b])
                        together[ea][eb] += 1
                        layerTogether[ea * E + eb] += 1
                    }
                }
            }
            let n = Double(max(trace.tokens, 1))
            var candidates: [Pair] = []
            for a in 0..<E { for b in (a + 1)..<E where layerTogether[a * E + b] > 0 {
                let pa = allCounts[l][a] / n, pb = allCounts[l][b] / n, pab = Double(layerTogether[a * E + b]) / n
                candidates.append(Pair(layer: trace.moeLayers[l], experts: [a, b], tokens: layerTogether[a * E + b], lift: pab / (pa * pb)))
            } }
            // Pairs seen a handful of times have noisy lifts: rank by lift among those seen at least 5 times (or all).
            let reliable = candidates.filter { $0.tokens >= 5 }
            pairs += (reliable.isEmpty ? candidates : reliable).sorted { ($0.lift, $0.tokens) > ($1.lift, $1.tokens) }.prefix(5)
        }
        coactivation = (0..<E).map { a in (0..<E).map { b in chosenBy[a] > 0 ? together[a][b] / chosenBy[a] : 0 } }
        topPairs = pairs

        // Stability: each token's first expert in layer l against layer l+1.
        layerStability = (0..<max(L - 1, 0)).map { l in
            var joint = [[Double]](repeating: .init(repeating: 0, count: E), count: E)
            for t in 0..<trace.tokens {
                let x = trace.chosen[(t * L + l) * K], y = trace.chosen[(t * L + l + 1) * K]
                if x >= 0 && y >= 0 { joint[Int(x)][Int(y)] += 1 }
            }
            let hx = Self.entropy(joint.map { $0.reduce(0, +) })
            let hy = Self.entropy((0..<E).map { y in joint.reduce(0) { $0 + $1[y] } })
            return hx > 0 && hy > 0 ? Self.mutualInformation(joint) / (hx * hy).squareRoot() : 0
        }
    }

    /// I(X; Y) in bits from a table of counts [x][y].
    public static func mutualInformation(_ counts: [[Double]]) -> Double {
        let total = counts.reduce(0) { $0 + $1.reduce(0, +) }
        guard total > 0 else { return 0 }
        let px = counts.map { $0.reduce(0, +) / total }
        let columns = counts.first?.count ?? 0
        let py = (0..<columns).map { y in counts.reduce(0) { $0 + $1[y] } / total }
        var mi = 0.0
        for (x, row) in counts.enumerated() {
            for (y, c) in row.enumerated() where c > 0 {
                let p = c / total
                mi += p * log2(p / (px[x] * py[y]))
            }
        }
        return max(mi, 0)
    }

    /// Entropy in bits of a distribution given by counts.
    public static func entropy(_ counts: [Double]) -> Double {
        let total = counts.reduce(0, +)
        guard total > 0 else { return 0 }
        return -counts.reduce(0) { $0 + ($1 > 0 ? ($1 / total) * log2($1 / total) : 0) }
    }
}
