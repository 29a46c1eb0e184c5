import Foundation

/// A Hugging Face chat template (a jinja2 program), rendered the way `transformers`' `apply_chat_template` does:
/// jinja2's ImmutableSandboxedEnvironment with `trim_blocks=True, lstrip_blocks=True`, the loopcontrols extension,
/// `raise_exception`, `strftime_now`, `namespace`, `dict`, and a `tojson` filter that is `json.dumps(...,
/// ensure_ascii=False)`. The supported subset covers the templates real models ship; anything else fails with a
/// `ChatTemplateError` (at init when it is visible in the syntax, otherwise when rendering reaches it).
public struct ChatTemplate: Sendable {
    public let source: String
    let nodes: [JNode]

    public init(_ source: String) throws {
        self.source = source
        var lexer = JinjaLexer(source)
        let tokens = try lexer.run()
        var parser = JinjaParser(tokens)
        nodes = try parser.parseTemplate()
    }

    /// Renders a conversation.
    /// - Parameters:
    ///   - messages: message objects (`role`, `content`, and optionally `tool_calls`, `reasoning_content`, ...).
    ///   - addGenerationPrompt: append the header that starts the assistant's turn.
    ///   - tools: JSON-schema tool definitions (passed to the template as `tools`; `none` when nil).
    ///   - documents: RAG documents (passed as `documents`; `none` when nil).
    ///   - extra: further template variables, e.g. `bos_token`, `eos_token`, `enable_thinking`.
    ///   - now: the time `strftime_now` reports.
    public func render(messages: [TemplateValue], addGenerationPrompt: Bool, tools: [TemplateValue]? = nil,
                       documents: [TemplateValue]? = nil, extra: [String: TemplateValue] = [:],
                       now: Date = Date()) throws -> String {
        var ctx: [String: JValue] = [:]
        for (k, v) in extra { ctx[k] = JValue(v) }
        ctx["messages"] = .list(try messages.map { m in
            guard case .object = m else { throw ChatTemplateError.badValue("Chat messages should be dicts, but got \(m)") }
            return JValue(ChatTemplate.aliasReasoning(m))
        })
        ctx["tools"] = tools.map { .list($0.map(JValue.init)) } ?? JValue.none
        ctx["documents"] = documents.map { .list($0.map(JValue.init)) } ?? JValue.none
        ctx["add_generation_prompt"] = .bool(addGenerationPrompt)
        let r = JinjaRenderer(context: ctx, now: now)
        defer { for s in r.macroScopes { s.vars.removeAll() } }   // macros close over their scope: break the cycle
        let root = JScope(parent: nil)
        var out = ""
        _ = try r.exec(nodes, root, &out)
        root.vars.removeAll()
        return out
    }

    public func render(messages: [ChatMessage], addGenerationPrompt: Bool, tools: [TemplateValue]? = nil,
                       extra: [String: TemplateValue] = [:], now: Date = Date()) throws -> String {
        try render(messages: messages.map(\.templateValue), addGenerationPrompt: addGenerationPrompt, tools: tools,
                   extra: extra, now: now)
    }

    /// transformers copies a message's reasoning (from `reasoning_content`, `thinking` or `reasoning`) into both
    /// `thinking` (placed first) and `reasoning_content` (placed last) before rendering.
    static func aliasReasoning(_ m: TemplateValue) -> TemplateValue {
        guard case .object(let entries) = m else { return m }
        var reasoning: TemplateValue? = nil
        for key in ["reasoning_content", "thinking", "reasoning"] {
            if let v = entries.first(where: { $0.key == key })?.value, v != .null { reasoning = v; break }
        }
        guard let reasoning else { return m }
        var out: [TemplateValue.TemplateEntry] = [.init("thinking", reasoning)]
        for e in entries {
            if let i = out.firstIndex(where: { $0.key == e.key }) { out[i].value = e.value } else { out.append(e) }
        }
        if let i = out.firstIndex(where: { $0.key == "reasoning_content" }) { out[i].value = reasoning } else { out.append(.init("reasoning_content", reasoning)) }
        return .object(out)
    }

    /// The Qwen2.5-style ChatML template (default system prompt, tool calls as `<tool_call>` JSON).
    public static let chatML: ChatTemplate = try! ChatTemplate(chatMLSource)

    public static let chatMLSource = #"""
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}

"""#
}
