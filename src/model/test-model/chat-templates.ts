/**
 * Chat templates for the test tokenizers, one per family, producing the text each family's real
 * template produces (Llama 3.1/3.2, Qwen2.5, Qwen3, Qwen3-Coder, Gemma 3) for messages, tools, assistant tool calls,
 * tool results and the generation prompt. They are written to render identically under Python's jinja2
 * (as transformers configures it) and @huggingface/jinja, so they avoid what the two disagree on:
 * printing booleans (True/true), the `reject` filter, and floats such as 1.0 inside tojson.
 *
 * Where the real template has a quirk we do not copy, the comment says so:
 *  - Llama: the date is `date_string` or Meta's fixed "26 Jul 2024", never today's date, so a history
 *    renders to the same tokens every day (the agent's cached prefix stays valid). A tool result that is
 *    a string is written as is; Meta's template JSON-quotes it.
 *  - All: tool-call arguments given as a JSON string are written as is rather than quoted again.
 *  - Llama refuses several tool calls in one assistant message, as Meta's template does.
 *  - Gemma 3 has no tool support in its template; ours follows Google's function-calling guide, and the
 *    tool-call parser for Gemma reads this format:
 *      - the instructions and the function declarations (a JSON list, `function` of each tool) go into
 *        the first user turn after the system prompt, which Gemma folds into that turn;
 *      - the model's calls are one line `[name(arg=value, other=value), name2()]`, each value as JSON
 *        (arguments given as a JSON string are written inside the parentheses as they are);
 *      - each result is a ```tool_output fenced block; consecutive results share one user turn.
 *    Gemma's own check that roles alternate is left out, so tool turns fit in; image parts are not
 *    rendered (the server takes text).
 */
import type { TokenizerFamily } from "./tokenizer.js";

/** Message content as plain text: a string, or the text parts of a list of content parts. */
const CONTENT_TEXT_MACRO = String.raw`{%- macro content_text(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- elif content is iterable -%}
        {%- for part in content -%}
            {%- if part.type == "text" -%}{{- part.text -}}{%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro -%}
`;

/** Arguments as JSON: an object is serialized, a string is taken to be JSON already. */
const ARGUMENTS_JSON_MACRO = String.raw`{%- macro arguments_json(arguments) -%}
    {%- if arguments is string -%}{{- arguments -}}{%- else -%}{{- arguments | tojson -}}{%- endif -%}
{%- endmacro -%}
`;

const LLAMA3 =
  CONTENT_TEXT_MACRO +
  ARGUMENTS_JSON_MACRO +
  String.raw`{%- macro tool_definitions(tools) -%}
    {%- for tool in tools -%}{{- tool | tojson(indent=4) -}}{{- "\n\n" -}}{%- endfor -%}
{%- endmacro -%}
{%- macro listed_builtin_tools(names) -%}
    {%- set ns = namespace(listed=[]) -%}
    {%- for name in names -%}
        {%- if name != "code_interpreter" -%}{%- set ns.listed = ns.listed + [name] -%}{%- endif -%}
    {%- endfor -%}
    {{- ns.listed | join(", ") -}}
{%- endmacro -%}
{{- bos_token -}}
{%- if custom_tools is defined -%}{%- set tools = custom_tools -%}{%- endif -%}
{%- if tools is not defined -%}{%- set tools = none -%}{%- endif -%}
{%- if tools_in_user_message is not defined -%}{%- set tools_in_user_message = true -%}{%- endif -%}
{%- if date_string is not defined -%}{%- set date_string = "26 Jul 2024" -%}{%- endif -%}
{%- if messages[0].role == "system" -%}
    {%- set system_text = content_text(messages[0].content) | trim -%}
    {%- set turns = messages[1:] -%}
{%- else -%}
    {%- set system_text = "" -%}
    {%- set turns = messages -%}
{%- endif -%}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" -}}
{%- if builtin_tools is defined or tools is not none -%}{{- "Environment: ipython\n" -}}{%- endif -%}
{%- if builtin_tools is defined -%}{{- "Tools: " + listed_builtin_tools(builtin_tools) + "\n\n" -}}{%- endif -%}
{{- "Cutting Knowledge Date: December 2023\n" -}}
{{- "Today Date: " + date_string + "\n\n" -}}
{%- if tools is not none and not tools_in_user_message -%}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." -}}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' -}}
    {{- "Do not use variables.\n\n" -}}
    {{- tool_definitions(tools) -}}
{%- endif -%}
{{- system_text + "<|eot_id|>" -}}
{%- if tools is not none and tools_in_user_message -%}
    {%- if turns | length == 0 -%}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") -}}
    {%- endif -%}
    {{- "<|start_header_id|>user<|end_header_id|>\n\n" -}}
    {{- "Given the following functions, please respond with a JSON for a function call " -}}
    {{- "with its proper arguments that best answers the given prompt.\n\n" -}}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' -}}
    {{- "Do not use variables.\n\n" -}}
    {{- tool_definitions(tools) -}}
    {{- (content_text(turns[0].content) | trim) + "<|eot_id|>" -}}
    {%- set turns = turns[1:] -%}
{%- endif -%}
{%- for message in turns -%}
    {%- if message.role == "tool" or message.role == "ipython" -%}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" -}}
        {%- if message.content is string -%}{{- message.content -}}{%- else -%}{{- message.content | tojson -}}{%- endif -%}
        {{- "<|eot_id|>" -}}
    {%- elif message.tool_calls is defined and message.tool_calls -%}
        {%- if message.tool_calls | length != 1 -%}
            {{- raise_exception("This model only supports single tool-calls at once!") -}}
        {%- endif -%}
        {%- set call = message.tool_calls[0].function if message.tool_calls[0].function is defined else message.tool_calls[0] -%}
        {{- "<|start_header_id|>assistant<|end_header_id|>\n\n" -}}
        {%- if builtin_tools is defined and call.name in builtin_tools -%}
            {{- "<|python_tag|>" + call.name + ".call(" -}}
            {%- for name, value in call.arguments.items() -%}
                {{- name + '="' + value + '"' -}}{%- if not loop.last -%}{{- ", " -}}{%- endif -%}
            {%- endfor -%}
            {{- ")" -}}
        {%- else -%}
            {{- '{"name": "' + call.name + '", "parameters": ' + arguments_json(call.arguments) + "}" -}}
        {%- endif -%}
        {#- A built-in tool call waits for its result (end of message); a custom one ends the turn. -#}
        {%- if builtin_tools is defined -%}{{- "<|eom_id|>" -}}{%- else -%}{{- "<|eot_id|>" -}}{%- endif -%}
    {%- else -%}
        {{- "<|start_header_id|>" + message.role + "<|end_header_id|>\n\n" -}}
        {{- (content_text(message.content) | trim) + "<|eot_id|>" -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- "<|start_header_id|>assistant<|end_header_id|>\n\n" -}}{%- endif -%}
`;

/** Qwen's tool preamble: the function signatures inside <tools>, calls as JSON inside <tool_call>. */
const QWEN_TOOLS_BLOCK = String.raw`{{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" -}}
{%- for tool in tools -%}{{- "\n" + (tool | tojson) -}}{%- endfor -%}
{{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" -}}
`;

/** Assistant tool calls, each in its own <tool_call> block on a new line. */
const QWEN_TOOL_CALLS = String.raw`{%- for tool_call in message.tool_calls -%}
    {%- if content or not loop.first -%}{{- "\n" -}}{%- endif -%}
    {%- set call = tool_call.function if tool_call.function is defined else tool_call -%}
    {{- '<tool_call>\n{"name": "' + call.name + '", "arguments": ' + arguments_json(call.arguments) + "}\n</tool_call>" -}}
{%- endfor -%}
`;

/** Consecutive tool results share one user turn, each inside <tool_response>. */
const QWEN_TOOL_RESULT = String.raw`{%- if loop.first or messages[loop.index0 - 1].role != "tool" -%}{{- "<|im_start|>user" -}}{%- endif -%}
{{- "\n<tool_response>\n" + content + "\n</tool_response>" -}}
{%- if loop.last or messages[loop.index0 + 1].role != "tool" -%}{{- "<|im_end|>\n" -}}{%- endif -%}
`;

const QWEN25 =
  CONTENT_TEXT_MACRO +
  ARGUMENTS_JSON_MACRO +
  String.raw`{%- set default_system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant." -%}
{%- set system_text = content_text(messages[0].content) if messages[0].role == "system" else default_system -%}
{%- if tools -%}
    {{- "<|im_start|>system\n" + system_text + "\n\n" -}}
` +
  QWEN_TOOLS_BLOCK +
  String.raw`{%- else -%}
    {{- "<|im_start|>system\n" + system_text + "<|im_end|>\n" -}}
{%- endif -%}
{%- for message in messages -%}
    {%- set content = content_text(message.content) -%}
    {%- if message.role == "user" or (message.role == "system" and not loop.first) -%}
        {{- "<|im_start|>" + message.role + "\n" + content + "<|im_end|>\n" -}}
    {%- elif message.role == "assistant" -%}
        {{- "<|im_start|>assistant" -}}
        {%- if content -%}{{- "\n" + content -}}{%- endif -%}
        {%- if message.tool_calls is defined and message.tool_calls -%}
            {%- for tool_call in message.tool_calls -%}
                {%- set call = tool_call.function if tool_call.function is defined else tool_call -%}
                {{- '\n<tool_call>\n{"name": "' + call.name + '", "arguments": ' + arguments_json(call.arguments) + "}\n</tool_call>" -}}
            {%- endfor -%}
        {%- endif -%}
        {{- "<|im_end|>\n" -}}
    {%- elif message.role == "tool" -%}
` +
  QWEN_TOOL_RESULT +
  String.raw`    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- "<|im_start|>assistant\n" -}}{%- endif -%}
`;

const QWEN3 =
  CONTENT_TEXT_MACRO +
  ARGUMENTS_JSON_MACRO +
  String.raw`{%- if tools -%}
    {{- "<|im_start|>system\n" -}}
    {%- if messages[0].role == "system" -%}{{- content_text(messages[0].content) + "\n\n" -}}{%- endif -%}
` +
  QWEN_TOOLS_BLOCK +
  String.raw`{%- elif messages[0].role == "system" -%}
    {{- "<|im_start|>system\n" + content_text(messages[0].content) + "<|im_end|>\n" -}}
{%- endif -%}
{#- Reasoning is kept only for the assistant turns after the last real user query (tool results do not count). -#}
{%- set ns = namespace(searching=true, last_query=messages | length - 1) -%}
{%- for message in messages[::-1] -%}
    {%- set index = (messages | length - 1) - loop.index0 -%}
    {%- if ns.searching and message.role == "user" and message.content is string -%}
        {%- if not (message.content.startswith("<tool_response>") and message.content.endswith("</tool_response>")) -%}
            {%- set ns.searching = false -%}
            {%- set ns.last_query = index -%}
        {%- endif -%}
    {%- endif -%}
{%- endfor -%}
{%- for message in messages -%}
    {%- set content = content_text(message.content) -%}
    {%- if message.role == "user" or (message.role == "system" and not loop.first) -%}
        {{- "<|im_start|>" + message.role + "\n" + content + "<|im_end|>\n" -}}
    {%- elif message.role == "assistant" -%}
        {%- set reasoning = "" -%}
        {%- if message.reasoning_content is string -%}
            {%- set reasoning = message.reasoning_content -%}
        {%- elif "</think>" in content -%}
            {%- set reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n") -%}
            {%- set content = content.split("</think>")[-1].lstrip("\n") -%}
        {%- endif -%}
        {%- if loop.index0 > ns.last_query and (loop.last or reasoning) -%}
            {{- "<|im_start|>assistant\n<think>\n" + reasoning.strip("\n") + "\n</think>\n\n" + content.lstrip("\n") -}}
        {%- else -%}
            {{- "<|im_start|>assistant\n" + content -}}
        {%- endif -%}
        {%- if message.tool_calls is defined and message.tool_calls -%}
` +
  QWEN_TOOL_CALLS +
  String.raw`        {%- endif -%}
        {{- "<|im_end|>\n" -}}
    {%- elif message.role == "tool" -%}
` +
  QWEN_TOOL_RESULT +
  String.raw`    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- "<|im_start|>assistant\n" -}}
    {%- if enable_thinking is defined and enable_thinking is false -%}{{- "<think>\n\n</think>\n\n" -}}{%- endif -%}
{%- endif -%}
`;

/**
 * Qwen3-Coder's template (the qwen3 tokenizer's tokens, another call format): tools as XML in the
 * system turn, calls as `<function=NAME>` with one `<parameter=KEY>` block per argument, results in
 * <tool_response> blocks sharing one user turn. Where ours differs from Qwen's: a value or schema field
 * that is not a string is written as JSON (Qwen's writes Python's str(), True / False / ['a', 'b'],
 * which its own parser does not read back as JSON and the two Jinja engines print differently), and
 * arguments given as a JSON string are written inside <function=…> as they are.
 */
const QWEN3_CODER =
  CONTENT_TEXT_MACRO +
  String.raw`{%- macro xml_value(value) -%}
    {%- if value is string -%}{{- value -}}{%- else -%}{{- value | tojson -}}{%- endif -%}
{%- endmacro -%}
{%- macro extra_keys(fields, handled) -%}
    {%- for key, value in fields.items() -%}
        {%- if key not in handled -%}{{- "\n<" + key + ">" + xml_value(value) + "</" + key + ">" -}}{%- endif -%}
    {%- endfor -%}
{%- endmacro -%}
{%- if messages[0].role == "system" -%}
    {%- set system_text = content_text(messages[0].content) -%}
    {%- set turns = messages[1:] -%}
{%- else -%}
    {%- set system_text = "You are Qwen, a helpful AI assistant that can interact with a computer to solve tasks." if tools else "" -%}
    {%- set turns = messages -%}
{%- endif -%}
{%- if system_text or tools -%}{{- "<|im_start|>system\n" + system_text -}}{%- endif -%}
{%- if tools -%}
    {{- "\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>" -}}
    {%- for tool in tools -%}
        {%- set declared = tool.function if tool.function is defined else tool -%}
        {{- "\n<function>\n<name>" + declared.name + "</name>" -}}
        {%- if declared.description is defined -%}{{- "\n<description>" + (declared.description | trim) + "</description>" -}}{%- endif -%}
        {{- "\n<parameters>" -}}
        {%- if declared.parameters is defined and declared.parameters.properties is defined -%}
            {%- for name, fields in declared.parameters.properties.items() -%}
                {{- "\n<parameter>\n<name>" + name + "</name>" -}}
                {%- if fields.type is defined -%}{{- "\n<type>" + xml_value(fields.type) + "</type>" -}}{%- endif -%}
                {%- if fields.description is defined -%}{{- "\n<description>" + (fields.description | trim) + "</description>" -}}{%- endif -%}
                {{- extra_keys(fields, ["name", "type", "description"]) -}}
                {{- "\n</parameter>" -}}
            {%- endfor -%}
        {%- endif -%}
        {%- if declared.parameters is defined -%}{{- extra_keys(declared.parameters, ["type", "properties"]) -}}{%- endif -%}
        {{- "\n</parameters>" -}}
        {{- extra_keys(declared, ["type", "name", "description", "parameters"]) -}}
        {{- "\n</function>" -}}
    {%- endfor -%}
    {{- "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n- Required parameters MUST be specified\n- You may provide optional reasoning for your function call in natural language BEFORE the function call, but NOT after\n- If there is no function call available, answer the question like normal with your current knowledge and do not tell the user about function calls\n</IMPORTANT>" -}}
{%- endif -%}
{%- if system_text or tools -%}{{- "<|im_end|>\n" -}}{%- endif -%}
{%- for message in turns -%}
    {%- set content = content_text(message.content) -%}
    {%- set previous_role = turns[loop.index0 - 1].role if not loop.first else "" -%}
    {%- set next_role = turns[loop.index0 + 1].role if not loop.last else "" -%}
    {%- if message.role == "assistant" and message.tool_calls is defined and message.tool_calls -%}
        {{- "<|im_start|>assistant" -}}
        {%- if content | trim -%}{{- "\n" + (content | trim) + "\n" -}}{%- endif -%}
        {%- for tool_call in message.tool_calls -%}
            {%- set call = tool_call.function if tool_call.function is defined else tool_call -%}
            {{- "\n<tool_call>\n<function=" + call.name + ">\n" -}}
            {%- if call.arguments is string -%}
                {{- call.arguments + "\n" -}}
            {%- else -%}
                {%- for key, value in call.arguments.items() -%}
                    {{- "<parameter=" + key + ">\n" + xml_value(value) + "\n</parameter>\n" -}}
                {%- endfor -%}
            {%- endif -%}
            {{- "</function>\n</tool_call>" -}}
        {%- endfor -%}
        {{- "<|im_end|>\n" -}}
    {%- elif message.role == "tool" -%}
        {%- if previous_role != "tool" -%}{{- "<|im_start|>user\n" -}}{%- endif -%}
        {{- "<tool_response>\n" + content + "\n</tool_response>\n" -}}
        {%- if next_role != "tool" -%}{{- "<|im_end|>\n" -}}{%- endif -%}
    {%- else -%}
        {{- "<|im_start|>" + message.role + "\n" + content + "<|im_end|>\n" -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- "<|im_start|>assistant\n" -}}{%- endif -%}
`;

// String.raw cannot hold a backtick, so the Markdown fence of a tool output comes in as a substitution.
const FENCE = "```";

const GEMMA3 =
  CONTENT_TEXT_MACRO +
  String.raw`{%- macro call_text(call) -%}
    {{- call.name + "(" -}}
    {%- if call.arguments is string -%}
        {{- call.arguments -}}
    {%- else -%}
        {%- for name, value in call.arguments.items() -%}
            {{- name + "=" + (value | tojson) -}}{%- if not loop.last -%}{{- ", " -}}{%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{- ")" -}}
{%- endmacro -%}
{{- bos_token -}}
{%- if messages[0].role == "system" -%}
    {%- set first_user_prefix = content_text(messages[0].content) + "\n\n" -%}
    {%- set turns = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set turns = messages -%}
{%- endif -%}
{%- if tools -%}
    {%- set ns = namespace(declarations=[]) -%}
    {%- for tool in tools -%}
        {%- set ns.declarations = ns.declarations + [tool.function if tool.function is defined else tool] -%}
    {%- endfor -%}
    {%- set first_user_prefix = first_user_prefix + "You have access to functions. If you decide to invoke any of the function(s), you MUST put it in the format of\n[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]\n\nYou SHOULD NOT include any other text in the response if you call a function\n" + (ns.declarations | tojson(indent=2)) + "\n\n" -%}
{%- endif -%}
{%- for message in turns -%}
    {%- set previous_role = turns[loop.index0 - 1].role if not loop.first else "" -%}
    {%- set next_role = turns[loop.index0 + 1].role if not loop.last else "" -%}
    {%- if message.role == "tool" -%}
        {%- if previous_role != "tool" -%}
            {{- "<start_of_turn>user\n" + (first_user_prefix if loop.first else "") -}}
        {%- else -%}
            {{- "\n" -}}
        {%- endif -%}
        {{- "${FENCE}tool_output\n" + (content_text(message.content) | trim) + "\n${FENCE}" -}}
        {%- if next_role != "tool" -%}{{- "<end_of_turn>\n" -}}{%- endif -%}
    {%- else -%}
        {%- set role = "model" if message.role == "assistant" else "user" -%}
        {{- "<start_of_turn>" + role + "\n" + (first_user_prefix if loop.first else "") -}}
        {{- content_text(message.content) | trim -}}
        {%- if message.tool_calls is defined and message.tool_calls -%}
            {%- if content_text(message.content) | trim -%}{{- "\n" -}}{%- endif -%}
            {{- "[" -}}
            {%- for tool_call in message.tool_calls -%}
                {{- call_text(tool_call.function if tool_call.function is defined else tool_call) -}}
                {%- if not loop.last -%}{{- ", " -}}{%- endif -%}
            {%- endfor -%}
            {{- "]" -}}
        {%- endif -%}
        {{- "<end_of_turn>\n" -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- "<start_of_turn>model\n" -}}{%- endif -%}
`;

const TEMPLATES: Record<TokenizerFamily, string> = { llama: LLAMA3, qwen2: QWEN25, qwen3: QWEN3, gemma3: GEMMA3 };

/** Templates other than a family's own, over that family's tokenizer: `qwen3_coder` on qwen3. */
export const TEMPLATE_VARIANTS = { qwen3_coder: { family: "qwen3", template: QWEN3_CODER } } as const;
export type TemplateVariant = keyof typeof TEMPLATE_VARIANTS;

export function chatTemplateFor(family: TokenizerFamily, variant?: TemplateVariant): string {
  if (variant === undefined) return TEMPLATES[family];
  const { family: base, template } = TEMPLATE_VARIANTS[variant];
  if (base !== family) throw new Error(`the ${variant} template needs the ${base} tokenizer, not ${family}`);
  return template;
}
