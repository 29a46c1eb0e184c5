import Testing
@testable import MoETraining

@Suite struct EvaluationTests {
    @Test func answersAreReadAsGSM8KRegexOrFinalNumber() {
        #expect(Evaluation.extractAnswer("so 3 + 4 = 7", regex: nil) == "7")
        #expect(Evaluation.extractAnswer("She pays 1,250 dollars in 2 steps.\n#### 1,250 because", regex: nil) == "1,250")
        #expect(Evaluation.extractAnswer("the answer is -12.", regex: nil) == "-12")
        #expect(Evaluation.extractAnswer("no digits here", regex: nil) == nil)
        #expect(Evaluation.extractAnswer("Answer: B (then 4)", regex: #"Answer: ([A-D])"#) == "B")
        #expect(Evaluation.extractAnswer("nothing", regex: #"Answer: ([A-D])"#) == nil)
        #expect(Evaluation.expectedAnswer("Natalia sold 48/2 = 24 clips.\n#### 72") == "72")
    }

    @Test func numbersCompareByValue() {
        #expect(Evaluation.sameAnswer("1,250", "1250"))
        #expect(Evaluation.sameAnswer("$18", "18.0"))
        #expect(!Evaluation.sameAnswer("17", "18"))
        #expect(Evaluation.sameAnswer(" B", "B"))
    }
}
