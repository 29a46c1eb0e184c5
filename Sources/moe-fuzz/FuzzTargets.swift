import Foundation
import MoEFormats
import MoETokenizer
import MoETraining

/// The readers that take files from users, each fed arbitrary bytes. Any error they throw is a right answer;
/// a trap, a sanitizer report, a hang or a leak is a finding. libFuzzer drives `run` (built with
/// `-sanitize=fuzzer,address -D MOE_FUZZ` by scripts/fuzz_parsers.sh); the plain build replays files through it.
enum FuzzTarget: String, CaseIterable {
    case safetensors, gguf, config, tokenizer
    case chatTemplate = "chat-template"
    case jsonl

    /// File-based readers get the bytes through this process's own scratch file.
    static let scratch = NSTemporaryDirectory() + "moe-fuzz-\(getpid())"

    func run(_ data: Data) {
        switch self {
        case .safetensors:
            guard let file = try? SafeTensorsFile(path: Self.write(data, "safetensors")) else { return }
            // Every tensor's bytes must lie in the file: touch the first and last (AddressSanitizer watches).
            var sum: UInt8 = 0
            for t in file.tensors.values where t.byteCount > 0 {
                let bytes = t.pointer.assumingMemoryBound(to: UInt8.self)
                sum &+= bytes[0] &+ bytes[t.byteCount - 1]
            }
            blackHole(sum)
        case .gguf:
            guard let file = try? GGUFFile(path: Self.write(data, "gguf")) else { return }
            _ = try? file.string("general.architecture")
            _ = try? file.int("general.alignment")
            blackHole(file.tensors.reduce(0) { $0 &+ $1.elementCount })
        case .config:
            _ = try? ModelConfig(json: data)
        case .tokenizer:
            guard let tokenizer = try? Tokenizer(tokenizerJSON: data) else { return }
            let ids = tokenizer.encode("Hello, world! 123 ünïcödé 中文 <|im_start|>\n\t  end")
            _ = tokenizer.decode(ids + [0, 1, tokenizer.vocabSize - 1, tokenizer.vocabSize, -1])
            _ = tokenizer.encode(String(repeating: "ab ", count: 50), atMost: 8)
        case .chatTemplate:
            guard let source = String(data: data, encoding: .utf8), let template = try? ChatTemplate(source) else { return }
            _ = try? template.render(messages: [ChatMessage(role: "system", content: "Be brief."),
                                                ChatMessage(role: "user", content: "What is 2 + 3?"),
                                                ChatMessage(role: "assistant", content: "5"),
                                                ChatMessage(role: "user", content: "And 4 + 4?")],
                                     addGenerationPrompt: true)
        case .jsonl:
            let path = Self.write(data, "jsonl")
            _ = try? TrainingText.documents(path: path)
            _ = try? SFTData.conversations(path: path)
        }
    }

    private static func write(_ data: Data, _ suffix: String) -> String {
        let path = scratch + "." + suffix
        FileManager.default.createFile(atPath: path, contents: data)
        return path
    }
}

@inline(never) func blackHole<T>(_ value: T) { _ = value }

/// The target of a libFuzzer run, named by MOE_FUZZ_TARGET (libFuzzer's own command line takes the corpus).
let selectedTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["MOE_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        fatalError("MOE_FUZZ_TARGET must be one of \(FuzzTarget.allCases.map(\.rawValue)); got '\(name)'")
    }
    return target
}()

#if MOE_FUZZ
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ bytes: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selectedTarget.run(bytes.map { Data(bytes: $0, count: size) } ?? Data())
    return 0
}

/// libFuzzer's entry when the program keeps its own `main` (SwiftPM renames an executable's entry point).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt
#endif

/// Built with MOE_FUZZ: libFuzzer runs (`MOE_FUZZ_TARGET=gguf moe-fuzz CORPUS_DIR… -max_total_time=60`). Built
/// plainly: `moe-fuzz TARGET FILE|DIR…` runs each file (a directory: each file in it) through the target once —
/// the committed corpus and any input libFuzzer saved, replayed without the sanitizers.
@main struct FuzzMain {
    static func main() {
        #if MOE_FUZZ
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
        #else
        let args = CommandLine.arguments.dropFirst()
        guard let name = args.first, let target = FuzzTarget(rawValue: name) else {
            print("usage: moe-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE|DIR…")
            exit(2)
        }
        var count = 0
        for path in args.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                print("no such file: \(path)"); exit(2)
            }
            let files = isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                target.run(data)
                count += 1
            }
        }
        print("\(name): \(count) inputs replayed, no crash")
        #endif
    }
}
