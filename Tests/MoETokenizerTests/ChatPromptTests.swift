import Foundation
import Testing
@testable import MoETokenizer

@Suite struct ChatPromptTests {
    static let bytelevel = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer/bytelevel").path

    @Test func encodeChatRendersTheTemplateAndAddsNoSpecialTokens() throws {
        let tokenizer = try Tokenizer(directory: Self.bytelevel)
        let messages = [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "2+2?")]
        let ids = try tokenizer.encodeChat(messages)
        let text = try tokenizer.chatTemplateOrChatML().render(messages: messages, addGenerationPrompt: true)
        #expect(text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n")   // the fixture's template
        #expect(ids == tokenizer.encode(text, addSpecialTokens: false))
        #expect(ids.first == tokenizer.id(forToken: "<|im_start|>"))
        #expect(tokenizer.decode(ids) == text)
    }
}
