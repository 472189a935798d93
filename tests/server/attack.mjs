// attack.mjs - `grok serve` against a hostile or careless client (issue 16):
//   node attack.mjs conns URL              1,100 idle connections from one address and 1,100 from
//                                          twenty: a new client is still served within a second, the
//                                          idle ones are closed by --timeout; garbage gets a 400 or is
//                                          closed; a half-closed client gets its answer; invalid UTF-8
//                                          is a 400
//   node attack.mjs text URL               the first generated token keeps its leading space
//                                          (completions, echo, streaming, logprobs text_offset; chat)
//   node attack.mjs sigterm URL PID        SIGTERM with 32 requests in flight: every client gets a 503
//                                          JSON error or an SSE error event and [DONE]
//   node attack.mjs soak URL PID SECONDS [MAX_REQUESTS]
//                                          random requests with disconnects and slow readers for at most
//                                          SECONDS: RSS before/after, p99 /health latency
// Only node's own modules: raw sockets where the openai package would hide what is on the wire.
import net from "node:net";
import http from "node:http";
import { readFileSync } from "node:fs";

const [mode, base, ...rest] = process.argv.slice(2);
const url = new URL(base);
const HOST = url.hostname, PORT = +url.port;
let failures = 0, passes = 0;
function check(cond, what, extra) {
  if (cond) passes++;
  else {
    failures++;
    console.log(`FAIL ${what}` + (extra !== undefined ? `: ${typeof extra === "string" ? extra : JSON.stringify(extra)}` : ""));
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One raw exchange: sends bytes, optionally half-closes, collects everything until the server closes
// (or `wait` ms pass). Resolves {data, closed, ms, error}.
function raw(bytes, { halfClose = false, wait = 5000, localAddress } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const chunks = [];
    let done = false;
    const s = net.connect({ host: HOST, port: PORT, localAddress, allowHalfOpen: true }, () => {
      s.write(bytes);
      if (halfClose) s.end();
    });
    const finish = (closed, error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ data: Buffer.concat(chunks).toString("latin1"), closed, ms: Date.now() - t0, error });
    };
    const timer = setTimeout(() => finish(false), wait);
    s.on("data", (b) => chunks.push(b));
    s.on("end", () => finish(true));
    s.on("error", (e) => finish(true, e.code));
  });
}

// A plain HTTP request with node:http (no keep-alive). Resolves {status, body, ms}.
function request(method, path, body, { localAddress, headers = {}, timeout = 30000 } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const req = http.request({ host: HOST, port: PORT, method, path, localAddress, agent: false, timeout,
      headers: { "Content-Type": "application/json", ...headers } }, (res) => {
      const chunks = [];
      res.on("data", (b) => chunks.push(b));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString("utf8"), ms: Date.now() - t0 }));
      res.on("error", (e) => resolve({ status: -1, body: String(e), ms: Date.now() - t0 }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (e) => resolve({ status: -1, body: String(e), ms: Date.now() - t0 }));
    if (body !== undefined) req.write(typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body));
    req.end();
  });
}
const json = (t) => { try { return JSON.parse(t); } catch { return null; } };

// Opens n idle TCP connections (nothing sent) from localAddress; resolves the sockets, each with
// .closedAt set when the server closes it.
async function idle(n, localAddress) {
  const socks = [];
  await Promise.all(Array.from({ length: n }, () => new Promise((resolve) => {
    const s = net.connect({ host: HOST, port: PORT, localAddress }, () => resolve());
    s.closedAt = 0;
    s.on("close", () => { s.closedAt = Date.now(); resolve(); });
    s.on("error", () => {});
    socks.push(s);
  })));
  return socks;
}

async function conns(nIdle) {
  // 1. one address opens 1,100 idle connections: --max-conns-per-ip keeps most of them out
  const one = await idle(nIdle, "127.0.0.2");
  await sleep(300);
  const heldOne = one.filter((s) => !s.closedAt).length;
  console.log(`one address: ${heldOne} of ${nIdle} idle connections held (the rest refused by the per-address limit)`);
  check(heldOne < nIdle, "the per-address limit refuses connections", heldOne);
  let r = await request("GET", "/health");
  check(r.status === 200 && r.ms < 1000, "a new client is served within a second next to 1,100 idle connections", r);
  // 2. twenty addresses, 55 each: 1,100 more held at once, still under --max-conns
  const many = [];
  for (let i = 0; i < 20; i++) many.push(...(await idle(Math.ceil(nIdle / 20), `127.0.0.${10 + i}`)));
  await sleep(300);
  const heldMany = many.filter((s) => !s.closedAt).length;
  console.log(`twenty addresses: ${heldMany} of ${many.length} idle connections held`);
  check(heldMany >= Math.min(1000, many.length), `${Math.min(1000, many.length)}+ idle connections from many addresses are held`, heldMany);
  const t0 = Date.now();
  const rs = await Promise.all([request("GET", "/health"), request("GET", "/v1/models", undefined, { localAddress: "127.0.0.200" }),
    request("POST", "/v1/completions", { prompt: "hello", max_tokens: 4 })]);
  console.log(`three new clients beside ${heldOne + heldMany} idle connections: ${rs.map((x) => x.status + " in " + x.ms + " ms").join(", ")}`);
  for (const x of rs) check(x.status === 200 && x.ms < 1000, "a new client is served within a second", x);
  check(Date.now() - t0 < 2000, "three new clients in under 2 s");
  // 3. --timeout (2 s in this test) closes all of them
  await sleep(3500);
  const open = [...one, ...many].filter((s) => !s.closedAt).length;
  console.log(`after the idle timeout: ${open} idle connections still open`);
  check(open === 0, "the idle timeout closed every idle connection", open);
  for (const s of [...one, ...many]) s.destroy();

  // 4. garbage: a 400 at once; what only looks like the start of a request is closed by the timeout
  for (const [g, want400] of [["\x01\x02 garbage\r\n\r\n", true], ["\x00\x01\x02 garbage\r\n\r\n", true], ["garbage\r\n\r\n", true],
    ["GET /health\r\n\r\n", true], ["GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", true],
    [" GET / HTTP/1.1\r\n\r\n", true], ["\xff\xfe\xfd\r\n\r\n", true], ["\r\n\r\n\r\n", false]]) {
    const x = await raw(Buffer.from(g, "latin1"), { wait: 4000 });
    const status = +(x.data.match(/^HTTP\/1\.1 (\d+)/) || [])[1];
    if (want400) check(x.closed && status === 400 && x.ms < 1000, `garbage ${JSON.stringify(g)}: a 400 at once`, x);
    else check(x.closed && x.ms < 3000, `${JSON.stringify(g)}: closed by the timeout`, x);
  }
  // a slow header (one byte, then nothing) is closed by the timeout
  const slow = await raw(Buffer.from("GET /hea"), { wait: 5000 });
  check(slow.closed && slow.ms < 4000, "a request line that never ends is closed by the timeout", slow);

  // 5. a client that half-closes after its request still gets the answer
  for (const stream of [false, true]) {
    const body = JSON.stringify({ prompt: "once upon a time", max_tokens: 200, ignore_eos: true, stream });
    const x = await raw(Buffer.from(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`), { halfClose: true, wait: 20000 });
    const ok = stream ? /HTTP\/1\.1 200/.test(x.data) && x.data.includes("data: [DONE]") && x.data.includes('"finish_reason":"length"')
      : /HTTP\/1\.1 200/.test(x.data) && x.data.includes('"finish_reason":"length"');
    check(ok, `a half-closed client gets its whole answer (stream ${stream})`, x.data.slice(0, 300) + " ... " + x.data.slice(-200));
  }
  // ... and one that really goes away mid-request is cancelled
  const m0 = await metricsText();
  {
    const body = JSON.stringify({ prompt: "once upon a time", max_tokens: 4000, ignore_eos: true });
    const s = net.connect({ host: HOST, port: PORT }, () => s.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\n` +
      `Content-Length: ${body.length}\r\n\r\n${body}`));
    s.on("error", () => {});
    await sleep(100);
    s.destroy();
    let cancelled = false;
    for (let i = 0; i < 50 && !cancelled; i++) {
      await sleep(100);
      cancelled = metric(await metricsText(), 'grok_requests_finished_total{reason="cancelled"}') > metric(m0, 'grok_requests_finished_total{reason="cancelled"}');
    }
    check(cancelled, "a client that closed its socket is cancelled (not run to max_tokens)");
  }

  // 6. invalid UTF-8 in a JSON string is a 400 naming the problem, as OpenAI answers
  for (const bad of [Buffer.from([0xff]), Buffer.from([0xc0, 0xaf]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xe2, 0x82])]) {
    const body = Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"a'), bad, Buffer.from('b"}],"max_tokens":2}')]);
    const x = await request("POST", "/v1/chat/completions", body);
    const j = json(x.body);
    check(x.status === 400 && j && j.error && /UTF-8/.test(j.error.message), `invalid UTF-8 ${bad.toString("hex")}: 400`, x);
  }
  const ok = await request("POST", "/v1/chat/completions", { messages: [{ role: "user", content: "héllo 日本 😀" }], max_tokens: 2 });
  check(ok.status === 200, "valid UTF-8 is accepted", ok);
}

async function metricsText() { return (await request("GET", "/metrics")).body; }
function metric(t, name) {
  let sum = 0;
  for (const line of t.split("\n")) if (line.startsWith(name + " ") || line.startsWith(name + "{") || line.startsWith(name)) {
    if (line.startsWith("#")) continue;
    if (line.split(" ")[0] === name || (name.includes("{") && line.startsWith(name))) sum += parseFloat(line.split(" ").pop());
  }
  return sum;
}

// SSE text -> events (parsed JSON or "[DONE]")
function sse(body) {
  return body.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6)).map((d) => d === "[DONE]" ? d : json(d));
}

async function text() {
  const prompt = "The answer is";
  const base = { prompt, max_tokens: 6, temperature: 0 };
  const a = json((await request("POST", "/v1/completions", base)).body);
  const t = a && a.choices[0].text;
  console.log(`completion of ${JSON.stringify(prompt)}: ${JSON.stringify(t)}`);
  check(typeof t === "string" && t.startsWith(" "), "completions: the first token keeps its leading space", t);
  const e = json((await request("POST", "/v1/completions", { ...base, echo: true })).body);
  check(e && e.choices[0].text === prompt + t, "completions echo: prompt + text", e && e.choices[0].text);
  const s = sse((await request("POST", "/v1/completions", { ...base, stream: true })).body);
  const pieces = s.filter((x) => x && x !== "[DONE]" && x.choices && x.choices[0].text).map((x) => x.choices[0].text);
  check(pieces.length > 0 && pieces[0].startsWith(" "), "streaming: the first chunk keeps its leading space", pieces);
  check(pieces.join("") === t, "streaming: the chunks make the same text", [pieces.join(""), t]);
  check(s[s.length - 1] === "[DONE]", "streaming ends with [DONE]");
  for (const stream of [false, true]) {
    for (const echo of stream ? [false] : [false, true]) {
      const r = (await request("POST", "/v1/completions", { ...base, max_tokens: 24, logprobs: 2, stream, echo })).body;
      let txt = "", toks = [], offs = [];
      if (stream) {
        for (const x of sse(r)) if (x && x !== "[DONE]" && x.choices && x.choices[0].logprobs) {
          txt += x.choices[0].text;
          toks.push(...x.choices[0].logprobs.tokens);
          offs.push(...x.choices[0].logprobs.text_offset);
        }
      } else {
        const j = json(r);
        txt = j.choices[0].text;
        toks = j.choices[0].logprobs.tokens;
        offs = j.choices[0].logprobs.text_offset;
      }
      const bytes = Buffer.from(txt, "utf8");
      let bad = 0;
      const start = echo ? Buffer.byteLength(prompt) : 0;
      let pos = start;
      for (let i = 0; i < toks.length; i++) {
        if (offs[i] !== pos) bad++;
        if (!toks[i].startsWith("bytes:") && bytes.subarray(offs[i], offs[i] + Buffer.byteLength(toks[i])).toString("utf8") !== toks[i]) bad++;
        pos += toks[i].startsWith("bytes:") ? 1 : Buffer.byteLength(toks[i]);
      }
      check(toks.length > 0 && bad === 0, `logprobs text_offset points at each token in the text (stream ${stream}, echo ${echo})`,
        { txt, toks, offs });
    }
  }
  // chat: the reply is a message of its own: it starts without the template's separating space
  const c = json((await request("POST", "/v1/chat/completions", { messages: [{ role: "user", content: "What does happy mean?" }], max_tokens: 8, temperature: 0 })).body);
  const content = c && c.choices[0].message.content;
  console.log(`chat reply: ${JSON.stringify(content)}`);
  check(typeof content === "string" && content.length > 0 && !content.startsWith(" "), "chat: the reply does not start with a space", content);
  const cs = sse((await request("POST", "/v1/chat/completions", { messages: [{ role: "user", content: "What does happy mean?" }], max_tokens: 8, temperature: 0, stream: true })).body);
  const cp = cs.filter((x) => x && x !== "[DONE]" && x.choices && x.choices[0].delta && x.choices[0].delta.content).map((x) => x.choices[0].delta.content).join("");
  check(cp === content, "chat streaming: the same reply", [cp, content]);
}

async function sigterm(pid) {
  const N = 32;
  const results = Array(N).fill(null);
  const started = [];
  for (let i = 0; i < N; i++) {
    // completions: a chat reply ends at the template's end of turn even with ignore_eos
    const stream = i % 2 === 0, chat = false;
    const body = chat ? { messages: [{ role: "user", content: `request ${i}` }], ignore_eos: true, stream }
      : { prompt: `request ${i}`, ignore_eos: true, stream };
    started.push(request("POST", chat ? "/v1/chat/completions" : "/v1/completions", body, { timeout: 60000 })
      .then((r) => { results[i] = { ...r, stream }; }));
  }
  // wait until every request is in, the first ones running and the rest queued
  for (let i = 0; i < 100; i++) {
    const h = json((await request("GET", "/health")).body);
    if (h && h.slots_processing + h.queue_length >= N && h.slots_processing > 0) break;
    await sleep(50);
  }
  const h = json((await request("GET", "/health")).body);
  console.log(`before SIGTERM: ${h.slots_processing} running, ${h.queue_length} queued`);
  check(h.slots_processing + h.queue_length === N && h.slots_processing > 0, "32 requests in flight (running and queued) before SIGTERM", h);
  process.kill(pid, "SIGTERM");
  await Promise.all(started);
  let ok = 0;
  for (const [i, r] of results.entries()) {
    let good;
    if (r.stream) {
      const ev = sse(r.body);
      good = r.status === 200 && ev.length >= 2 && ev[ev.length - 1] === "[DONE]" && ev[ev.length - 2] && ev[ev.length - 2].error &&
        /shutting down/.test(ev[ev.length - 2].error.message);
    } else {
      const j = json(r.body);
      good = r.status === 503 && j && j.error && /shutting down/.test(j.error.message) && j.error.type === "server_error";
    }
    if (good) ok++;
    else check(false, `request ${i} (stream ${r.stream}) got its shutdown error`, { status: r.status, body: r.body.slice(-300) });
  }
  console.log(`SIGTERM: ${ok} of ${N} clients got the 503 / the SSE error event and [DONE]`);
  check(ok === N, "every in-flight client got its error");
}

function rssKiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/);
  return m ? +m[1] : NaN;
}

async function soak(pid, seconds, maxRequests) {
  let seed = 4242;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const words = "the quick brown fox jumps over the lazy dog while a small bird sings".split(" ");
  const prompt = () => Array.from({ length: 2 + Math.floor(rnd() * 30) }, () => words[Math.floor(rnd() * words.length)]).join(" ");
  const rss0 = rssKiB(pid);
  const t0 = Date.now(), deadline = t0 + seconds * 1000;
  const stats = { done: 0, aborted: 0, slow: 0, errors: 0, sent: 0 };
  const lat = [];
  let stop = false;
  // /health latency, every 50 ms, while the load runs
  const prober = (async () => {
    while (!stop) {
      const r = await request("GET", "/health");
      if (r.status === 200) lat.push(r.ms);
      else stats.errors++;
      await sleep(50);
    }
  })();
  async function one() {
    const kind = rnd();
    const stream = rnd() < 0.5;
    const chat = rnd() < 0.5;
    const body = chat ? { messages: [{ role: "user", content: prompt() }], max_tokens: 4 + Math.floor(rnd() * 60), stream }
      : { prompt: prompt(), max_tokens: 4 + Math.floor(rnd() * 60), stream, logprobs: rnd() < 0.3 ? 2 : undefined };
    const path = chat ? "/v1/chat/completions" : "/v1/completions";
    stats.sent++;
    if (kind < 0.25) { // disconnect at a random moment
      const payload = JSON.stringify(body);
      await new Promise((resolve) => {
        const s = net.connect({ host: HOST, port: PORT }, () => s.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${payload.length}\r\n\r\n${payload}`));
        s.on("error", () => {});
        s.on("data", () => {});
        setTimeout(() => { s.destroy(); resolve(); }, Math.floor(rnd() * 120));
      });
      stats.aborted++;
      return;
    }
    if (kind < 0.35) { // a slow client: sends its request in pieces, reads late
      const payload = JSON.stringify(body);
      const msg = `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n\r\n${payload}`;
      const r = await new Promise((resolve) => {
        const chunks = [];
        const s = net.connect({ host: HOST, port: PORT }, async () => {
          for (let i = 0; i < msg.length; i += 40) { s.write(msg.slice(i, i + 40)); await sleep(5); }
          s.pause();
          await sleep(200);
          s.resume();
        });
        s.on("data", (b) => chunks.push(b));
        s.on("end", () => resolve(Buffer.concat(chunks).toString()));
        s.on("error", () => resolve(Buffer.concat(chunks).toString()));
      });
      if (/^HTTP\/1\.1 200/.test(r)) stats.slow++;
      else { stats.errors++; console.log("slow client failed:", r.slice(0, 200)); }
      return;
    }
    const r = await request("POST", path, body);
    if (r.status === 200 && (!stream || r.body.includes("data: [DONE]"))) stats.done++;
    else { stats.errors++; console.log("request failed:", r.status, r.body.slice(0, 200)); }
  }
  const C = 16;
  await Promise.all(Array.from({ length: C }, async () => {
    while (Date.now() < deadline && stats.sent < maxRequests) await one();
  }));
  stop = true;
  await prober;
  // the server settles: no busy slot, no queue
  let h;
  for (let i = 0; i < 50; i++) {
    h = json((await request("GET", "/health")).body);
    if (h && h.slots_processing === 0 && h.queue_length === 0) break;
    await sleep(100);
  }
  await sleep(300); // the engine trims the heap once idle
  const rss1 = rssKiB(pid);
  lat.sort((a, b) => a - b);
  const p = (q) => lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] : NaN;
  const secs = (Date.now() - t0) / 1000;
  console.log(`soak: ${stats.sent} requests in ${secs.toFixed(1)} s (${stats.done} complete, ${stats.slow} slow clients, ` +
    `${stats.aborted} disconnects, ${stats.errors} errors); /health latency p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, ` +
    `max ${lat[lat.length - 1]} ms over ${lat.length} probes; RSS ${rss0} -> ${rss1} KiB (${rss1 - rss0 >= 0 ? "+" : ""}${rss1 - rss0})`);
  check(stats.errors === 0, "soak: no request failed", stats);
  check(h && h.slots_processing === 0 && h.queue_length === 0, "soak: no busy slot or queue afterwards", h);
  check(p(0.99) < 1000, "soak: p99 /health latency under a second", p(0.99));
  return { rss0, rss1 };
}

try {
  if (mode === "conns") await conns(+(rest[0] || 1100));
  else if (mode === "text") await text();
  else if (mode === "sigterm") await sigterm(+rest[0]);
  else if (mode === "soak") {
    const { rss0, rss1 } = await soak(+rest[0], +(rest[1] || 20), +(rest[2] || 1e9));
    if (rest[3] === "1") check(rss1 - rss0 < Math.max(32768, rss0 * 0.25), "soak: RSS stays bounded", { rss0, rss1 });
  } else {
    console.log("usage: node attack.mjs conns|text|sigterm|soak URL [...]");
    process.exit(2);
  }
} catch (e) {
  check(false, "unexpected exception", e && e.stack ? e.stack : String(e));
}
console.log(`attack ${mode}: ${passes} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
