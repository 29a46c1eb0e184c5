import Foundation

/// The API as an OpenAPI 3.1 document, served at `GET /openapi.json` (for clients, fuzzers such as schemathesis
/// and people). `ServingRouterTests.openAPIDescribesTheRoutes` keeps it true: every operation it lists is served,
/// the routes `makeRouter` registers are all listed, and the answers to valid requests have the listed fields.
enum OpenAPI {
    /// The document for a server of `model` (its id, the only `model` value accepted) whose vocabulary has
    /// `vocabSize` ids: fuzzers then generate requests the server can answer, not only refusals.
    static func document(model: String, vocabSize: Int) -> String {
        let id = (try? JSONSerialization.data(withJSONObject: [model])).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
        return template.replacingOccurrences(of: "\"$MODEL_IDS\"", with: id)
            .replacingOccurrences(of: "\"$MAX_TOKEN_ID\"", with: String(max(0, vocabSize - 1)))
    }

    static let template = #"""
    {
      "openapi": "3.1.0",
      "info": {
        "title": "swift-moe",
        "version": "1",
        "description": "OpenAI-compatible completions over one mixture-of-experts model, metered per token."
      },
      "components": {
        "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
        "schemas": {
          "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
              "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                  "message": { "type": "string" },
                  "type": { "type": "string" },
                  "param": { "type": ["string", "null"] },
                  "code": { "type": ["string", "null"] }
                }
              }
            }
          },
          "Sampling": {
            "type": "object",
            "properties": {
              "temperature": { "type": "number", "minimum": 0, "maximum": 2 },
              "top_p": { "type": "number", "exclusiveMinimum": 0, "maximum": 1 },
              "top_k": { "type": "integer", "minimum": -1 },
              "min_p": { "type": "number", "minimum": 0, "maximum": 1 },
              "repetition_penalty": { "type": "number", "exclusiveMinimum": 0, "maximum": 10 },
              "presence_penalty": { "type": "number", "minimum": -2, "maximum": 2 },
              "frequency_penalty": { "type": "number", "minimum": -2, "maximum": 2 },
              "max_tokens": { "type": "integer", "minimum": 1 },
              "max_completion_tokens": { "type": "integer", "minimum": 1 },
              "n": { "type": "integer", "minimum": 1, "maximum": 16 },
              "seed": { "type": "integer" },
              "stop": { "oneOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" }, "maxItems": 4 }] },
              "stream": { "type": "boolean" },
              "stream_options": { "type": "object", "properties": { "include_usage": { "type": "boolean" } } },
              "logprobs": { "oneOf": [{ "type": "boolean" }, { "type": "integer", "minimum": 0, "maximum": 20 }] },
              "top_logprobs": { "type": "integer", "minimum": 0, "maximum": 20 },
              "ignore_eos": { "type": "boolean" },
              "speculative": { "type": "string", "enum": ["lookup", "mtp"] },
              "draft_tokens": { "type": "integer", "minimum": 1, "maximum": 16 },
              "experts_per_token": { "type": "integer", "minimum": 1, "description": "MoE models: experts each token may use, at most the model's num_experts_per_tok" },
              "expert_threshold": { "type": "number", "minimum": 0, "maximum": 1, "description": "MoE models: keep an expert beyond min_experts only while its weight is at least this fraction of the best one's" },
              "min_experts": { "type": "integer", "minimum": 1, "description": "With expert_threshold: experts always kept" },
              "user": { "type": "string", "maxLength": 256 },
              "logit_bias": { "type": "object", "propertyNames": { "pattern": "^[0-9]+$" },
                              "additionalProperties": { "type": "number", "minimum": -100, "maximum": 100 } }
            }
          },
          "Message": {
            "type": "object",
            "required": ["role"],
            "properties": {
              "role": { "type": "string" },
              "content": {
                "oneOf": [
                  { "type": "string" },
                  { "type": "null" },
                  { "type": "array", "items": { "type": "object", "required": ["type"],
                    "properties": { "type": { "type": "string" }, "text": { "type": "string" } } } }
                ]
              },
              "name": { "type": "string" }
            }
          },
          "ChatCompletionRequest": {
            "allOf": [
              { "$ref": "#/components/schemas/Sampling" },
              { "type": "object", "required": ["model", "messages"],
                "properties": { "model": { "type": "string", "enum": "$MODEL_IDS" },
                                "messages": { "type": "array", "items": { "$ref": "#/components/schemas/Message" }, "minItems": 1 } } }
            ]
          },
          "CompletionRequest": {
            "allOf": [
              { "$ref": "#/components/schemas/Sampling" },
              { "type": "object", "required": ["model", "prompt"],
                "properties": {
                  "model": { "type": "string", "enum": "$MODEL_IDS" },
                  "prompt": { "oneOf": [
                    { "type": "string" },
                    { "type": "array", "items": { "type": "integer", "minimum": 0, "maximum": "$MAX_TOKEN_ID" }, "minItems": 1 },
                    { "type": "array", "items": { "type": "string" }, "minItems": 1, "maxItems": 1 },
                    { "type": "array", "items": { "type": "array", "items": { "type": "integer", "minimum": 0, "maximum": "$MAX_TOKEN_ID" }, "minItems": 1 }, "minItems": 1, "maxItems": 1 }
                  ] },
                  "echo": { "type": "boolean" }
                } }
            ]
          },
          "Usage": {
            "type": "object",
            "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
            "properties": {
              "prompt_tokens": { "type": "integer" },
              "completion_tokens": { "type": "integer" },
              "total_tokens": { "type": "integer" },
              "prompt_tokens_details": { "type": "object", "properties": { "cached_tokens": { "type": "integer" } } },
              "experts_per_token": { "type": "integer", "description": "MoE models: the cap on experts per token in force" },
              "expert_threshold": { "type": "number" },
              "min_experts": { "type": "integer" },
              "active_experts_per_token": { "type": "number", "description": "MoE models: experts kept per token and MoE layer, on average over the tokens run" }
            }
          },
          "Completion": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices"],
            "properties": {
              "id": { "type": "string" },
              "object": { "type": "string", "enum": ["chat.completion", "text_completion", "chat.completion.chunk"] },
              "created": { "type": "integer" },
              "model": { "type": "string" },
              "choices": { "type": "array", "items": { "type": "object" } },
              "usage": { "oneOf": [{ "$ref": "#/components/schemas/Usage" }, { "type": "null" }] }
            }
          },
          "Model": {
            "type": "object",
            "required": ["id", "object"],
            "properties": { "id": { "type": "string" }, "object": { "const": "model" }, "created": { "type": "integer" },
                            "owned_by": { "type": "string" }, "max_model_len": { "type": "integer" } }
          }
        },
        "responses": {
          "Error": { "description": "An error in OpenAI's shape.",
                     "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
          "Completion": {
            "description": "One JSON body, or with \"stream\": true server-sent events of chunks ending in data: [DONE].",
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Completion" } },
                         "text/event-stream": { "schema": { "type": "object", "required": ["data"],
                                                            "properties": { "data": { "type": "string" } } } } }
          }
        }
      },
      "security": [{ "bearer": [] }],
      "paths": {
        "/v1/chat/completions": {
          "post": {
            "summary": "Chat completion through the model's chat template.",
            "requestBody": { "required": true,
                             "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ChatCompletionRequest" } } } },
            "responses": { "200": { "$ref": "#/components/responses/Completion" },
                           "400": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" },
                           "413": { "$ref": "#/components/responses/Error" }, "429": { "$ref": "#/components/responses/Error" },
                           "500": { "$ref": "#/components/responses/Error" } }
          }
        },
        "/v1/completions": {
          "post": {
            "summary": "Completion of a text or of token ids.",
            "requestBody": { "required": true,
                             "content": { "application/json": { "schema": { "$ref": "#/components/schemas/CompletionRequest" } } } },
            "responses": { "200": { "$ref": "#/components/responses/Completion" },
                           "400": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" },
                           "413": { "$ref": "#/components/responses/Error" }, "429": { "$ref": "#/components/responses/Error" },
                           "500": { "$ref": "#/components/responses/Error" } }
          }
        },
        "/v1/responses": {
          "post": {
            "summary": "OpenAI's Responses API: input text or items (messages, function calls and their outputs), instructions, previous_response_id, tools, text.format; streamed as typed events.",
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["model", "input"],
              "properties": { "model": { "type": "string", "enum": "$MODEL_IDS" },
                              "input": { "oneOf": [{ "type": "string" }, { "type": "array", "items": { "type": "object" } }] },
                              "instructions": { "type": "string" }, "max_output_tokens": { "type": "integer", "minimum": 1 },
                              "temperature": { "type": "number", "minimum": 0, "maximum": 2 }, "stream": { "type": "boolean" },
                              "previous_response_id": { "type": "string" }, "store": { "type": "boolean" },
                              "tools": { "type": "array", "items": { "type": "object" } }, "text": { "type": "object" } } } } } },
            "responses": { "200": { "description": "A response object.", "content": { "application/json": { "schema": { "type": "object",
                             "required": ["id", "object", "created_at", "model", "status", "output"],
                             "properties": { "id": { "type": "string" }, "object": { "const": "response" }, "output": { "type": "array" } } } } } },
                           "400": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" },
                           "413": { "$ref": "#/components/responses/Error" }, "429": { "$ref": "#/components/responses/Error" },
                           "500": { "$ref": "#/components/responses/Error" } }
          }
        },
        "/v1/responses/{id}": {
          "get": {
            "summary": "A stored response (the last 256 kept in memory, for the key that made it).",
            "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
            "responses": { "200": { "description": "The response object.", "content": { "application/json": { "schema": { "type": "object" } } } },
                           "401": { "$ref": "#/components/responses/Error" }, "404": { "$ref": "#/components/responses/Error" } }
          }
        },
        "/v1/models": {
          "get": {
            "summary": "The served model.",
            "responses": { "200": { "description": "A list of one model.", "content": { "application/json": { "schema": {
                             "type": "object", "required": ["object", "data"],
                             "properties": { "object": { "const": "list" }, "data": { "type": "array", "items": { "$ref": "#/components/schemas/Model" } } } } } } },
                           "401": { "$ref": "#/components/responses/Error" } }
          }
        },
        "/v1/models/{id}": {
          "get": {
            "summary": "One model by id.",
            "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
            "responses": { "200": { "description": "The model.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Model" } } } },
                           "400": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" } }
          }
        },
        "/tokenize": {
          "post": {
            "summary": "Token ids of a text ({\"prompt\"} or llama.cpp's {\"content\"}) or of chat messages ({\"messages\"}).",
            "security": [{ "bearer": [] }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "properties": {
              "model": { "type": "string" }, "prompt": { "type": "string" }, "content": { "type": "string" },
              "messages": { "type": "array", "items": { "$ref": "#/components/schemas/Message" } },
              "add_special_tokens": { "type": "boolean" } } } } } },
            "responses": { "200": { "description": "{\"tokens\", \"count\", \"max_model_len\"}", "content": { "application/json": { "schema": {
                             "type": "object", "required": ["tokens", "count", "max_model_len"],
                             "properties": { "tokens": { "type": "array", "items": { "type": "integer" } }, "count": { "type": "integer" },
                                             "max_model_len": { "type": "integer" } } } } } },
                           "400": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" },
                           "413": { "$ref": "#/components/responses/Error" } }
          }
        },
        "/detokenize": {
          "post": {
            "summary": "The text of token ids.",
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["tokens"],
              "properties": { "model": { "type": "string" }, "tokens": { "type": "array", "items": { "type": "integer" } } } } } } },
            "responses": { "200": { "description": "{\"prompt\", \"content\"}", "content": { "application/json": { "schema": {
                             "type": "object", "required": ["prompt", "content"],
                             "properties": { "prompt": { "type": "string" }, "content": { "type": "string" } } } } } },
                           "400": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" },
                           "413": { "$ref": "#/components/responses/Error" } }
          }
        },
        "/health": {
          "get": {
            "summary": "Liveness, engine load and ledger health (\"ok\" or \"degraded\").",
            "security": [],
            "responses": { "200": { "description": "Health.", "content": { "application/json": { "schema": { "type": "object",
                             "required": ["status", "model", "active", "waiting", "ledger_write_failures"],
                             "properties": { "status": { "enum": ["ok", "degraded"] }, "model": { "type": "string" },
                                             "active": { "type": "integer" }, "waiting": { "type": "integer" },
                                             "ledger_write_failures": { "type": "integer" } } } } } } }
          }
        },
        "/metrics": {
          "get": {
            "summary": "Prometheus metrics (text format 0.0.4).",
            "security": [],
            "responses": { "200": { "description": "Metrics.", "content": { "text/plain": { "schema": { "type": "string" } } } } }
          }
        },
        "/openapi.json": {
          "get": {
            "summary": "This document.",
            "security": [],
            "responses": { "200": { "description": "OpenAPI 3.1.", "content": { "application/json": { "schema": { "type": "object" } } } } }
          }
        },
        "/": {
          "get": {
            "summary": "A chat page that streams replies.",
            "security": [],
            "responses": { "200": { "description": "HTML.", "content": { "text/html": { "schema": { "type": "string" } } } } }
          }
        }
      }
    }
    """#
}
