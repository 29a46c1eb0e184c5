import Foundation

/// A one-line progress bar on stderr:
///
///     reading   [##########..........]  48%  53.1/110.0 MB  12.4 MB/s  ETA 5s
///     merges    [####################] 100%  7741/7741  0.8s
///
/// On a terminal the line is redrawn in place (at most 10 times a second); elsewhere (a log file) a line is
/// printed every 10%. `update` is cheap when nothing is drawn. Callers with their own line (training: step, loss,
/// tokens/s) give it to `show`; `quiet` draws nothing.
public final class ProgressBar {
    public enum Unit: Sendable { case bytes, items }

    let label: String
    let unit: Unit
    let interactive: Bool
    let quiet: Bool
    let start = DispatchTime.now().uptimeNanoseconds
    var lastDraw: UInt64 = 0
    var lastDecile = -1
    var total = 0
    var done = 0
    var finished = false
    /// The last line `show` was given (what `finish` draws for such callers).
    var shown: String?

    /// Whether stderr is a terminal.
    public static var stderrIsTerminal: Bool { isatty(2) != 0 }

    public init(label: String = "", unit: Unit = .items, interactive: Bool = ProgressBar.stderrIsTerminal, quiet: Bool = false) {
        self.label = label
        self.unit = unit
        self.interactive = interactive
        self.quiet = quiet
    }

    public func update(done: Int, total: Int) {
        self.done = done
        self.total = total
        let tenth = total > 0 ? min(10, done * 10 / total) : 0
        if quiet || !due(tenth: tenth, last: done >= total) { return }
        draw(line(now: DispatchTime.now().uptimeNanoseconds), tenth: tenth)
    }

    /// Shows `text`, a line the caller composed, `fraction` of the way through; `force` prints it in a log file
    /// even within the same tenth (a validation result).
    public func show(_ text: String, fraction: Double, force: Bool = false) {
        shown = text
        let tenth = min(10, max(0, Int(fraction * 10)))
        if quiet || !(force || due(tenth: tenth, last: fraction >= 1)) { return }
        draw(text, tenth: tenth)
    }

    /// A terminal redraws at most 10 times a second (and at the end), a log file once a tenth.
    private func due(tenth: Int, last: Bool) -> Bool {
        interactive ? last || DispatchTime.now().uptimeNanoseconds - lastDraw >= 100_000_000 : tenth != lastDecile
    }

    private func draw(_ text: String, tenth: Int) {
        lastDraw = DispatchTime.now().uptimeNanoseconds
        lastDecile = tenth
        write(interactive ? "\r" + text + "\u{1B}[K" : text + "\n")
    }

    /// Draws the final state and ends the line.
    public func finish() {
        guard !finished, !quiet else { return }
        finished = true
        let text = shown ?? line(now: DispatchTime.now().uptimeNanoseconds)
        if interactive {
            write("\r" + text + "\u{1B}[K\n")
        } else if lastDecile != 10 && shown == nil {
            write(text + "\n")
        }
    }

    func line(now: UInt64) -> String {
        let elapsed = Double(now - start) / 1e9
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 0
        let width = 24
        let filled = Int(fraction * Double(width))
        var s = label.padding(toLength: max(label.count, 9), withPad: " ", startingAt: 0)
        s += " [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] "
        s += String(format: "%3d%%  ", Int(fraction * 100))
        switch unit {
        case .bytes:
            s += String(format: "%.1f/%.1f MB", Double(done) / 1e6, Double(total) / 1e6)
            if elapsed > 0.05 { s += String(format: "  %.1f MB/s", Double(done) / 1e6 / elapsed) }
        case .items:
            s += "\(done)/\(total)"
        }
        if done < total, done > 0, elapsed > 0.5 {
            s += "  ETA " + Self.duration(elapsed * Double(total - done) / Double(done))
        } else if done >= total {
            s += "  " + Self.duration(elapsed)
        }
        return s
    }

    /// `4.2s`, `37s`, `3m05s`, `1h02m`.
    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        if seconds < 10 { return String(format: "%.1fs", seconds) }
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s / 3600)h\(String(format: "%02d", s / 60 % 60))m"
    }

    func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
