import Foundation
import MoEFormats

/// One named line of a line chart. Points with a non-finite coordinate are skipped when drawing.
public struct PlotSeries: Sendable {
    public var name: String
    public var points: [(x: Double, y: Double)]
    public init(name: String, points: [(x: Double, y: Double)]) {
        self.name = name
        self.points = points
    }
}

/// Self-contained SVG charts (line charts, heat maps) that training writes next to its logs.
/// Output depends only on the input, so the same run gives the same bytes.
public enum SVGPlot {
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    static let viridis: [(Double, Double, Double)] = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
    /// Rough width of one 11 px sans-serif glyph: layout has no font metrics, so it budgets by character count.
    static let charWidth = 6.5

    /// A line chart with nice ticks, axis labels, a title, and a legend when there is more than one series.
    /// `logY` uses a log10 y axis and skips points with y <= 0.
    public static func lineChart(title: String, xLabel: String, yLabel: String, series: [PlotSeries],
                                 logY: Bool = false, width: Int = 720, height: Int = 420) -> String {
        let w = Double(max(width, 240)), h = Double(max(height, 160))
        let kept = series.map { $0.points.filter { usable($0.x) && usable($0.y) && (!logY || $0.y > 1e-300) } }
        let all = kept.joined()
        guard let x0 = all.map(\.x).min(), let x1 = all.map(\.x).max(),
              let y0 = all.map(\.y).min(), let y1 = all.map(\.y).max() else { return noData(title, w, h) }
        let xAxis = linearAxis(x0, x1), yAxis = logY ? logAxis(y0, y1) : linearAxis(y0, y1)

        let yLabelChars = yAxis.ticks.map(\.label.count).max() ?? 1
        let left = 30 + Double(yLabelChars) * charWidth + 8, top = 40.0
        let pw = w - left - 20, ph = h - top - 52
        func px(_ x: Double) -> Double { left + xAxis.fraction(x) * pw }
        func py(_ y: Double) -> Double { top + (1 - yAxis.fraction(y)) * ph }

        var s = header(w, h, title)
        for t in xAxis.ticks {
            let x = f(px(t.value))
            s += "<line x1=\"\(x)\" y1=\"\(f(top))\" x2=\"\(x)\" y2=\"\(f(top + ph + 4))\" stroke=\"#e3e3e3\"/>\n"
            s += "<text x=\"\(x)\" y=\"\(f(top + ph + 17))\" text-anchor=\"middle\">\(esc(t.label))</text>\n"
        }
        for t in yAxis.ticks {
            let y = f(py(t.value))
            s += "<line x1=\"\(f(left - 4))\" y1=\"\(y)\" x2=\"\(f(left + pw))\" y2=\"\(y)\" stroke=\"#e3e3e3\"/>\n"
            s += "<text x=\"\(f(left - 7))\" y=\"\(f(py(t.value) + 4))\" text-anchor=\"end\">\(esc(t.label))</text>\n"
        }
        s += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(pw))\" height=\"\(f(ph))\" fill=\"none\" stroke=\"#444\"/>\n"
        s += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(h - 12))\" text-anchor=\"middle\" font-size=\"12\">\(esc(xLabel))</text>\n"
        let cy = f(top + ph / 2)
        s += "<text x=\"16\" y=\"\(cy)\" transform=\"rotate(-90 16 \(cy))\" text-anchor=\"middle\" font-size=\"12\">\(esc(yLabel))</text>\n"

        for (i, points) in kept.enumerated() {
            let c = color(i), name = esc(series[i].name)
            if points.count == 1 {
                s += "<circle cx=\"\(f(px(points[0].x)))\" cy=\"\(f(py(points[0].y)))\" r=\"3\" fill=\"\(c)\"><title>\(name)</title></circle>\n"
            } else if !points.isEmpty {
                let d = points.enumerated().map { "\($0.offset == 0 ? "M" : "L")\(f(px($0.element.x))),\(f(py($0.element.y)))" }
                s += "<path d=\"\(d.joined(separator: " "))\" fill=\"none\" stroke=\"\(c)\" stroke-width=\"1.5\" stroke-linejoin=\"round\"><title>\(name)</title></path>\n"
            }
        }
        if series.count > 1 {
            // Top-right inside the plot, on a translucent box so it stays readable over the lines.
            let lw = Double(series.map(\.name.count).max() ?? 0) * charWidth + 36, lh = Double(series.count) * 16 + 8
            let lx = left + pw - lw - 8, ly = top + 8
            s += "<rect x=\"\(f(lx))\" y=\"\(f(ly))\" width=\"\(f(lw))\" height=\"\(f(lh))\" fill=\"#fff\" fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n"
            for (i, one) in series.enumerated() {
                let y = ly + 12 + Double(i) * 16
                s += "<line x1=\"\(f(lx + 6))\" y1=\"\(f(y))\" x2=\"\(f(lx + 24))\" y2=\"\(f(y))\" stroke=\"\(color(i))\" stroke-width=\"2.5\"/>\n"
                s += "<text x=\"\(f(lx + 30))\" y=\"\(f(y + 4))\">\(esc(one.name))</text>\n"
            }
        }
        return s + "</svg>\n"
    }

    /// A heat map of `values[row][column]` on a viridis-like scale with a colour bar. Rows may be ragged
    /// (missing cells are left blank); non-finite cells are grey. Values are printed when cells are >= 28 px.
    public static func heatMap(title: String, rowLabel: String, columnLabel: String, values: [[Double]],
                               rowNames: [String]? = nil, columnNames: [String]? = nil,
                               cellSize: Int = 22) -> String {
        let rows = values.count, cols = values.map(\.count).max() ?? 0
        let finite = values.joined().filter(usable)
        guard rows > 0, cols > 0 else { return noData(title, 400, 200) }
        let lo = finite.min() ?? 0, hi = finite.max() ?? 0
        let cs = Double(min(max(cellSize, 1), 400))
        let rNames = (0..<rows).map { $0 < (rowNames?.count ?? 0) ? rowNames![$0] : String($0) }
        let cNames = (0..<cols).map { $0 < (columnNames?.count ?? 0) ? columnNames![$0] : String($0) }

        // Label every n-th row/column (n in 1, 2, 5, 10, …) so labels never overlap when cells are small.
        let colChars = Double(cNames.map(\.count).max() ?? 1)
        let colEvery = labelStride(cs, colChars * charWidth + 6), rowEvery = labelStride(cs, 13)
        let left = 26 + Double(rNames.map(\.count).max() ?? 1) * charWidth + 8, top = 44.0
        let gw = Double(cols) * cs, gh = Double(rows) * cs
        let barX = left + gw + 16, barH = max(gh, 80)
        let minText = label(lo, step: abs(hi - lo) / 100), maxText = label(hi, step: abs(hi - lo) / 100)
        let w = max(barX + 12 + 8 + Double(max(minText.count, maxText.count)) * charWidth + 12,
                    Double(title.count) * 9 + 40)
        let h = top + max(gh, barH) + 20 + 30

        var s = header(w, h, title)
        for (r, row) in values.enumerated() {
            for (c, v) in row.enumerated() {
                let x = left + Double(c) * cs, y = top + Double(r) * cs
                let t = hi > lo ? (v - lo) / (hi - lo) : 0.5
                let fill = usable(v) ? viridisColor(t) : "#cccccc"
                s += "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(cs))\" height=\"\(f(cs))\" fill=\"\(fill)\" stroke=\"#fff\" stroke-width=\"0.5\">"
                s += "<title>\(esc(rNames[r])), \(esc(cNames[c])): \(usable(v) ? compact(v) : "n/a")</title></rect>\n"
                if cs >= 28 && usable(v) {
                    // Dark text on the light (high) end of the scale, white on the dark end.
                    let ink = t > 0.6 ? "#000" : "#fff"
                    s += "<text x=\"\(f(x + cs / 2))\" y=\"\(f(y + cs / 2 + 3.5))\" text-anchor=\"middle\" font-size=\"10\" fill=\"\(ink)\">\(esc(compact(v)))</text>\n"
                }
            }
        }
        for r in stride(from: 0, to: rows, by: rowEvery) {
            s += "<text x=\"\(f(left - 5))\" y=\"\(f(top + (Double(r) + 0.5) * cs + 4))\" text-anchor=\"end\">\(esc(rNames[r]))</text>\n"
        }
        for c in stride(from: 0, to: cols, by: colEvery) {
            s += "<text x=\"\(f(left + (Double(c) + 0.5) * cs))\" y=\"\(f(top + gh + 14))\" text-anchor=\"middle\">\(esc(cNames[c]))</text>\n"
        }
        let cy = f(top + gh / 2)
        s += "<text x=\"14\" y=\"\(cy)\" transform=\"rotate(-90 14 \(cy))\" text-anchor=\"middle\" font-size=\"12\">\(esc(rowLabel))</text>\n"
        s += "<text x=\"\(f(left + gw / 2))\" y=\"\(f(h - 12))\" text-anchor=\"middle\" font-size=\"12\">\(esc(columnLabel))</text>\n"

        // Colour bar: a vertical gradient, max at the top.
        s += "<defs><linearGradient id=\"scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">"
        for i in 0...8 { s += "<stop offset=\"\(f(Double(i) / 8))\" stop-color=\"\(viridisColor(Double(i) / 8))\"/>" }
        s += "</linearGradient></defs>\n"
        s += "<rect x=\"\(f(barX))\" y=\"\(f(top))\" width=\"12\" height=\"\(f(barH))\" fill=\"url(#scale)\" stroke=\"#444\" stroke-width=\"0.5\"/>\n"
        s += "<text x=\"\(f(barX + 18))\" y=\"\(f(top + 9))\">\(esc(maxText))</text>\n"
        s += "<text x=\"\(f(barX + 18))\" y=\"\(f(top + barH))\">\(esc(minText))</text>\n"
        return s + "</svg>\n"
    }

    /// Writes `svg` to `path` atomically: a temporary file in the same directory, then rename(2) over `path`,
    /// so a viewer never sees a half-written chart.
    public static func write(_ svg: String, to path: String) throws {
        try AtomicFile.write(Data(svg.utf8), to: path)
    }

    // MARK: - Axes

    struct Axis {
        var lo: Double, hi: Double, log: Bool  // lo/hi are log10 of the domain on a log axis
        var ticks: [(value: Double, label: String)]
        func fraction(_ v: Double) -> Double { ((log ? log10(v) : v) - lo) / (hi - lo) }
    }

    /// Extends [lo, hi] outward to multiples of a 1-2-5 step that gives about five ticks.
    static func linearAxis(_ lo: Double, _ hi: Double) -> Axis {
        var lo = lo, hi = hi
        // Constant (or denormal-width) data: open a window around it so the scale never divides by ~0.
        if hi - lo <= max(max(abs(lo), abs(hi)) * 1e-9, 1e-290) {
            let pad = abs(lo) < 1e-290 ? 1 : abs(lo) * 0.1
            lo -= pad; hi += pad
        }
        let raw = (hi - lo) / 4, mag = pow(10, (log10(raw)).rounded(.down)), m = raw / mag
        let step = (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * mag
        let first = (lo / step).rounded(.down), last = (hi / step).rounded(.up)
        guard step > 0, step.isFinite, last - first <= 20 else {
            return Axis(lo: lo, hi: hi, log: false, ticks: [lo, hi].map { ($0, label($0, step: hi - lo)) })
        }
        let values = stride(from: first, through: last, by: 1).map { $0 * step }
        return Axis(lo: first * step, hi: last * step, log: false, ticks: values.map { ($0, label($0, step: step)) })
    }

    /// Domain snapped to 1-2-5 × 10^n; ticks at those values, or at whole decades when that gives too many.
    static func logAxis(_ lo: Double, _ hi: Double) -> Axis {
        func down(_ v: Double) -> Double {
            let e = (log10(v) + 1e-12).rounded(.down), m = v / pow(10, e)
            return (m >= 5 - 1e-9 ? 5 : m >= 2 - 1e-9 ? 2 : 1) * pow(10, e)
        }
        func up(_ v: Double) -> Double {
            let e = (log10(v) - 1e-12).rounded(.down), m = v / pow(10, e)
            return (m <= 1 + 1e-9 ? 1 : m <= 2 + 1e-9 ? 2 : m <= 5 + 1e-9 ? 5 : 10) * pow(10, e)
        }
        var a = down(lo), b = up(hi)
        if a >= b { a = down(lo / 1.5); b = up(hi * 1.5) }
        let e0 = Int(log10(a).rounded(.down)), e1 = Int(log10(b).rounded(.up))
        var all: [(e: Int, v: Double)] = []
        for e in e0...e1 {
            for m in [1.0, 2, 5] where m * pow(10, Double(e)) >= a * (1 - 1e-9) && m * pow(10, Double(e)) <= b * (1 + 1e-9) {
                all.append((e, m * pow(10, Double(e))))
            }
        }
        if all.count > 7 {
            let decades = all.filter { abs($0.v / pow(10, Double($0.e)) - 1) < 1e-9 }
            let k = max(1, (decades.count + 5) / 6)
            all = decades.filter { $0.e % k == 0 }
        }
        return Axis(lo: log10(a), hi: log10(b), log: true, ticks: all.map { ($0.v, label($0.v, step: $0.v)) })
    }

    // MARK: - Helpers

    /// Finite and small enough that differences of two values cannot overflow to infinity.
    static func usable(_ v: Double) -> Bool { v.isFinite && abs(v) <= 1e300 }

    static func labelStride(_ cell: Double, _ needed: Double) -> Int {
        for n in [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] where Double(n) * cell >= needed { return n }
        return 1000
    }

    /// Tick label with just enough decimals for `step`; exponent form for very large or small magnitudes.
    static func label(_ v: Double, step: Double) -> String {
        if v == 0 { return "0" }
        if abs(v) >= 1e6 || abs(v) < 1e-4 { return String(format: "%.3g", v) }
        let decimals = step > 0 && step.isFinite ? min(max(0, Int(-log10(step).rounded(.down))), 8) : 3
        return String(format: "%.\(decimals)f", v)
    }

    static func compact(_ v: Double) -> String { v == 0 ? "0" : String(format: "%.2g", v) }

    static func f(_ v: Double) -> String {
        let s = String(format: "%.1f", v)
        return s == "-0.0" ? "0.0" : s
    }

    static func color(_ i: Int) -> String {
        if i < palette.count { return palette[i] }
        // Beyond the palette, step the hue by the golden angle so neighbours stay apart.
        return String(format: "hsl(%.0f,65%%,45%%)", (Double(i) * 137.508).truncatingRemainder(dividingBy: 360))
    }

    static func viridisColor(_ t: Double) -> String {
        let t = t.isFinite ? min(max(t, 0), 1) : 0.5
        let x = t * Double(viridis.count - 1), i = min(Int(x), viridis.count - 2), u = x - Double(i)
        let a = viridis[i], b = viridis[i + 1]
        func mix(_ p: Double, _ q: Double) -> Int { Int((p + (q - p) * u).rounded()) }
        return String(format: "#%02x%02x%02x", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }

    /// Escapes XML specials and drops control characters, which XML 1.0 forbids even when escaped.
    static func esc(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "\t", "\n", "\r": out += " "
            default: if u.value >= 0x20 && !(0xFFFE...0xFFFF).contains(u.value) { out.unicodeScalars.append(u) }
            }
        }
        return out
    }

    static func header(_ w: Double, _ h: Double, _ title: String) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(f(w))\" height=\"\(f(h))\" viewBox=\"0 0 \(f(w)) \(f(h))\" font-family=\"sans-serif\" font-size=\"11\" fill=\"#222\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n"
            + "<text x=\"\(f(w / 2))\" y=\"26\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">\(esc(title))</text>\n"
    }

    static func noData(_ title: String, _ w: Double, _ h: Double) -> String {
        header(w, h, title) + "<text x=\"\(f(w / 2))\" y=\"\(f(h / 2))\" text-anchor=\"middle\" font-size=\"14\" fill=\"#888\">no data</text>\n</svg>\n"
    }
}
