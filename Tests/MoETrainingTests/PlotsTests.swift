import Foundation
#if canImport(FoundationXML)
import FoundationXML  // XMLParser lives here on Linux
#endif
import Testing
@testable import MoETraining

@Suite struct PlotsTests {
    /// XMLParser rather than XMLDocument, which Foundation on Linux lacks.
    func isWellFormed(_ svg: String) -> Bool {
        XMLParser(data: Data(svg.utf8)).parse()
    }

    @Test func lineChartIsWellFormedWithTitleLegendAndTicks() {
        func decay(_ steps: [Int], _ scale: Double, _ floor: Double) -> [(x: Double, y: Double)] {
            steps.map { (x: Double($0), y: 5 * exp(-Double($0) / scale) + floor) }
        }
        let loss = PlotSeries(name: "train <loss>", points: decay(Array(0..<50), 20, 1))
        let val = PlotSeries(name: "val & test", points: decay(Array(stride(from: 0, to: 50, by: 10)), 25, 1.2))
        let svg = SVGPlot.lineChart(title: "Loss \"run\" <1>", xLabel: "step", yLabel: "loss", series: [loss, val])
        #expect(isWellFormed(svg))
        #expect(svg.contains("Loss &quot;run&quot; &lt;1&gt;"))
        #expect(svg.contains("train &lt;loss&gt;") && svg.contains("val &amp; test"))
        #expect(svg.contains("font-family=\"sans-serif\"") && svg.contains("fill=\"#fff\""))
        #expect(svg.components(separatedBy: "<path").count - 1 == 2)
        #expect(svg == SVGPlot.lineChart(title: "Loss \"run\" <1>", xLabel: "step", yLabel: "loss", series: [loss, val]))
    }

    @Test func niceTicksAreRoundAndCoverTheData() {
        let axis = SVGPlot.linearAxis(0.13, 9.7)
        #expect(axis.ticks.map(\.value) == [0, 2, 4, 6, 8, 10])
        #expect(axis.ticks.map(\.label) == ["0", "2", "4", "6", "8", "10"])
        let small = SVGPlot.linearAxis(0.0012, 0.0049)
        #expect(small.lo <= 0.0012 && small.hi >= 0.0049 && (3...8).contains(small.ticks.count))
        #expect(small.ticks.allSatisfy { !$0.label.contains("e") && Double($0.label) != nil })
    }

    @Test func nonFiniteAndEmptyInputsStillGiveValidSVG() {
        let noisy = PlotSeries(name: "noisy", points: [(0, 1), (1, .nan), (.infinity, 2), (2, -.infinity), (3, 4)])
        let svg = SVGPlot.lineChart(title: "t", xLabel: "x", yLabel: "y", series: [noisy])
        #expect(isWellFormed(svg) && !svg.contains("nan") && !svg.contains("inf"))
        for series in [[], [PlotSeries(name: "empty", points: [])], [PlotSeries(name: "nan", points: [(.nan, .nan)])]] {
            let empty = SVGPlot.lineChart(title: "empty", xLabel: "x", yLabel: "y", series: series)
            #expect(isWellFormed(empty) && empty.contains("no data"))
        }
        let single = SVGPlot.lineChart(title: "one", xLabel: "x", yLabel: "y", series: [PlotSeries(name: "p", points: [(3, 3)])])
        #expect(isWellFormed(single) && single.contains("<circle"))
    }

    @Test func constantSeriesGetsAnOpenAxis() {
        let flat = PlotSeries(name: "flat", points: (0..<10).map { (Double($0), 2.5) })
        let svg = SVGPlot.lineChart(title: "flat", xLabel: "x", yLabel: "y", series: [flat])
        #expect(isWellFormed(svg) && !svg.contains("nan"))
        let axis = SVGPlot.linearAxis(0, 0)
        #expect(axis.lo < 0 && axis.hi > 0 && axis.ticks.count >= 2)
    }

    @Test func logAxisSkipsNonPositiveValuesAndUsesPowersOfTen() {
        let s = PlotSeries(name: "lr", points: [(0, 0), (1, -1), (2, 1e-4), (3, 1e-2), (4, 1)])
        let svg = SVGPlot.lineChart(title: "lr", xLabel: "step", yLabel: "lr", series: [s], logY: true)
        #expect(isWellFormed(svg) && !svg.contains("nan") && !svg.contains("inf"))
        let axis = SVGPlot.logAxis(1e-4, 1)
        #expect(axis.ticks.map(\.label) == ["0.0001", "0.001", "0.01", "0.1", "1"])
        let narrow = SVGPlot.logAxis(2.1, 3.5)
        #expect(narrow.ticks.map(\.label) == ["2", "5"])
        let none = SVGPlot.lineChart(title: "neg", xLabel: "x", yLabel: "y", series: [PlotSeries(name: "n", points: [(0, -1), (1, 0)])], logY: true)
        #expect(isWellFormed(none) && none.contains("no data"))
    }

    @Test func heatMapHasCellsLabelsAndColourBar() {
        let values: [[Double]] = (0..<4).map { (r: Int) -> [Double] in (0..<6).map { Double(r * 6 + $0) / 23 } }
        let svg = SVGPlot.heatMap(title: "Expert load", rowLabel: "layer", columnLabel: "expert", values: values,
                                  rowNames: ["L0", "L1", "L2", "L3"], cellSize: 30)
        #expect(isWellFormed(svg) && svg.contains("Expert load") && svg.contains("L3") && svg.contains("linearGradient"))
        #expect(svg.components(separatedBy: "<title>").count - 1 == 24)
        #expect(svg.contains(">0.52</text>"))  // values printed when cells are >= 28 px
        let small = SVGPlot.heatMap(title: "t", rowLabel: "r", columnLabel: "c", values: values, cellSize: 10)
        #expect(isWellFormed(small) && !small.contains(">0.52</text>"))
    }

    @Test func heatMapLabelsEveryNthColumnWhenThereAreMany() {
        let values = [[Double]](repeating: (0..<128).map(Double.init), count: 2)
        let svg = SVGPlot.heatMap(title: "many", rowLabel: "r", columnLabel: "c", values: values, cellSize: 6)
        #expect(isWellFormed(svg))
        #expect(svg.contains(">120</text>") && !svg.contains(">121</text>"))
    }

    @Test func heatMapDegenerateInputs() {
        for values: [[Double]] in [[], [[]], [[1, 1], [1, 1]], [[.nan, .infinity]], [[1], [2, 3, 4]]] {
            let svg = SVGPlot.heatMap(title: "x", rowLabel: "r", columnLabel: "c", values: values, cellSize: 0)
            #expect(isWellFormed(svg) && !svg.contains("nan"))
        }
        #expect(SVGPlot.heatMap(title: "x", rowLabel: "r", columnLabel: "c", values: []).contains("no data"))
    }

    @Test func escapingDropsControlCharacters() {
        #expect(SVGPlot.esc("a<b>&\u{1}c") == "a&lt;b&gt;&amp;c")
        let svg = SVGPlot.lineChart(title: "bell\u{7}", xLabel: "x", yLabel: "y", series: [])
        #expect(isWellFormed(svg))
    }

    @Test func writeReplacesTheFileAtomically() throws {
        let dir = NSTemporaryDirectory() + "moe-plot-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/chart.svg"
        try SVGPlot.write("<svg/>", to: path)
        try SVGPlot.write("<svg>2</svg>", to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "<svg>2</svg>")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["chart.svg"])
        #expect(throws: (any Error).self) { try SVGPlot.write("<svg/>", to: dir + "/missing/chart.svg") }
    }
}
