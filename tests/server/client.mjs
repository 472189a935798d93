// client.mjs - functional tests of `grok serve` with the official openai
// package (unchanged) and raw fetch for malformed requests.
//   node client.mjs api URL        chat, streaming, completions, models, seeds,
//                                  stops, logprobs, tokenize, errors
//   node client.mjs auth URL KEY   a server started with --api-key KEY
import OpenAI from "openai";

const [mode, base, key] = process.argv.slice(2);
let failures = 0, passes = 0;
function check(cond, what, extra) {
  if (cond) passes++;
  else {
    failures++;
    console.log(`FAIL ${what}` + (extra !== undefined ? `: ${typeof extra === "string" ? extra : JSON.stringify(extra)}` : ""));
  }
}
async function post(path, body, headers = {}) {
  const r = await fetch(base + path, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  let j = null;
  const text = await r.text();
  try { j = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json: j, text };
}
function isOpenAIError(j) {
  return j && j.error && typeof j.error.message === "string" && j.error.message.length > 0 &&
    typeof j.error.type === "string" && "param" in j.error && "code" in j.error;
}
async function expectError(what, path, body, status, param, headers) {
  const r = await post(path, body, headers);
  check(r.status === status, `${what}: status ${status}`, `${r.status} ${r.text.slice(0, 300)}`);
  check(isOpenAIError(r.json), `${what}: OpenAI error JSON`, r.text.slice(0, 300));
  if (param !== undefined && r.json && r.json.error) check(r.json.error.param === param, `${what}: param ${param}`, r.json.error);
  return r;
}

const msgs = [{ role: "system", content: "You are terse." }, { role: "user", content: "Tell me a story about a fox." }];

async function api() {
  const client = new OpenAI({ baseURL: base + "/v1", apiKey: "not-needed", maxRetries: 0, timeout: 60_000 });

  // models
  const models = await client.models.list();
  const ids = [];
  for await (const m of models) ids.push(m.id);
  check(ids.length === 1, "models.list: one model", ids);
  const model = ids[0];
  const got = await client.models.retrieve(model);
  check(got.id === model && got.object === "model", "models.retrieve", got);

  // chat, not streaming
  const c1 = await client.chat.completions.create({ model, messages: msgs, max_tokens: 24, seed: 7, temperature: 0.9 });
  check(c1.object === "chat.completion", "chat: object", c1.object);
  check(/^chatcmpl-/.test(c1.id), "chat: id", c1.id);
  check(typeof c1.created === "number" && c1.model === model && typeof c1.system_fingerprint === "string", "chat: created/model/fingerprint", c1);
  const ch = c1.choices[0];
  check(c1.choices.length === 1 && ch.index === 0 && ch.message.role === "assistant", "chat: choice", c1.choices);
  check(typeof ch.message.content === "string", "chat: content is a string", ch.message);
  check(["stop", "length"].includes(ch.finish_reason), "chat: finish_reason", ch.finish_reason);
  const u = c1.usage;
  check(u && u.prompt_tokens > 0 && u.completion_tokens > 0 && u.total_tokens === u.prompt_tokens + u.completion_tokens, "chat: usage", u);
  check(ch.finish_reason !== "length" || u.completion_tokens === 24, "chat: length means max_tokens", u);

  // same seed -> same text; another seed -> another text
  const c2 = await client.chat.completions.create({ model, messages: msgs, max_tokens: 24, seed: 7, temperature: 0.9 });
  check(c2.choices[0].message.content === ch.message.content, "seed: same seed, same text", [ch.message.content, c2.choices[0].message.content]);
  const c3 = await client.chat.completions.create({ model, messages: msgs, max_tokens: 24, seed: 8, temperature: 0.9 });
  check(c3.choices[0].message.content !== ch.message.content, "seed: other seed, other text", c3.choices[0].message.content);

  // streaming (same seed: the same text arrives in pieces), with usage
  const stream = await client.chat.completions.create({
    model, messages: msgs, max_tokens: 24, seed: 7, temperature: 0.9, stream: true, stream_options: { include_usage: true },
  });
  let text = "", finish = null, usage = null, chunks = 0, role = null, sameId = true, firstId = null;
  for await (const chunk of stream) {
    chunks++;
    firstId ??= chunk.id;
    if (chunk.id !== firstId) sameId = false;
    check(chunk.object === "chat.completion.chunk", "stream: chunk object", chunk.object);
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    if (c.delta.role) role = c.delta.role;
    if (c.delta.content) text += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
  check(chunks >= 3 && sameId, "stream: chunks with one id", chunks);
  check(role === "assistant", "stream: role chunk", role);
  check(text === ch.message.content, "stream: same text as non-streaming", [text, ch.message.content]);
  check(finish === ch.finish_reason, "stream: finish_reason", finish);
  check(usage && usage.completion_tokens === u.completion_tokens && usage.prompt_tokens === u.prompt_tokens, "stream: usage chunk", usage);

  // content as an array of text parts
  const parts = await client.chat.completions.create({
    model, max_tokens: 4, messages: [{ role: "user", content: [{ type: "text", text: "Tell me " }, { type: "text", text: "a story." }] }],
  });
  check(parts.choices[0].message.content !== undefined, "chat: text-part content", parts);

  // stop strings (greedy, so the text is known in advance)
  const g = await client.chat.completions.create({ model, messages: msgs, max_tokens: 40, temperature: 0 });
  const full = g.choices[0].message.content;
  const cps = Array.from(full);
  if (cps.length >= 12) {
    const k = Math.floor(cps.length / 2);
    const stop = cps.slice(k, k + 2).join("");
    const expect = full.slice(0, full.indexOf(stop));
    const s1 = await client.chat.completions.create({ model, messages: msgs, max_tokens: 40, temperature: 0, stop: [stop, "\u0001never"] });
    check(s1.choices[0].message.content === expect, "stop: text ends before the stop string", [stop, expect, s1.choices[0].message.content]);
    check(s1.choices[0].finish_reason === "stop", "stop: finish_reason stop", s1.choices[0].finish_reason);
    const s2 = await client.chat.completions.create({ model, messages: msgs, max_tokens: 40, temperature: 0, stop, stream: true });
    let st = "", sf = null;
    for await (const c of s2) {
      if (c.choices[0]?.delta?.content) st += c.choices[0].delta.content;
      if (c.choices[0]?.finish_reason) sf = c.choices[0].finish_reason;
    }
    check(st === expect && sf === "stop", "stop: streaming", [st, sf]);
  } else {
    check(false, "stop: greedy text long enough to pick a stop string", full);
  }

  // logprobs
  const lp = await client.chat.completions.create({ model, messages: msgs, max_tokens: 6, logprobs: true, top_logprobs: 3, seed: 1 });
  const content = lp.choices[0].logprobs?.content;
  check(Array.isArray(content) && content.length === lp.usage.completion_tokens, "logprobs: one entry per token", lp.choices[0].logprobs);
  if (Array.isArray(content))
    for (const e of content)
      check(e.logprob <= 0 && e.top_logprobs.length === 3 && Array.isArray(e.bytes) && e.top_logprobs[0].logprob >= e.top_logprobs[2].logprob,
        "logprobs: entry", e);

  // completions
  const t1 = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12, seed: 3 });
  check(t1.object === "text_completion" && /^cmpl-/.test(t1.id), "completions: object/id", t1);
  check(typeof t1.choices[0].text === "string" && ["stop", "length"].includes(t1.choices[0].finish_reason), "completions: choice", t1.choices);
  check(t1.usage.completion_tokens <= 12 && t1.usage.prompt_tokens > 0, "completions: usage", t1.usage);
  const t2 = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12, seed: 3, stream: true });
  let tt = "";
  for await (const c of t2) tt += c.choices[0]?.text ?? "";
  check(tt === t1.choices[0].text, "completions: streaming gives the same text", [tt, t1.choices[0].text]);
  const t3 = await client.completions.create({ model, prompt: [5, 6, 7, 8], max_tokens: 3, logprobs: 2 });
  check(t3.choices[0].logprobs && t3.choices[0].logprobs.tokens.length === t3.usage.completion_tokens, "completions: token prompt + logprobs", t3.choices[0]);

  // tokenize / detokenize
  const tk = await post("/tokenize", { content: "Hello world" });
  check(tk.status === 200 && Array.isArray(tk.json.tokens) && tk.json.tokens.length > 0, "tokenize", tk.text);
  const dt = await post("/detokenize", { tokens: tk.json?.tokens ?? [] });
  check(dt.status === 200 && dt.json.content === "Hello world", "detokenize round trip", dt.text);

  // /health, /metrics, the page
  const h = await fetch(base + "/health").then((r) => r.json());
  check(h.status === "ok", "health", h);
  const met = await fetch(base + "/metrics").then((r) => r.text());
  for (const name of ["grok_requests_total", "grok_prompt_tokens_total", "grok_generated_tokens_total", "grok_generation_tokens_per_second", "grok_queue_length", "grok_slots_busy"])
    check(met.includes("\n" + name) || met.startsWith(name), `metrics: ${name}`);
  const page = await fetch(base + "/");
  check(page.status === 200 && (page.headers.get("content-type") || "").startsWith("text/html") && (await page.text()).includes("<textarea"), "GET / serves the page");

  // malformed requests -> OpenAI-style errors with the right 4xx
  const C = "/v1/chat/completions";
  const ok = { messages: [{ role: "user", content: "hi" }], max_tokens: 2 };
  await expectError("bad JSON", C, '{"messages": [', 400);
  await expectError("not an object", C, "[1,2]", 400);
  await expectError("empty body", C, "", 400);
  await expectError("wrong type: messages", C, { messages: "hi" }, 400, "messages");
  await expectError("wrong type: temperature", C, { ...ok, temperature: "hot" }, 400, "temperature");
  await expectError("wrong type: stream", C, { ...ok, stream: "yes" }, 400, "stream");
  await expectError("wrong type: message role", C, { messages: [{ role: 5, content: "x" }] }, 400, "messages[0].role");
  await expectError("wrong type: content part", C, { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }, 400, "messages[0].content[0]");
  await expectError("out of range: temperature", C, { ...ok, temperature: 7 }, 400, "temperature");
  await expectError("missing messages", C, { model }, 400, "messages");
  await expectError("empty messages", C, { messages: [] }, 400, "messages");
  await expectError("unknown role", C, { messages: [{ role: "wizard", content: "x" }] }, 400, "messages[0].role");
  await expectError("unknown model", C, { ...ok, model: "gpt-nonexistent" }, 404, "model");
  await expectError("negative max_tokens", C, { ...ok, max_tokens: -5 }, 400, "max_tokens");
  await expectError("fractional max_tokens", C, { ...ok, max_tokens: 1.5 }, 400, "max_tokens");
  await expectError("n = 2", C, { ...ok, n: 2 }, 400, "n");
  await expectError("tools: bad function name", C, { ...ok, tools: [{ type: "function", function: { name: "not a name" } }] }, 400, "tools[0].function.name");
  await expectError("response_format: unsupported keyword", C, { ...ok, response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "integer", multipleOf: 3 } } } }, 400, "response_format.json_schema.schema");
  await expectError("unknown field", C, { ...ok, frobnicate: 1 }, 400, "frobnicate");
  await expectError("too many stops", C, { ...ok, stop: ["a", "b", "c", "d", "e", "f", "g", "h", "i"] }, 400, "stop");
  await expectError("top_logprobs without logprobs", C, { ...ok, top_logprobs: 2 }, 400, "top_logprobs");
  await expectError("stream_options without stream", C, { ...ok, stream_options: { include_usage: true } }, 400, "stream_options");
  await expectError("prompt longer than the context", C, { messages: [{ role: "user", content: "word ".repeat(6000) }] }, 400, "messages");
  await expectError("completions: missing prompt", "/v1/completions", { max_tokens: 2 }, 400, "prompt");
  await expectError("completions: bad token id", "/v1/completions", { prompt: [1, 2, 99999999] }, 400, "prompt");
  await expectError("completions: negative max_tokens", "/v1/completions", { prompt: "x", max_tokens: -1 }, 400, "max_tokens");
  const big = JSON.stringify({ messages: [{ role: "user", content: "x".repeat(3 << 20) }] });
  await expectError("huge body", C, big, 413);
  const nf = await fetch(base + "/v1/nothing-here");
  check(nf.status === 404 && isOpenAIError(await nf.json()), "unknown route: 404");
  const wm = await fetch(base + C);
  check(wm.status === 405 && isOpenAIError(await wm.json()), "GET on a POST endpoint: 405");
  // the openai package reports these as its typed errors
  try {
    await client.chat.completions.create({ model: "no-such-model", messages: msgs });
    check(false, "openai: unknown model throws");
  } catch (e) {
    check(e instanceof OpenAI.NotFoundError && e.status === 404, "openai: NotFoundError for an unknown model", String(e));
  }
  try {
    await client.chat.completions.create({ model, messages: msgs, max_tokens: -1 });
    check(false, "openai: negative max_tokens throws");
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === "max_tokens", "openai: BadRequestError", String(e));
  }
  // the server still works after all that
  const after = await client.chat.completions.create({ model, messages: msgs, max_tokens: 3 });
  check(after.choices[0].message.content !== undefined, "still serving after bad requests");
}

async function auth() {
  const C = "/v1/chat/completions";
  const ok = { messages: [{ role: "user", content: "hi" }], max_tokens: 2 };
  await expectError("auth: no key", C, ok, 401);
  await expectError("auth: wrong key", C, ok, 401, undefined, { Authorization: "Bearer wrong" + key });
  await expectError("auth: not bearer", C, ok, 401, undefined, { Authorization: "Basic " + key });
  const r = await fetch(base + "/v1/models");
  check(r.status === 401, "auth: models needs the key", r.status);
  const h = await fetch(base + "/health");
  check(h.status === 200, "auth: health is open", h.status);
  const bad = new OpenAI({ baseURL: base + "/v1", apiKey: "nope", maxRetries: 0 });
  try {
    await bad.chat.completions.create({ model: "x", messages: ok.messages });
    check(false, "auth: openai with a wrong key throws");
  } catch (e) {
    check(e instanceof OpenAI.AuthenticationError && e.status === 401, "auth: AuthenticationError", String(e));
  }
  const client = new OpenAI({ baseURL: base + "/v1", apiKey: key, maxRetries: 0 });
  const models = await client.models.list();
  const c = await client.chat.completions.create({ model: models.data[0].id, ...ok });
  check(c.choices[0].message.role === "assistant", "auth: right key works");
}

try {
  if (mode === "api") await api();
  else if (mode === "auth") await auth();
  else throw new Error("usage: node client.mjs api|auth URL [KEY]");
} catch (e) {
  failures++;
  console.log("FAIL unexpected exception:", e && e.stack ? e.stack : e);
}
console.log(`client ${mode}: ${passes} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
