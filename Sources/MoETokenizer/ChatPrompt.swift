import Foundation

extension Tokenizer {
    /// The model's chat template (from tokenizer_config.json or chat_template.jinja), else the built-in ChatML.
    public func chatTemplateOrChatML() throws -> ChatTemplate {
        if let source = chatTemplate { return try ChatTemplate(source) }
        return .chatML
    }

    /// Renders a conversation with the chat template and encodes it, as `apply_chat_template(messages,
    /// tokenize=True)` does: the template writes the special tokens itself, so none are added.
    ///
    /// ```swift
    /// let ids = try tokenizer.encodeChat([ChatMessage(role: "user", content: "Hi!")])
    /// ```
    public func encodeChat(_ messages: [ChatMessage], addGenerationPrompt: Bool = true, tools: [TemplateValue]? = nil,
                           extra: [String: TemplateValue] = [:]) throws -> [Int] {
        try encodeChat(messages, addGenerationPrompt: addGenerationPrompt, tools: tools, extra: extra, atMost: .max)!
    }

    /// As `encodeChat(_:addGenerationPrompt:tools:extra:)`, or nil once the ids are known to be more than `limit`.
    public func encodeChat(_ messages: [ChatMessage], addGenerationPrompt: Bool = true, tools: [TemplateValue]? = nil,
                           extra: [String: TemplateValue] = [:], atMost limit: Int) throws -> [Int]? {
        var variables = extra
        if let bosToken, variables["bos_token"] == nil { variables["bos_token"] = .string(bosToken) }
        if let eosToken, variables["eos_token"] == nil { variables["eos_token"] = .string(eosToken) }
        let text = try chatTemplateOrChatML().render(messages: messages, addGenerationPrompt: addGenerationPrompt, tools: tools,
                                                     extra: variables)
        return encode(text, addSpecialTokens: false, atMost: limit)
    }
}
