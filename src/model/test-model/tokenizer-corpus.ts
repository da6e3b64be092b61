/**
 * The text the test tokenizers learn their merges from. It is small on purpose (generating a 262K
 * vocabulary must take seconds), and mixed on purpose: English prose, chat and tool-calling vocabulary,
 * code, JSON, numbers, whitespace runs, accented Latin, CJK and emoji — so that the merges a fixture
 * model's tokenizer applies look like a real tokenizer's, and some characters stay rare enough to
 * exercise byte fallback. Changing this text changes every generated tokenizer.
 */
export const TOKENIZER_CORPUS = String.raw`The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran into the forest.
An agent keeps its memory between turns: it reads the conversation, calls a tool when it needs one, and answers the user.
The user asked the assistant a question. The assistant thought about it, then wrote a short and helpful answer.
You are a helpful assistant. Answer the question as well as you can, and say so when you do not know.
What is the weather like in Paris today? It is sunny and warm, with a light wind from the west.
What is the weather like in London? It is raining again, and the temperature is 12 degrees.
Please summarize the following document in three sentences, and list the people it mentions.
The server streams tokens to the client as soon as they are generated, so the reader sees the answer grow.
Memory is the difference between a tool and a colleague: a colleague remembers what you told it yesterday.
There are 365 days in a year, 24 hours in a day, 60 minutes in an hour and 3600 seconds in an hour.
In 2024 the model answered 1,234,567 questions; in 2025 it answered twice as many, about 2.5 million.
She said: "I'll be there at 10:30, don't wait for me." He replied: "We're already late, aren't we?"
It's the first time they've met, but they'd heard of each other. You're right; we'll see.

system
user
assistant
model
tool
function
name
arguments
parameters
description
required
properties
type
object
string
number
integer
boolean
array
enum
result
content
role
tool_call
tool_calls
tool_response
get_weather
get_current_time
search_documents
location
unit
celsius
fahrenheit
query

def fibonacci(n: int) -> int:
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)


class Agent:
    def __init__(self, name, tools=None):
        self.name = name
        self.tools = tools or []
        self.memory = {}

    def remember(self, key, value):
        self.memory[key] = value
        return self.memory

for i in range(10):
    print(f"step {i}: {fibonacci(i)}")

export async function handleRequest(request: Request): Promise<Response> {
  const body = await request.json();
  if (!body.messages || body.messages.length === 0) {
    return new Response(JSON.stringify({ error: "messages must not be empty" }), { status: 400 });
  }
  const result = await engine.generate(body.messages, { maxTokens: 256, temperature: 0.7 });
  return new Response(JSON.stringify(result), { headers: { "content-type": "application/json" } });
}

const tokens = text.split(" ").map((word) => word.toLowerCase()).filter((word) => word.length > 0);
let total = 0;
for (const token of tokens) {
  total += token.length;
}
console.log("average length:", total / tokens.length);

{"name": "get_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}}
{"name": "get_current_time", "arguments": {"timezone": "Europe/Berlin"}}
{"type": "function", "function": {"name": "search_documents", "description": "Search the documents", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}
{"temperature": 21.5, "conditions": "sunny", "humidity": 40, "wind": {"speed": 12, "direction": "west"}}
[{"id": 1, "title": "First", "done": true}, {"id": 2, "title": "Second", "done": false, "tags": null}]

SELECT name, count(*) AS total FROM users WHERE created_at > '2024-01-01' GROUP BY name ORDER BY total DESC;
<div class="message"><p>Hello, world!</p></div>
# Heading
- a list item
- another list item
1. first
2. second

    indented with four spaces
	indented with a tab
line with trailing spaces   
two blank lines follow


Café, naïve, façade, résumé, déjà vu, crème brûlée, piñata, jalapeño, São Paulo, Zürich, Größe, Ångström.
Der schnelle braune Fuchs springt über den faulen Hund. Le renard brun rapide saute par-dessus le chien paresseux.
El zorro marrón rápido salta sobre el perro perezoso. Ça va très bien, merci beaucoup. Ελληνικά και русский язык.
我们的模型可以记住对话。我们的模型很快。你好，世界！中文文本用于测试。
日本語のテキストです。こんにちは、世界。東京は大きい都市です。
한국어 문장입니다. 안녕하세요.
Emoji: 🙂 😀 👍 🚀 ✨ 🎉 — and a few symbols: © ® ™ € £ ¥ → ← ≤ ≥ ± × ÷ … “quotes” ‘single’.
🙂 🙂 🚀 👍 👍 ✨
`;
