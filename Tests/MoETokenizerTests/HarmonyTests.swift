import Foundation
import Testing
@testable import MoETokenizer

@Suite struct HarmonyTests {
    typealias E = HarmonyParser.Event

    static let outputs: [(String, [E])] = [
        ("<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Answer.",
         [.reasoning("Think."), .content("Answer.")]),
        ("<|channel|>final<|message|>Only this.", [.content("Only this.")]),
        // The recipient after the channel (gpt-oss's usual order) or before it (as the template renders calls).
        ("<|channel|>analysis<|message|>Call it.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"location\":\"Paris\"}",
         [.reasoning("Call it."), .toolCall(name: "get_weather"), .toolArguments("{\"location\":\"Paris\"}")]),
        (" to=functions.get_weather<|channel|>commentary json<|message|>{\"a\": 1}", [.toolCall(name: "get_weather"), .toolArguments("{\"a\": 1}")]),
        // Two calls in one turn; a built-in tool keeps its whole recipient.
        ("<|channel|>commentary to=functions.a<|message|>{}<|call|><|start|>assistant<|channel|>analysis to=browser.search<|message|>{\"q\":1}",
         [.toolCall(name: "a"), .toolArguments("{}"), .toolCall(name: "browser.search"), .toolArguments("{\"q\":1}")]),
        // Commentary to nobody is for the user; a next message without its <|start|> is read all the same.
        ("<|channel|>commentary<|message|>Working on it.<|end|><|channel|>final<|message|>Done.", [.content("Working on it.Done.")]),
        // Not harmony: plain text, a header ended by <|end|>, a header that never ends.
        ("Hello there.", [.content("Hello there.")]),
        ("Hello<|end|>world", [.content("Hello<|end|>world")]),
        (String(repeating: "x", count: 300), [.content(String(repeating: "x", count: 300))]),
        // A marker-like text inside a message stays text; an unfinished "<|" at the end is kept.
        ("<|channel|>final<|message|>a <|channel|> b <|", [.content("a <|channel|> b <|")]),
    ]

    @Test(arguments: outputs.indices)
    func parsesWholeOutputs(_ i: Int) {
        let (text, expected) = Self.outputs[i]
        #expect(HarmonyParser.parse(text) == expected, "\(text)")
    }

    /// Streaming: any split of the text into pieces gives the same events (markers split across pieces wait).
    @Test(arguments: outputs.indices)
    func piecesGiveTheSameEvents(_ i: Int) {
        let (text, expected) = Self.outputs[i]
        let chars = Array(text)
        for size in [1, 2, 3, 5, 7] {
            var parser = HarmonyParser()
            var events: [E] = []
            var at = 0
            while at < chars.count {
                events += parser.add(String(chars[at..<min(at + size, chars.count)]))
                at += size
            }
            events += parser.finish()
            #expect(HarmonyParser.merged(events) == expected, "pieces of \(size): \(text)")
        }
    }

    /// What gpt-oss's own template renders for an assistant turn, read back: its reasoning (kept in the last turn,
    /// and before a tool call), its answer, its tool call and arguments.
    @Test(.enabled(if: ChatFixtures.enabled, "needs MOE_CHAT_FIXTURES_DIR or the venv of scripts/setup-test-deps.sh"))
    func readsBackWhatTheTemplateRenders() throws {
        let template = try ChatFixtures.template("openai-gpt-oss-120b.jinja")
        let weather = ChatFixtures.conversation("tools").tools
        let call: TemplateValue = ["id": "call1", "type": "function",
                                   "function": ["name": "get_weather", "arguments": ["location": "Paris", "unit": "celsius"]]]
        let user: TemplateValue = ["role": "user", "content": "What's the weather in Paris?"]
        let turns: [(TemplateValue, [E])] = [
            (["role": "assistant", "content": "Sunny.", "thinking": "It is usually sunny."],
             [.reasoning("It is usually sunny."), .content("Sunny.")]),
            (["role": "assistant", "content": "Line one.\nLine two: <b>ok</b> 🚀"], [.content("Line one.\nLine two: <b>ok</b> 🚀")]),
            (["role": "assistant", "thinking": "I need the weather.", "tool_calls": [call]],
             [.reasoning("I need the weather."), .toolCall(name: "get_weather"),
              .toolArguments("{\"location\": \"Paris\", \"unit\": \"celsius\"}")]),
            (["role": "assistant", "tool_calls": [call]],
             [.toolCall(name: "get_weather"), .toolArguments("{\"location\": \"Paris\", \"unit\": \"celsius\"}")]),
        ]
        for effort in ["low", "medium", "high"] {
            for system: [TemplateValue] in [[], [["role": "developer", "content": "Be brief."]]] {
                for (turn, expected) in turns {
                    let before = system + [user]
                    let prompt = try template.render(messages: before, addGenerationPrompt: true, tools: weather,
                                                     extra: ["reasoning_effort": .string(effort)])
                    let whole = try template.render(messages: before + [turn], addGenerationPrompt: false, tools: weather,
                                                    extra: ["reasoning_effort": .string(effort)])
                    #expect(prompt.hasSuffix("<|start|>assistant") && whole.hasPrefix(prompt), "\(turn)")
                    #expect(prompt.contains("Reasoning: \(effort)"))
                    #expect(HarmonyParser.parse(String(whole.dropFirst(prompt.count))) == expected, "\(turn)")
                }
            }
        }
    }
}
