import Foundation

/// Training text: `try TrainingText.documents(path: "stories.jsonl")` → one string per `{"text": …}` line;
/// any other file is a single document.
public enum TrainingText {
    public static func documents(path: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: path) else { throw DataError.fileNotFound(path) }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw DataError.unreadable(path: path, reason: error.localizedDescription)
        }
        var docs: [String] = []
        if path.hasSuffix(".jsonl") {
            for (index, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated()
            where line.contains(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D }) {
                let object: Any
                do { object = try JSONSerialization.jsonObject(with: Data(line)) } catch {
                    throw DataError.malformedLine(path: path, line: index + 1, reason: "not valid JSON")
                }
                guard let dict = object as? [String: Any] else {
                    throw DataError.malformedLine(path: path, line: index + 1, reason: "not a JSON object")
                }
                guard let text = dict["text"] as? String else {
                    throw DataError.malformedLine(path: path, line: index + 1, reason: "no string field \"text\"")
                }
                docs.append(text)
            }
        } else {
            guard let text = String(validating: data, as: UTF8.self) else { throw DataError.invalidUTF8(path: path) }
            docs = [text]
        }
        // Say which file is empty here; later the tokenizer only sees strings.
        guard docs.contains(where: { !$0.isEmpty }) else { throw DataError.emptyCorpus(path) }
        return docs
    }
}
