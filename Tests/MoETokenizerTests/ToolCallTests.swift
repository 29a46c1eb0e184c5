import Foundation
import Testing
@testable import MoETokenizer

/// Tool calls read back from the text of Qwen/Hermes, Mistral, DeepSeek and Llama 3 models.
@Suite struct ToolCallTests {
    typealias E = HarmonyParser.Event

    static func parse(_ text: String, _ format: ToolCallParser.Format, pieces size: Int = .max) -> [E] {
        var parser = ToolCallParser(format: format)
        let chars = Array(text)
        var events: [E] = []
        var at = 0
        while at < chars.count {
            events += parser.add(String(chars[at..<min(at + size, chars.count)]))
            at += size
        }
        return HarmonyParser.merged(events + parser.finish())
    }

    static let weather: [E] = [.toolCall(name: "get_weather"), .toolArguments(#"{"location":"Paris","unit":"celsius"}"#)]
    static let time: [E] = [.toolCall(name: "get_time"), .toolArguments(#"{"tz":"UTC"}"#)]

    @Test(arguments: [
        (ToolCallParser.Format.hermes, "Let me check.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}\n</tool_call>", true),
        (.hermes, "Let me check.<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n</parameter>\n<parameter=unit>\ncelsius\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_time>\n<parameter=tz>\nUTC\n</parameter>\n</function>\n</tool_call>", true),
        (.mistral, "Let me check.[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\", \"unit\": \"celsius\"}, \"id\": \"abcdefghi\"}, {\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}]", true),
        (.mistral, "Let me check.[TOOL_CALLS]get_weather[ARGS]{\"location\":\"Paris\",\"unit\":\"celsius\"}[TOOL_CALLS]get_time[ARGS]{\"tz\":\"UTC\"}", true),
        (.deepseek, "Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"location\": \"Paris\", \"unit\": \"celsius\"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{\"tz\": \"UTC\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>", true),
        (.deepseek, "Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"location\": \"Paris\", \"unit\": \"celsius\"}\n```<｜tool▁call▁end｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{\"tz\": \"UTC\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>", true),
        (.llama3, "{\"name\": \"get_weather\", \"parameters\": {\"location\": \"Paris\", \"unit\": \"celsius\"}}; {\"name\": \"get_time\", \"parameters\": {\"tz\": \"UTC\"}}", false),
        (.llama3, "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"location\": \"Paris\", \"unit\": \"celsius\"}}; {\"name\": \"get_time\", \"parameters\": {\"tz\": \"UTC\"}}", false),
    ])
    func callsInPiecesOfAnySize(_ format: ToolCallParser.Format, _ text: String, _ lead: Bool) {
        let expected: [E] = (lead ? [.content("Let me check.")] : []) + Self.weather + Self.time
        for size in [1, 2, 3, 7, 1000] { #expect(Self.parse(text, format, pieces: size) == expected, "\(format) pieces of \(size)") }
    }

    @Test func plainTextAndBrokenCallsStayContent() {
        for format in ToolCallParser.Format.allCases {
            for text in ["Hello, world! <tool and [TOOL and {braces}", "Just text.\nTwo lines."] where !(format == .llama3 && text.hasPrefix("{")) {
                #expect(Self.parse(text, format, pieces: 2) == [.content(text)], "\(format): \(text)")
            }
        }
        #expect(Self.parse("A<tool_call>\n{\"name\": oops}\n</tool_call>B", .hermes) == [.content("A<tool_call>\n{\"name\": oops}\n</tool_call>B")])
        #expect(Self.parse("{\"answer\": 42}", .llama3) == [.content("{\"answer\": 42}")])
        #expect(Self.parse("Checking<tool_call>\n{\"name\": \"f\", \"argu", .hermes) == [.content("Checking<tool_call>\n{\"name\": \"f\", \"argu")])
    }

    @Test func formatsAreDetectedFromTemplates() {
        #expect(ToolCallParser.Format.detect(template: "{{ '<tool_call>' }}") == .hermes)
        #expect(ToolCallParser.Format.detect(template: "[TOOL_CALLS]") == .mistral)
        #expect(ToolCallParser.Format.detect(template: "<｜tool▁calls▁begin｜>") == .deepseek)
        #expect(ToolCallParser.Format.detect(template: "<|start_header_id|> \"parameters\"") == .llama3)
        #expect(ToolCallParser.Format.detect(template: "<|channel|> <tool_call>") == nil)
        #expect(ToolCallParser.Format.detect(template: "{{ messages }}") == nil)
    }

    /// What each family's own template renders for an assistant turn with two calls, read back as those calls.
    @Test(.enabled(if: ChatFixtures.enabled, "needs MOE_CHAT_FIXTURES_DIR or the venv of scripts/setup-test-deps.sh"))
    func readsBackWhatTheTemplatesRender() throws {
        let tools = ChatFixtures.conversation("tools").tools
        func call(_ name: String, _ arguments: TemplateValue, id: String) -> TemplateValue {
            ["id": .string(id), "type": "function", "function": ["name": .string(name), "arguments": arguments]]
        }
        let calls: [TemplateValue] = [call("get_weather", ["location": "Paris", "unit": "celsius"], id: "abcdefgh1"),
                                      call("get_time", ["tz": "UTC"], id: "abcdefgh2")]
        let user: TemplateValue = ["role": "user", "content": "Weather and time in Paris?"]
        let endsOfTurn = ["<|im_end|>\n", "<|im_end|>", "</s>", "<|eot_id|>", "<｜end▁of▁sentence｜>"]
        let templates: [(String, ToolCallParser.Format)] = [
            ("Qwen-Qwen2.5-7B-Instruct.jinja", .hermes), ("Qwen-Qwen3-0.6B.jinja", .hermes), ("Qwen-QwQ-32B.jinja", .hermes),
            ("Qwen3.5-4B.jinja", .hermes), ("Qwen3-Coder.jinja", .hermes), ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", .hermes),
            ("mistralai-Mistral-Nemo-Instruct-2407.jinja", .mistral), ("Mistral-Small-3.2-24B-Instruct-2506.jinja", .mistral),
            ("deepseek-ai-DeepSeek-V3.1.jinja", .deepseek), ("meta-llama-Llama-3.1-8B-Instruct.jinja", .llama3),
            ("meta-llama-Llama-3.3-70B-Instruct.jinja", .llama3),
        ]
        for (name, format) in templates {
            let template = try ChatFixtures.template(name)
            #expect(ToolCallParser.Format.detect(template: template.source) == format, "\(name)")
            // Llama 3 writes one call per turn.
            let turnCalls = format == .llama3 ? [calls[0]] : calls
            let turn: TemplateValue = ["role": "assistant", "content": "", "tool_calls": .array(turnCalls)]
            let extra: [String: TemplateValue] = ["bos_token": "<s>", "eos_token": "</s>"]
            let prompt = try template.render(messages: [user], addGenerationPrompt: true, tools: tools, extra: extra)
            let whole = try template.render(messages: [user, turn], addGenerationPrompt: false, tools: tools, extra: extra)
            // The turn after what it shares with the prompt (QwQ's prompt ends in an opened <think> the turn drops).
            var shared = zip(prompt.unicodeScalars, whole.unicodeScalars).prefix { $0 == $1 }.count
            if shared < prompt.unicodeScalars.count {
                // Back to the line the two part at.
                shared = (Array(prompt.unicodeScalars.prefix(shared)).lastIndex(of: "\n") ?? -1) + 1
                #expect(shared >= prompt.unicodeScalars.count - 16, "\(name): the turn does not extend the prompt")
            }
            var answer = String(String.UnicodeScalarView(whole.unicodeScalars.dropFirst(shared)))
            // Qwen3 writes an empty reasoning block first (the reasoning parser's, not this one's).
            if let r = answer.range(of: "</think>") { answer = String(answer[r.upperBound...]).trimmingCharacters(in: .newlines) }
            for end in endsOfTurn where answer.hasSuffix(end) { answer.removeLast(end.count); break }
            let expected = format == .llama3 ? Self.weather : Self.weather + Self.time
            let got = Self.parse(answer, format, pieces: 3).filter { $0 != .content("") && $0 != .content("\n") }
            #expect(Self.normalized(got) == Self.normalized(expected), "\(name): \(answer.debugDescription)")
        }
    }

    /// Arguments compared as JSON values (templates space them differently).
    static func normalized(_ events: [E]) -> [String] {
        events.map {
            if case .toolArguments(let a) = $0, let v = try? TemplateValue(decoding: Data(a.utf8)) { return "args " + v.compactJSON }
            return "\($0)"
        }
    }
}
