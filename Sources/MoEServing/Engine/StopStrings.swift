/// Finds stop strings in generated text as it streams: text that might be the start of a stop string is held
/// back until the next piece decides, so a client never sees part of a stop string (as vLLM and llama.cpp do).
///
/// ```swift
/// var stops = StopStrings(["\n\n"])
/// stops.add("Hello\n")     // (text: "Hello", stopped: false): "\n" is held back
/// stops.add("\nmore")      // (text: "", stopped: true)
/// ```
struct StopStrings {
    let strings: [String]
    private var held = ""
    private(set) var stopped = false

    init(_ strings: [String]) { self.strings = strings }

    /// The text that can be shown now, and whether a stop string was found (the text ends before it).
    mutating func add(_ piece: String) -> (text: String, stopped: Bool) {
        guard !stopped else { return ("", true) }
        guard !strings.isEmpty else { return (piece, false) }
        held += piece
        // The earliest complete stop string wins.
        var cut: String.Index? = nil
        for s in strings {
            if let r = held.range(of: s), cut == nil || r.lowerBound < cut! { cut = r.lowerBound }
        }
        if let cut {
            stopped = true
            let text = String(held[..<cut])
            held = ""
            return (text, true)
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        var keep = 0
        for s in strings {
            var n = min(s.count - 1, held.count)
            while n > keep {
                if held.hasSuffix(s.prefix(n)) { keep = n; break }
                n -= 1
            }
        }
        let text = String(held.dropLast(keep))
        held = String(held.suffix(keep))
        return (text, false)
    }

    /// What is still held back when generation ends without a stop string.
    mutating func flush() -> String {
        defer { held = "" }
        return stopped ? "" : held
    }
}
