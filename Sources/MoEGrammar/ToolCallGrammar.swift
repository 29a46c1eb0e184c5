import MoETokenizer

/// A grammar for tool calls in a model family's own syntax (`ToolCallParser.Format`), each call's arguments
/// following its tool's `parameters` schema: `tool_choice` "required" or a named function, enforced by
/// constrained decoding, so that the call is always one of the tools with arguments its schema accepts.
public enum ToolCallGrammar {
    /// One tool: its name and its parameters' JSON Schema (`{}` when it declares none).
    public struct Tool: Sendable {
        public var name: String
        public var parameters: TemplateValue
        public init(name: String, parameters: TemplateValue?) {
            self.name = name
            self.parameters = parameters ?? .object([])
        }
    }

    /// GBNF for one call of one of `tools` (several in a row when `parallel`, where the syntax has room for
    /// them). `template`: the chat template's text (Mistral's newer syntax is told from it).
    public static func gbnf(format: ToolCallParser.Format, tools: [Tool], parallel: Bool, template: String) throws(GrammarError) -> String {
        guard !tools.isEmpty else { throw GrammarError("no tools to call", keyword: "tools") }
        if format == .hermes && template.contains("<function=") {
            throw GrammarError("a required or named tool call is not supported for this template's XML call syntax yet", keyword: "tool_choice")
        }
        func lit(_ s: String) -> String { "\"" + RegexGrammar.escapeLiteral(s) + "\"" }
        func name(_ t: Tool) -> String { lit(TemplateValue.string(t.name).compactJSON) }
        return try JSONSchemaGrammar.gbnf(schemas: tools.map(\.parameters)) { args in
            func each(_ call: (Tool, String) -> String) -> String {
                "(" + zip(tools, args).map { call($0, $1) }.joined(separator: " | ") + ")"
            }
            switch format {
            case .hermes:
                let call = each { t, a in lit("<tool_call>\n{\"name\": ") + " " + name(t) + " " + lit(", \"arguments\": ") + " " + a + " " + lit("}\n</tool_call>") }
                return parallel ? call + " (" + lit("\n") + " " + call + ")*" : call
            case .mistral where template.contains("[ARGS]"):
                let call = each { t, a in lit("[TOOL_CALLS]" + t.name + "[ARGS]") + " " + a }
                return parallel ? call + "+" : call
            case .mistral:
                let call = each { t, a in lit("{\"name\": ") + " " + name(t) + " " + lit(", \"arguments\": ") + " " + a + " " + lit("}") }
                return lit("[TOOL_CALLS][") + " " + call + (parallel ? " (" + lit(", ") + " " + call + ")*" : "") + " " + lit("]")
            case .deepseek:
                let call = each { t, a in lit("<｜tool▁call▁begin｜>" + t.name + "<｜tool▁sep｜>") + " " + a + " " + lit("<｜tool▁call▁end｜>") }
                return lit("<｜tool▁calls▁begin｜>") + " " + call + (parallel ? "+" : "") + " " + lit("<｜tool▁calls▁end｜>")
            case .llama3:
                return each { t, a in lit("{\"name\": ") + " " + name(t) + " " + lit(", \"parameters\": ") + " " + a + " " + lit("}") }
            }
        }
    }
}
