import Foundation
import Testing
@testable import MoETokenizer

/// Real chat templates and reference renders made by scripts/make_chat_fixtures.py: the templates are
/// llama.cpp's verbatim collection, fetched (not committed) from the llama-cpp-python 0.3.36 sdist
/// (`vendor/llama.cpp/models/templates/`), rendered with transformers' own apply_chat_template machinery.
///
/// - `MOE_CHAT_FIXTURES_DIR` set (CI: .ci/run): that directory (`expected.json` + the `*.jinja` used) as is;
/// - else the script runs with `${MOE_TEST_VENV:-~/.cache/moe-test-venv}/bin/python` (made by
///   scripts/setup-test-deps.sh) into `$TMPDIR/moe-chat-fixtures-<hash of the script>`, reused while that exists
///   (the sdist is fetched once into `~/.cache/moe-chat-templates`; ~10 s the first time, ~2 s after);
/// - else the tests that need it are skipped (a line says why) — except with `CI` set, where they fail.
/// The other tests (built-in ChatML, parse and runtime errors, jinja semantics) need none of this.
enum ChatFixtures {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let script = repo.appendingPathComponent("scripts/make_chat_fixtures.py")

    static let references = PythonReferences(name: "moe-chat-fixtures", environmentVariable: "MOE_CHAT_FIXTURES_DIR",
                                             script: script, marker: "expected.json")
    static let enabled = references.enabled
    /// The directory holding `expected.json` and the templates it names.
    static let directory = references.directory()

    struct Case: Sendable, CustomTestStringConvertible {
        var template: String
        var conversation: String
        var addGenerationPrompt: Bool
        var extra: [String: TemplateValue]
        var output: String?
        var error: String?
        var errorType: String?
        var testDescription: String { "\(template) / \(conversation) agp=\(addGenerationPrompt) \(extra.keys.sorted())" }
    }

    /// expected.json; `.null` when the directory is unavailable (the tests that need it then fail or are skipped).
    static let document: TemplateValue = {
        guard enabled, case .success(let dir) = directory,
              let data = try? Data(contentsOf: dir.appendingPathComponent("expected.json")) else { return .null }
        return (try? TemplateValue(decoding: data)) ?? .null
    }()

    /// The directory, or a thrown error saying why there is none (or its expected.json does not parse).
    static func fixturesDirectory() throws -> URL {
        let dir = try directory.get()
        if document == .null { throw ChatFixturesError("\(dir.path)/expected.json is missing or does not parse") }
        return dir
    }

    static let cases: [Case] = {
        guard case .array(let items)? = document["cases"] else { return [] }
        return items.map { c in
            var extra: [String: TemplateValue] = [:]
            if case .object(let e)? = c["extra"] { for x in e { extra[x.key] = x.value } }
            func s(_ k: String) -> String? { if case .string(let v)? = c[k] { return v }; return nil }
            return Case(template: s("template")!, conversation: s("conversation")!,
                        addGenerationPrompt: c["add_generation_prompt"] == .bool(true), extra: extra,
                        output: s("output"), error: s("error"), errorType: s("error_type"))
        }
    }()

    static var templateNames: [String] { Array(Set(cases.map(\.template))).sorted() }

    static func conversation(_ name: String) -> (messages: [TemplateValue], tools: [TemplateValue]?) {
        guard let c = document["conversations"]?[name], case .array(let m)? = c["messages"] else { fatalError("bad fixture") }
        var tools: [TemplateValue]? = nil
        if case .array(let t)? = c["tools"] { tools = t }
        return (m, tools)
    }

    /// The wall-clock time the fixtures were rendered at (strftime_now), in local time like Python's datetime.now().
    static let now: Date = {
        guard case .string(let s)? = document["now"] else { return Date() }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone.current
        f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        return f.date(from: s)!
    }()

    static func template(_ name: String) throws -> ChatTemplate {
        try ChatTemplate(String(contentsOf: fixturesDirectory().appendingPathComponent(name), encoding: .utf8))
    }
}

typealias ChatFixturesError = ReferenceError

private let needsRealTemplates = ConditionTrait.enabled(if: ChatFixtures.enabled,
    "needs MOE_CHAT_FIXTURES_DIR or the venv of scripts/setup-test-deps.sh")

@Suite struct ChatTemplateTests {
    @Test(needsRealTemplates, arguments: ChatFixtures.templateNames)
    func rendersLikeTransformers(templateName: String) throws {
        let template = try ChatFixtures.template(templateName)
        let cases = ChatFixtures.cases.filter { $0.template == templateName }
        #expect(!cases.isEmpty)
        for c in cases {
            let conv = ChatFixtures.conversation(c.conversation)
            let result = Result {
                try template.render(messages: conv.messages, addGenerationPrompt: c.addGenerationPrompt, tools: conv.tools,
                                    extra: c.extra, now: ChatFixtures.now)
            }
            switch (result, c.output) {
            case (.success(let got), let want?):
                #expect(got == want, "\(c.testDescription)")
            case (.failure(let e), let want?):
                Issue.record("\(c.testDescription): threw \(e), expected:\n\(want)")
            case (.success(let got), nil):
                Issue.record("\(c.testDescription): rendered, but transformers raised \(c.errorType ?? "") \(c.error ?? ""):\n\(got)")
            case (.failure(let e), nil):
                // raise_exception messages must match exactly; other Python errors only need to be errors.
                if c.errorType == "TemplateError" { #expect(e as? ChatTemplateError == .raised(c.error ?? ""), "\(c.testDescription)") }
            }
        }
    }

    @Test(needsRealTemplates) func fixturesCoverTheMainFamilies() throws {
        _ = try ChatFixtures.fixturesDirectory()   // fails here (with the reason) when the references could not be made
        let names = ChatFixtures.templateNames.joined(separator: " ")
        for family in ["Qwen2.5", "Qwen3", "QwQ", "DeepSeek-R1", "DeepSeek-V3", "Mistral", "Llama-3", "gpt-oss"] {
            #expect(names.contains(family), "no fixture for \(family)")
        }
        #expect(ChatFixtures.cases.count > 200)
    }

    @Test(needsRealTemplates) func chatMLMatchesQwen25() throws {
        let qwen = try ChatFixtures.template("Qwen-Qwen2.5-7B-Instruct.jinja")
        for name in ["system_user", "user_only", "multi_turn", "ends_with_assistant", "tools", "tool_call_empty_content", "unicode"] {
            let conv = ChatFixtures.conversation(name)
            for agp in [true, false] {
                let a = try ChatTemplate.chatML.render(messages: conv.messages, addGenerationPrompt: agp, tools: conv.tools)
                let b = try qwen.render(messages: conv.messages, addGenerationPrompt: agp, tools: conv.tools)
                #expect(a == b, "\(name) agp=\(agp)")
            }
        }
    }

    /// Offline: the built-in ChatML against Qwen2.5-7B-Instruct's template as transformers renders it (strings
    /// copied from scripts/make_chat_fixtures.py's output; chatMLMatchesQwen25 checks all conversations).
    @Test func chatMLRendersQwen25Layout() throws {
        let msgs = [ChatMessage(role: "user", content: "Hi")]
        #expect(try ChatTemplate.chatML.render(messages: msgs, addGenerationPrompt: true) ==
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        let systemUser = [ChatMessage(role: "system", content: "You are a terse assistant."),
                          ChatMessage(role: "user", content: "What is 2 + 2?")]
        #expect(try ChatTemplate.chatML.render(messages: systemUser, addGenerationPrompt: true) ==
            "<|im_start|>system\nYou are a terse assistant.<|im_end|>\n<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n")
        let multiTurn = [ChatMessage(role: "system", content: "You are a helpful assistant."),
                         ChatMessage(role: "user", content: "Name a prime number."),
                         ChatMessage(role: "assistant", content: "7"),
                         ChatMessage(role: "user", content: "And another one?\nOnly the number, please.")]
        #expect(try ChatTemplate.chatML.render(messages: multiTurn, addGenerationPrompt: true) ==
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nName a prime number.<|im_end|>\n<|im_start|>assistant\n7<|im_end|>\n<|im_start|>user\nAnd another one?\nOnly the number, please.<|im_end|>\n<|im_start|>assistant\n")
        #expect(try ChatTemplate.chatML.render(messages: multiTurn, addGenerationPrompt: false) ==
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nName a prime number.<|im_end|>\n<|im_start|>assistant\n7<|im_end|>\n<|im_start|>user\nAnd another one?\nOnly the number, please.<|im_end|>\n")
    }

    @Test(arguments: [
        "{% extends 'base.html' %}",
        "{% include 'x.jinja' %}",
        "{% import 'm' as m %}",
        "{% block body %}x{% endblock %}",
        "{{ messages | nosuchfilter }}",
        "{{ x is nosuchtest }}",
        "{% frobnicate %}",
        "{% if x %}unterminated",
        "{{ 'abc' ",
        "{% for x in y recursive %}{% endfor %}",
        "{% do x.append(1) %}",
    ])
    func unsupportedSyntaxFailsAtParse(source: String) {
        #expect(throws: ChatTemplateError.self) { _ = try ChatTemplate(source) }
    }

    @Test func runtimeErrorsAreClear() throws {
        // Unknown filter inside an if: jinja2 defers the error to when it runs.
        let t = try ChatTemplate("{% if add_generation_prompt %}{{ x | from_json }}{% endif %}ok")
        #expect(try t.render(messages: [], addGenerationPrompt: false) == "ok")
        #expect(throws: ChatTemplateError.self) { try t.render(messages: [], addGenerationPrompt: true) }
        // Sandbox: lists are immutable.
        let app = try ChatTemplate("{% set l = [] %}{{ l.append(1) }}")
        #expect(throws: ChatTemplateError.self) { try app.render(messages: [], addGenerationPrompt: false) }
        // Attribute of undefined is an error (jinja2's default Undefined); printing undefined is empty.
        let u = try ChatTemplate("[{{ nothing }}]{{ nothing.attr }}")
        #expect(throws: ChatTemplateError.self) { try u.render(messages: [], addGenerationPrompt: false) }
        let r = try ChatTemplate("{{ raise_exception('nope: ' ~ 3) }}")
        #expect(throws: ChatTemplateError.raised("nope: 3")) { try r.render(messages: [], addGenerationPrompt: false) }
    }

    /// What the parser fuzzer found or would: a macro calling itself without end, nesting a thousand deep, and
    /// repetitions of gigabytes are errors, not a stack overflow or an allocation that kills the process.
    @Test func hostileTemplatesAreErrors() throws {
        func render(_ s: String) throws -> String { try ChatTemplate(s).render(messages: [], addGenerationPrompt: false) }
        #expect { try render("{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}") } throws: { "\($0)".contains("deeper than 64") }
        #expect(try render("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(20) }}")
                == (1...20).reversed().map(String.init).joined())   // recursion that ends is fine
        #expect(throws: ChatTemplateError.self) { try render("{{ " + String(repeating: "(", count: 1000) + "1" + String(repeating: ")", count: 1000) + " }}") }
        #expect(throws: ChatTemplateError.self) { try render("{{ 1" + String(repeating: " + 1", count: 10_000) + " }}") }
        #expect(throws: ChatTemplateError.self) { try render("{{ " + String(repeating: "not ", count: 1000) + "x }}") }
        #expect(throws: ChatTemplateError.self) { try render("{{ x" + String(repeating: "|trim", count: 1000) + " }}") }
        #expect(throws: ChatTemplateError.self) { try render(String(repeating: "{% if true %}", count: 1000) + String(repeating: "{% endif %}", count: 1000)) }
        #expect(try render("{{ " + String(repeating: "(", count: 20) + "1" + String(repeating: ")", count: 20) + " }}") == "1")
        #expect(throws: ChatTemplateError.self) { try render("{{ 'x' * 1000000000000 }}") }
        #expect(throws: ChatTemplateError.self) { try render("{{ [1] * 9223372036854775807 }}") }
        #expect(throws: ChatTemplateError.self) { try render("{{ 'x' | center(1000000000000) }}") }
        #expect(try render("{{ 'ab' * 3 }}{{ 'x' | center(5) }}") == "ababab  x  ")
    }

    @Test func jinjaSemantics() throws {
        func r(_ s: String, _ extra: [String: TemplateValue] = [:]) throws -> String {
            try ChatTemplate(s).render(messages: [], addGenerationPrompt: false, extra: extra)
        }
        #expect(try r("{% for x in [1,2] %}{% if loop.first %}{% set y = 5 %}{% endif %}{{ y }}|{% endfor %}") == "5||")
        #expect(try r("{% set ns = namespace(n=0) %}{% for x in 'abc' %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}") == "3")
        #expect(try r("{{ none }}{{ 1/2 }}{{ [1,\"a\",none,1.5] }}{{ {\"a\":1} }}{{ (1,2) }}") == "None0.5[1, 'a', None, 1.5]{'a': 1}(1, 2)")
        #expect(try r("{{ 1e20 }} {{ 1e15 }} {{ 0.1+0.2 }} {{ 3//2 }} {{ -7//2 }} {{ -7%3 }} {{ 2**10 }}") == "1e+20 1000000000000000.0 0.30000000000000004 1 -4 2 1024")
        #expect(try r("{{ 'a{}b{x}'.format(1, x=2) }}{{ [3,1,2]|sort|list }}{{ 'ab'|reverse }}") == "a1b2[1, 2, 3]ba")
        #expect(try r("{{ x|tojson }}|{{ x|tojson(indent=2) }}", ["x": ["k": "é\"\n", "l": [1, 2.5, true, nil]]]) ==
            "{\"k\": \"é\\\"\\n\", \"l\": [1, 2.5, true, null]}|{\n  \"k\": \"é\\\"\\n\",\n  \"l\": [\n    1,\n    2.5,\n    true,\n    null\n  ]\n}")
        #expect(try r("  {% if true %}\n  x\n  {% endif %}\n") == "  x\n")
        #expect(try r("{{ 'a b  c'.split() }}{{ ' x '.strip() }}{{ 'abc'[::-1] }}{{ 'abc'[1:] }}") == "['a', 'b', 'c']xcbabc")
        #expect(try r("{% macro m(a, b='d') %}{{ a }}-{{ b }}{% endmacro %}{{ m(1) }} {{ m(1, b=2) }}") == "1-d 1-2")
        #expect(try r("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", ["d": ["b": 1, "a": 2]]) == "b=1;a=2;")
        #expect(try r("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% else %}none{% endfor %}") == "2242")
        #expect(try r("{% for x in [] %}{{ x }}{% else %}none{% endfor %}") == "none")
        #expect(try r("{% for x in [1,2,3] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}") == "1")
        #expect(try r("{{ [{'a': 1}, {'a': 2}, {'b': 3}] | selectattr('a', 'defined') | map(attribute='a') | join(',') }}") == "1,2")
        #expect(try r("{% set x %}in{{ 1 }}{% endset %}{{ x | upper }}") == "IN1")
    }
}
