// structured.mjs - structured outputs, tool calling and the Responses API of
// `grok serve`, driven by the official openai package (unchanged), zod and
// ajv. The model is a small random one: every reply is noise, so anything
// well-formed in it is the grammar's doing.
//   node structured.mjs URL
import OpenAI from "openai";
import { z } from "zod";
import { zodResponseFormat } from "openai/helpers/zod";
import Ajv from "ajv";
import addFormats from "ajv-formats";

const [base] = process.argv.slice(2);
let failures = 0, passes = 0;
function check(cond, what, extra) {
  if (cond) passes++;
  else {
    failures++;
    console.log(`FAIL ${what}` + (extra !== undefined ? `: ${typeof extra === "string" ? extra : JSON.stringify(extra).slice(0, 600)}` : ""));
  }
}
async function post(path, body, method = "POST") {
  const r = await fetch(base + path, { method, headers: { "Content-Type": "application/json" }, body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}
async function expect400(what, path, body, needle, param) {
  const r = await post(path, body);
  check(r.status === 400, `${what}: 400`, `${r.status} ${r.text.slice(0, 300)}`);
  const msg = r.json && r.json.error ? r.json.error.message : "";
  if (needle) check(msg.includes(needle), `${what}: message names '${needle}'`, msg);
  if (param) check(r.json && r.json.error && r.json.error.param === param, `${what}: param ${param}`, r.json && r.json.error);
}

const client = new OpenAI({ baseURL: base + "/v1", apiKey: "not-needed", maxRetries: 0, timeout: 120_000 });
const ajv = new Ajv({ allErrors: true, strict: false });
addFormats(ajv);
const user = (content) => [{ role: "user", content }];

// 1. the SDK's parse helper with a zod schema
{
  const Person = z.object({
    name: z.string().max(10),
    age: z.number().int().min(0).max(120),
    role: z.enum(["admin", "user", "guest"]),
    tags: z.array(z.string().max(4)).max(3),
    nickname: z.string().max(6).nullable(),
  });
  for (const seed of [1, 2, 3]) {
    const c = await client.chat.completions.parse({
      model: undefined, messages: user("Describe a person."), seed, temperature: 1.0, max_tokens: 300,
      response_format: zodResponseFormat(Person, "person"),
    });
    const m = c.choices[0].message;
    check(c.choices[0].finish_reason === "stop", `zod parse seed ${seed}: finish stop`, c.choices[0]);
    check(m.parsed !== null && Person.safeParse(m.parsed).success, `zod parse seed ${seed}: parsed object is a Person`, m);
  }
}

// 2. many random completions under several schemas all validate with ajv
const schemas = {
  flat: { type: "object", properties: { id: { type: "integer", minimum: -50, maximum: 5000 }, ok: { type: "boolean" }, label: { type: "string", maxLength: 8 } }, required: ["id", "ok", "label"], additionalProperties: false },
  optional: { type: "object", properties: { a: { type: "number", minimum: 0, maximum: 1 }, b: { enum: ["x", 2, null, true] }, c: { const: "fixed" } } },
  nested: {
    type: "object",
    $defs: { pt: { type: "object", properties: { x: { type: "integer" }, y: { type: "integer", exclusiveMinimum: 0 } }, required: ["x", "y"] } },
    properties: { pts: { type: "array", items: { $ref: "#/$defs/pt" }, minItems: 1, maxItems: 3 }, name: { anyOf: [{ type: "string", maxLength: 5 }, { type: "null" }] } },
    required: ["pts", "name"],
  },
  formats: { type: "object", properties: { day: { type: "string", format: "date" }, at: { type: "string", format: "date-time" }, t: { type: "string", format: "time" }, id: { type: "string", format: "uuid" }, code: { type: "string", minLength: 2, maxLength: 3 } }, required: ["day", "at", "t", "id", "code"] },
  array: { type: "array", items: { type: ["integer", "null"] }, minItems: 2, maxItems: 4 },
  pattern: { type: "object", properties: { sku: { type: "string", pattern: "^[A-Z]{2,3}-\\d{2}(/[a-z]+)?$" }, q: { type: "string", pattern: "^(yes|no|maybe)$" } }, required: ["sku", "q"] },
};
{
  let n = 0, stopped = 0;
  const jobs = [];
  for (const [name, schema] of Object.entries(schemas)) {
    const validate = ajv.compile(schema);
    for (let seed = 0; seed < 8; seed++) {
      jobs.push((async () => {
        const c = await client.chat.completions.create({
          messages: user(`JSON for ${name}`), seed: 100 + seed, temperature: 1.0, top_k: 0, top_p: 1, min_p: 0, max_tokens: 400,
          response_format: { type: "json_schema", json_schema: { name, schema, strict: true } },
        });
        n++;
        const ch = c.choices[0];
        if (ch.finish_reason !== "stop") return;
        stopped++;
        let v;
        try { v = JSON.parse(ch.message.content); } catch (e) { check(false, `${name} seed ${seed}: JSON.parse`, ch.message.content); return; }
        check(validate(v), `${name} seed ${seed}: valid under the schema`, { text: ch.message.content, errors: validate.errors });
      })());
    }
  }
  await Promise.all(jobs);
  check(stopped === n, `schemas: every reply complete (${stopped}/${n})`);
  console.log(`  ajv: ${stopped} replies under ${Object.keys(schemas).length} schemas validated`);
  // json_object: any JSON object (may run to max_tokens: then it is cut)
  const jo = await client.chat.completions.create({ messages: user("JSON please"), seed: 5, max_tokens: 200, response_format: { type: "json_object" } });
  const t = jo.choices[0].message.content;
  check(t.trimStart().startsWith("{"), "json_object: starts with {", t);
  if (jo.choices[0].finish_reason === "stop") check((() => { try { return typeof JSON.parse(t) === "object"; } catch { return false; } })(), "json_object: parses", t);
}

// 3. grammar extension on chat and completions; a grammar that cannot finish ends with 'length'
{
  const c = await client.chat.completions.create({ messages: user("yes or no?"), max_tokens: 10, grammar: 'root ::= ("yes" | "no") "."' });
  check(["yes.", "no."].includes(c.choices[0].message.content) && c.choices[0].finish_reason === "stop", "grammar: chat", c.choices[0]);
  const t = await client.completions.create({ prompt: "Digits:", max_tokens: 20, grammar: "root ::= [0-9]{3} \"-\" [0-9]{2}" });
  check(/^[0-9]{3}-[0-9]{2}$/.test(t.choices[0].text) && t.choices[0].finish_reason === "stop", "grammar: completions", t.choices[0]);
  const l = await client.chat.completions.create({ messages: user("count"), max_tokens: 5, grammar: 'root ::= "a"{50}' });
  check(l.choices[0].finish_reason === "length" && /^a+$/.test(l.choices[0].message.content), "grammar: cannot finish -> length", l.choices[0]);
  const s = await client.chat.completions.create({ messages: user("x"), max_tokens: 8, stream: true, grammar: 'root ::= "ok" [!?]' });
  let txt = "", fin = null;
  for await (const ch of s) { txt += ch.choices[0]?.delta?.content ?? ""; fin = ch.choices[0]?.finish_reason ?? fin; }
  check(/^ok[!?]$/.test(txt) && fin === "stop", "grammar: streamed", { txt, fin });
}

// 4. tools: a round trip, named and required choice, auto, streamed calls
const weather = {
  type: "function",
  function: {
    name: "get_weather", description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string", maxLength: 12 }, unit: { enum: ["c", "f"] } }, required: ["city", "unit"], additionalProperties: false },
  },
};
const timeTool = { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { tz: { type: "string", maxLength: 6 } }, required: ["tz"] } } };
const validateWeather = ajv.compile(weather.function.parameters);
{
  const msgs = user("What is the weather in Paris?");
  const c = await client.chat.completions.create({ messages: msgs, tools: [weather, timeTool], tool_choice: "required", seed: 11, max_tokens: 600 });
  const ch = c.choices[0];
  check(ch.finish_reason === "tool_calls", "tools required: finish_reason tool_calls", ch);
  const calls = ch.message.tool_calls || [];
  check(calls.length >= 1 && ch.message.content === null, "tools required: tool_calls, null content", ch.message);
  for (const tc of calls) {
    check(tc.type === "function" && /^call_/.test(tc.id) && ["get_weather", "get_time"].includes(tc.function.name), "tool call shape", tc);
    check(typeof tc.function.arguments === "string", "arguments are a JSON string", tc);
    const args = JSON.parse(tc.function.arguments);
    if (tc.function.name === "get_weather") check(validateWeather(args), "get_weather arguments valid", args);
  }
  // the round trip: results go back as tool messages
  const history = [...msgs, ch.message, ...calls.map((tc) => ({ role: "tool", tool_call_id: tc.id, content: JSON.stringify({ temp: 21 }) }))];
  const r2 = await client.chat.completions.create({ messages: history, tools: [weather, timeTool], tool_choice: "none", max_tokens: 20, seed: 3 });
  check(typeof r2.choices[0].message.content === "string" && !r2.choices[0].message.tool_calls, "tool round trip: a text reply after the results", r2.choices[0]);
  // a named function, one call
  const n = await client.chat.completions.create({ messages: msgs, tools: [weather, timeTool], tool_choice: { type: "function", function: { name: "get_time" } }, parallel_tool_calls: false, max_tokens: 200, seed: 4 });
  const nc = n.choices[0].message.tool_calls || [];
  check(nc.length === 1 && nc[0].function.name === "get_time", "tool_choice named: one get_time call", n.choices[0]);
  // auto: a tool call or text, consistently reported
  for (const seed of [1, 2, 3, 4]) {
    const a = await client.chat.completions.create({ messages: msgs, tools: [weather], tool_choice: "auto", max_tokens: 120, seed });
    const m = a.choices[0];
    const ok = m.message.tool_calls ? m.finish_reason === "tool_calls" && m.message.content === null
                                    : typeof m.message.content === "string" && !m.message.content.trimStart().startsWith("{");
    check(ok, `tools auto seed ${seed}: a call or text`, m);
  }
  // streamed tool calls, reassembled by the SDK
  const stream = client.chat.completions.stream({ messages: msgs, tools: [weather], tool_choice: "required", max_tokens: 300, seed: 12 });
  const fin = await stream.finalChatCompletion();
  const sc = fin.choices[0];
  check(sc.finish_reason === "tool_calls" && (sc.message.tool_calls || []).length >= 1, "streamed tool calls: finish and calls", sc);
  for (const tc of sc.message.tool_calls || []) check(validateWeather(JSON.parse(tc.function.arguments)), "streamed call arguments valid", tc);
  // raw stream: delta.tool_calls with an index
  const raw = await client.chat.completions.create({ messages: msgs, tools: [weather], tool_choice: "required", max_tokens: 300, seed: 12, stream: true });
  let sawDelta = false, lastFinish = null, content = "";
  for await (const ch of raw) {
    const d = ch.choices[0]?.delta;
    if (d?.tool_calls) sawDelta = d.tool_calls.every((t) => typeof t.index === "number" && t.function && typeof t.function.arguments === "string");
    if (d?.content) content += d.content;
    lastFinish = ch.choices[0]?.finish_reason ?? lastFinish;
  }
  check(sawDelta && lastFinish === "tool_calls" && content === "", "stream: delta.tool_calls then finish tool_calls, no content", { sawDelta, lastFinish, content });
}

// 5. the Responses API
{
  const r = await client.responses.create({ input: "Say something.", instructions: "Be brief.", max_output_tokens: 24 });
  check(r.object === "response" && /^resp_/.test(r.id) && ["completed", "incomplete"].includes(r.status), "responses.create: object", r);
  check(typeof r.output_text === "string" && r.output_text.length > 0, "responses.create: output_text", r.output);
  check(r.usage && r.usage.output_tokens > 0 && r.usage.input_tokens > 0, "responses.create: usage", r.usage);
  const got = await client.responses.retrieve(r.id);
  check(got.id === r.id && got.output_text === r.output_text, "responses.retrieve: stored", got);
  const r2 = await client.responses.create({ input: "And more?", previous_response_id: r.id, max_output_tokens: 16 });
  check(r2.previous_response_id === r.id && r2.usage.input_tokens > r.usage.input_tokens, "previous_response_id: the conversation goes on", r2.usage);
  // structured output through text.format
  const schema = schemas.flat, validate = ajv.compile(schema);
  const rs = await client.responses.create({ input: "JSON", max_output_tokens: 200, text: { format: { type: "json_schema", name: "flat", schema, strict: true } } });
  check(rs.status === "completed" && validate(JSON.parse(rs.output_text)), "responses: text.format json_schema", rs.output_text);
  // function calls
  const fr = await client.responses.create({ input: "Weather in Rome?", tools: [{ type: "function", ...weather.function }], tool_choice: "required", parallel_tool_calls: false, max_output_tokens: 200 });
  const calls = fr.output.filter((o) => o.type === "function_call");
  check(calls.length >= 1 && calls.every((c) => c.name === "get_weather" && validateWeather(JSON.parse(c.arguments))), "responses: function_call items", fr.output);
  if (calls.length) { // the result goes back as function_call_output
    const back = await client.responses.create({ previous_response_id: fr.id, input: [{ type: "function_call_output", call_id: calls[0].call_id, output: "{\"temp\": 20}" }], max_output_tokens: 16 });
    check(back.status !== "failed" && back.output.length === 1, "responses: function_call_output round trip", back.output);
  }
  // streaming: the SDK's helper collects the events
  const st = client.responses.stream({ input: "Stream it.", max_output_tokens: 20 });
  const types = new Set();
  let deltas = "";
  st.on("event", (e) => types.add(e.type));
  st.on("response.output_text.delta", (e) => { deltas += e.delta; });
  const final = await st.finalResponse();
  for (const t of ["response.created", "response.output_item.added", "response.output_text.delta", "response.output_item.done", "response.completed"])
    check(types.has(t), `responses.stream: event ${t}`, [...types]);
  check(final.output_text === deltas && deltas.length > 0, "responses.stream: deltas add up to the final text", { deltas, text: final.output_text });
  const fst = client.responses.stream({ input: "Weather?", tools: [{ type: "function", ...weather.function }], tool_choice: "required", parallel_tool_calls: false, max_output_tokens: 200 });
  const ftypes = new Set();
  fst.on("event", (e) => ftypes.add(e.type));
  const ff = await fst.finalResponse();
  check(ftypes.has("response.function_call_arguments.delta") && ftypes.has("response.function_call_arguments.done"), "responses.stream: function call events", [...ftypes]);
  check(ff.output.some((o) => o.type === "function_call" && validateWeather(JSON.parse(o.arguments))), "responses.stream: final function call", ff.output);
  // delete, then 404
  const del = await post(`/v1/responses/${r.id}`, undefined, "DELETE");
  check(del.status === 200 && del.json.deleted === true, "DELETE /v1/responses/{id}", del.text);
  const gone = await post(`/v1/responses/${r.id}`, undefined, "GET");
  check(gone.status === 404, "deleted response: 404", gone.text);
  await expect400("responses: unknown previous_response_id", "/v1/responses", { input: "x", previous_response_id: "resp_nope" }, "not found", "previous_response_id");
  await expect400("responses: max_output_tokens < 16", "/v1/responses", { input: "x", max_output_tokens: 3 }, "at least 16", "max_output_tokens");
  await expect400("responses: unsupported tool type", "/v1/responses", { input: "x", tools: [{ type: "web_search" }] }, "function", "tools[0]");
}

// 6. xAI extras
{
  const t = await post("/v1/tokenize-text", { text: "Hello world" });
  check(t.status === 200 && Array.isArray(t.json.token_ids) && t.json.token_ids.every((x) => Number.isInteger(x.token_id) && typeof x.string_token === "string" && Array.isArray(x.token_bytes)), "tokenize-text", t.text);
  const bytes = t.json.token_ids.flatMap((x) => x.token_bytes);
  check(Buffer.from(bytes).toString().trim() === "Hello world", "tokenize-text: bytes spell the text", bytes);
  const lm = await post("/v1/language-models", undefined, "GET");
  check(lm.status === 200 && lm.json.models.length === 1 && typeof lm.json.models[0].fingerprint === "string", "language-models", lm.text);
}

// 7. bad input: 400s that name the problem, quickly
{
  const C = "/v1/chat/completions", m = user("x");
  const js = (schema) => ({ messages: m, response_format: { type: "json_schema", json_schema: { name: "s", schema } } });
  await expect400("grammar syntax error", C, { messages: m, grammar: 'root ::= "a"\nb ::= ("x" | \n' }, "line 3, column 1", "grammar");
  await expect400("grammar: undefined rule", C, { messages: m, grammar: "root ::= foo" }, "undefined rule 'foo'", "grammar");
  await expect400("grammar: left recursion", C, { messages: m, grammar: 'root ::= root "a" | "a"' }, "left recursion", "grammar");
  await expect400("schema: unsupported keyword", C, js({ type: "integer", multipleOf: 3 }), "'multipleOf'", "response_format.json_schema.schema");
  await expect400("schema: $ref cycle", C, js({ $defs: { n: { type: "object", properties: { next: { $ref: "#/$defs/n" } } } }, $ref: "#/$defs/n" }), "recursive");
  let deep = { type: "integer" };
  for (let i = 0; i < 1000; i++) deep = { type: "array", items: deep };
  const t0 = Date.now();
  const dr = await post(C, js(deep)); // cJSON's own nesting limit or the compiler's: a 400 either way
  check(dr.status === 400 && /deeper|parse/.test(dr.json?.error?.message ?? ""), "schema: 1,000 levels deep: 400", dr.text.slice(0, 300));
  await expect400("schema: 100,000-value enum", C, js({ enum: Array.from({ length: 100000 }, (_, i) => `v${i}`) }), "limit");
  check(Date.now() - t0 < 10000, "hostile schemas answered quickly", Date.now() - t0);
  await expect400("schema: not an object", C, js(5), "schema");
  await expect400("response_format: unknown type", C, { messages: m, response_format: { type: "yaml" } }, "yaml", "response_format.type");
  await expect400("grammar with response_format", C, { messages: m, grammar: 'root ::= "a"', response_format: { type: "json_object" } }, "together");
  await expect400("tools: not an array", C, { messages: m, tools: {} }, "array", "tools");
  await expect400("tools: 201 tools", C, { messages: m, tools: Array.from({ length: 201 }, (_, i) => ({ type: "function", function: { name: `f${i}` } })) }, "200", "tools");
  await expect400("tools: bad parameters schema", C, { messages: m, tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { a: { type: "string", format: "email" } } } } }] }, "email", "tools[0].function.parameters");
  await expect400("tool_choice: unknown function", C, { messages: m, tools: [weather], tool_choice: { type: "function", function: { name: "nope" } } }, "nope", "tool_choice.function.name");
  await expect400("tool_choice: bad value", C, { messages: m, tools: [weather], tool_choice: "sometimes" }, "sometimes", "tool_choice");
  await expect400("tool_choice without tools", C, { messages: m, tool_choice: "required" }, "no 'tools'", "tool_choice");
  await expect400("tool_calls: arguments not JSON", C, { messages: [...m, { role: "assistant", tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{nope" } }] }] }, "not valid JSON");
  // the SDK's typed error
  try {
    await client.chat.completions.create({ messages: m, grammar: "root ::= (" });
    check(false, "SDK: bad grammar throws");
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && /line 1, column/.test(e.message), "SDK: BadRequestError with line and column", String(e));
  }
}

console.log(`structured: ${passes} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
