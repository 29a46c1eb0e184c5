import Foundation
import MoEFormats
import MoETokenizer

/// The files `moe route` writes besides report.json: routing.jsonl (every token's choices), the heat maps, and one
/// self-contained report.html (no network: styles, script, charts and data inline) in which every token is
/// coloured by its first expert in a chosen layer and hovering shows its experts and weights in every layer.
public enum RoutingPage {
    /// One JSON object per token: `{"document", "domain", "position", "token", "piece", "experts": [[…] per MoE
    /// layer], "weights": [[…]]}` (report.json's `moe_layers` names the layers).
    public static func writeJSONL(_ trace: RoutingTrace, tokenizer: Tokenizer, to path: String) throws {
        let L = trace.moeLayers.count
        try AtomicFile.write(to: path) { handle in
            var buffer = ""
            for t in 0..<trace.tokens {
                var experts: [String] = [], weights: [String] = []
                for l in 0..<L {
                    let c = trace.choices(token: t, layer: l)
                    experts.append("[" + c.map { String($0.expert) }.joined(separator: ",") + "]")
                    weights.append("[" + c.map { String(format: "%.6g", $0.weight) }.joined(separator: ",") + "]")
                }
                buffer += "{\"document\":\(trace.document[t]),\"domain\":\(jsonStringLiteral(trace.domains[Int(trace.domain[t])])),"
                    + "\"position\":\(trace.position[t]),\"token\":\(trace.token[t]),\"piece\":\(jsonStringLiteral(piece(tokenizer, Int(trace.token[t])))),"
                    + "\"experts\":[\(experts.joined(separator: ","))],\"weights\":[\(weights.joined(separator: ","))]}\n"
                if buffer.utf8.count > 1 << 20 { try handle.write(contentsOf: Data(buffer.utf8)); buffer = "" }
            }
            try handle.write(contentsOf: Data(buffer.utf8))
        }
    }

    /// The heat maps: for each domain (and all together) layer × expert shares, and the co-activation matrix.
    public static func heatMaps(_ report: RoutingReport) -> [(name: String, svg: String)] {
        let cell = max(4, min(22, 900 / max(report.experts, 1)))
        let layers = report.moeLayers.map { "layer \($0)" }
        var out: [(String, String)] = []
        for d in report.domains + (report.domains.count > 1 ? [report.all] : []) {
            out.append(("routing-\(fileName(d.name)).svg",
                        SVGPlot.heatMap(title: "Expert share: \(d.name) (\(d.tokens) tokens)", rowLabel: "MoE layer", columnLabel: "expert",
                                        values: d.share, rowNames: layers, cellSize: cell)))
        }
        // Beyond 64 experts (Qwen3-Next's 512: a quarter of a million cells) only the 64 most chosen are drawn.
        let usage = (0..<report.experts).map { e in report.all.share.reduce(0) { $0 + $1[e] } }
        let shown = report.experts <= 64 ? Array(0..<report.experts) : (0..<report.experts).sorted { usage[$0] > usage[$1] }.prefix(64).sorted()
        let title = "Co-activation: P(column chosen | row chosen), all layers" + (shown.count < report.experts ? " (the 64 most chosen experts)" : "")
        out.append(("coactivation.svg",
                    SVGPlot.heatMap(title: title, rowLabel: "expert", columnLabel: "expert",
                                    values: shown.map { a in shown.map { b in report.coactivation[a][b] } },
                                    rowNames: shown.map(String.init), columnNames: shown.map(String.init),
                                    cellSize: max(4, min(22, 900 / max(shown.count, 1))))))
        return out
    }

    /// report.html. `tokensPerDomain`: how many tokens of each domain the text view shows.
    public static func html(_ report: RoutingReport, trace: RoutingTrace, tokenizer: Tokenizer, tokensPerDomain: Int = 1000) -> String {
        let L = trace.moeLayers.count
        // Data for the token view: per domain its first tokens, each [piece, [[experts], [weights]] per layer].
        var domainsJSON: [String] = []
        for (d, name) in trace.domains.enumerated() {
            var items: [String] = []
            var lastDocument: Int32 = -1
            for t in 0..<trace.tokens where trace.domain[t] == Int32(d) {
                if items.count >= tokensPerDomain { break }
                let layers = (0..<L).map { l -> String in
                    let c = trace.choices(token: t, layer: l)
                    return "[[" + c.map { String($0.expert) }.joined(separator: ",") + "],["
                        + c.map { String(format: "%.3f", $0.weight) }.joined(separator: ",") + "]]"
                }
                // A new document starts on a new line.
                let newDocument = trace.document[t] != lastDocument && lastDocument >= 0
                lastDocument = trace.document[t]
                items.append("[\(jsonStringLiteral(piece(tokenizer, Int(trace.token[t])))),[\(layers.joined(separator: ","))],\(newDocument ? 1 : 0)]")
            }
            domainsJSON.append("{\"name\":\(jsonStringLiteral(name)),\"tokens\":[\(items.joined(separator: ","))]}")
        }
        let data = "{\"layers\":[\(trace.moeLayers.map(String.init).joined(separator: ","))],\"experts\":\(trace.experts),"
            + "\"domains\":[\(domainsJSON.joined(separator: ","))]}"

        var rows = ""
        for d in report.domains + (report.domains.count > 1 ? [report.all] : []) {
            rows += "<tr><td>\(SVGPlot.esc(d.name))</td><td>\(d.tokens)</td>"
                + "<td>\(String(format: "%.2f", mean(d.coefficientOfVariation)))</td><td>\(String(format: "%.3f", mean(d.normalizedEntropy)))</td></tr>\n"
        }
        var layerRows = ""
        for (l, layer) in report.moeLayers.enumerated() {
            layerRows += "<tr><td>\(layer)</td><td>\(String(format: "%.4f", report.mutualInformation[l]))</td>"
                + "<td>\(l < report.layerStability.count ? String(format: "%.3f", report.layerStability[l]) : "–")</td></tr>\n"
        }
        let maps = heatMaps(report).map { "<figure>\($0.svg)</figure>" }.joined(separator: "\n")
        let speed = report.tokensPerSecond.map { String(format: ", %.0f tokens/s", $0) } ?? ""
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>Routing: \(SVGPlot.esc(report.model))</title>
            <style>
            body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}
            table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
            td:first-child,th:first-child{text-align:left}figure{margin:8px 0;overflow-x:auto}
            #text{line-height:1.9;white-space:pre-wrap;font-family:monospace;font-size:13px;border:1px solid #ddd;padding:8px}
            #text span{border-radius:3px;padding:1px 0;cursor:default}
            #tip{position:fixed;display:none;background:#fff;border:1px solid #888;padding:6px 8px;font:12px monospace;
                 white-space:pre;pointer-events:none;box-shadow:2px 2px 6px #0003;z-index:10}
            #legend span{display:inline-block;padding:1px 6px;margin:1px;border-radius:3px;font:11px monospace}
            </style></head><body>
            <h1>Routing of \(SVGPlot.esc(report.model))</h1>
            <p>\(report.tokens) tokens, \(report.moeLayers.count) MoE layers, \(report.experts) experts, top-\(report.topK)\(speed).
            H(domain) = \(String(format: "%.3f", report.domainEntropy)) bits bounds the mutual information.</p>
            <h2>Domains</h2>
            <table><tr><th>domain</th><th>tokens</th><th>load CV (mean over layers)</th><th>normalised entropy</th></tr>
            \(rows)</table>
            <h2>Layers</h2>
            <table><tr><th>MoE layer</th><th>I(domain; expert), bits</th><th>stability to the next layer (NMI)</th></tr>
            \(layerRows)</table>
            <h2>Tokens</h2>
            <p>Domain <select id="domain"></select> coloured by the first expert of layer <select id="layer"></select>;
            hover a token for its experts and weights in every layer.</p>
            <div id="legend"></div>
            <div id="text"></div>
            <div id="tip"></div>
            <h2>Heat maps</h2>
            \(maps)
            <script type="application/json" id="data">\(data.replacingOccurrences(of: "</", with: "<\\/"))</script>
            <script>
            "use strict";
            const data = JSON.parse(document.getElementById("data").textContent);
            const palette = ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"];
            const colour = e => e < palette.length ? palette[e] : "hsl(" + ((e * 137.508) % 360).toFixed(0) + ",70%," + (e % 2 ? "80%" : "70%") + ")";
            const domainSelect = document.getElementById("domain"), layerSelect = document.getElementById("layer");
            const text = document.getElementById("text"), tip = document.getElementById("tip");
            data.domains.forEach((d, i) => domainSelect.add(new Option(d.name, i)));
            data.layers.forEach((l, i) => layerSelect.add(new Option(l, i)));
            layerSelect.value = String(Math.floor(data.layers.length / 2));
            function render() {
              const d = data.domains[+domainSelect.value], l = +layerSelect.value;
              text.textContent = "";
              d.tokens.forEach((tok, i) => {
                if (tok[2]) text.appendChild(document.createTextNode("\\n\\n"));
                const s = document.createElement("span");
                s.textContent = tok[0];
                const first = tok[1][l][0][0];
                s.style.background = first === undefined ? "#eee" : colour(first);
                s.dataset.index = i;
                text.appendChild(s);
              });
              const legend = document.getElementById("legend");
              legend.textContent = "";
              for (let e = 0; e < Math.min(data.experts, 64); e++) {
                const s = document.createElement("span");
                s.textContent = "e" + e; s.style.background = colour(e);
                legend.appendChild(s);
              }
            }
            text.addEventListener("mouseover", ev => {
              const i = ev.target.dataset && ev.target.dataset.index;
              if (i === undefined) return;
              const d = data.domains[+domainSelect.value], tok = d.tokens[+i];
              const lines = [JSON.stringify(tok[0])];
              tok[1].forEach((c, l) => lines.push((l === +layerSelect.value ? "> " : "  ") + "layer " + data.layers[l] + ": " +
                c[0].map((e, j) => "e" + e + " " + c[1][j].toFixed(3)).join("  ")));
              tip.textContent = lines.join("\\n");
              tip.style.display = "block";
            });
            text.addEventListener("mousemove", ev => { tip.style.left = (ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 14) + "px"; });
            text.addEventListener("mouseout", () => { tip.style.display = "none"; });
            domainSelect.addEventListener("change", render);
            layerSelect.addEventListener("change", render);
            render();
            </script>
            </body></html>

            """
    }

    static func piece(_ tokenizer: Tokenizer, _ id: Int) -> String {
        tokenizer.bytes(ofToken: id).map { String(decoding: $0, as: UTF8.self) } ?? tokenizer.decode([id])
    }

    static func fileName(_ s: String) -> String {
        String(s.unicodeScalars.map { CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_" ? Character($0) : "_" })
    }

    public static func mean(_ x: [Double]) -> Double { x.isEmpty ? 0 : x.reduce(0, +) / Double(x.count) }
}
