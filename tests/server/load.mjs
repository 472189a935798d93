// load.mjs - many concurrent clients against `grok serve`, some of which
// disconnect at random moments (before the answer, mid-stream, while
// queued). Every request must either complete or be cancelled by us; the
// server must stay up, end with no busy slot and no queue, count the
// cancellations, and keep its RSS flat over rounds.
//   node load.mjs URL SERVER_PID [CLIENTS] [ROUNDS] [REQUESTS_PER_CLIENT] [RSS_CHECK=1]
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const [base, pidArg, nClients = "32", nRounds = "3", perClient = "3", rssCheck = "1"] = process.argv.slice(2);
const CLIENTS = +nClients, ROUNDS = +nRounds, PER = +perClient;
const pid = +pidArg;
let failures = 0;
const fail = (what, extra) => { failures++; console.log(`FAIL ${what}`, extra ?? ""); };

// a deterministic PRNG so a failing run can be repeated
let seed = 12345;
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);

const client = new OpenAI({ baseURL: base + "/v1", apiKey: "x", maxRetries: 0, timeout: 120_000 });
const words = "the quick brown fox jumps over the lazy dog while a small bird sings".split(" ");
const prompt = () => Array.from({ length: 4 + Math.floor(rnd() * 40) }, () => words[Math.floor(rnd() * words.length)]).join(" ");

function rssKiB() {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/);
  return m ? +m[1] : NaN;
}
async function metrics() {
  const t = await (await fetch(base + "/metrics")).text();
  const get = (name) => {
    let sum = 0;
    for (const line of t.split("\n")) if (line.startsWith(name + " ") || line.startsWith(name + "{")) sum += parseFloat(line.split(" ").pop());
    return sum;
  };
  return { busy: get("grok_slots_busy"), queue: get("grok_queue_length"), requests: get("grok_requests_total"),
    cancelled: get('grok_requests_finished_total{reason="cancelled"}'), finished: get("grok_requests_finished_total") };
}

const stats = { done: 0, aborted: 0, streamed: 0 };

async function one() {
  const stream = rnd() < 0.5;
  const abortMode = rnd() < 0.35 ? (rnd() < 0.5 ? "early" : "mid") : null;
  const max_tokens = 16 + Math.floor(rnd() * 240);
  const ctrl = new AbortController();
  let timer = null;
  if (abortMode === "early") timer = setTimeout(() => ctrl.abort(), Math.floor(rnd() * 60));
  const body = { model: "m", messages: [{ role: "user", content: prompt() }], max_tokens, temperature: 0.7 };
  const useModel = (await modelId);
  body.model = useModel;
  try {
    if (stream) {
      const s = await client.chat.completions.create({ ...body, stream: true }, { signal: ctrl.signal });
      let n = 0, finish = null;
      const cut = abortMode === "mid" ? 1 + Math.floor(rnd() * 4) : Infinity;
      for await (const chunk of s) {
        if (++n >= cut) { ctrl.abort(); break; }
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      // the openai package ends the iteration quietly when the signal aborts
      if (n >= cut || ctrl.signal.aborted) { stats.aborted++; return; }
      if (!finish) fail("stream ended without finish_reason");
      stats.streamed++;
    } else {
      if (abortMode === "mid") timer = setTimeout(() => ctrl.abort(), 5 + Math.floor(rnd() * 80));
      const r = await client.chat.completions.create(body, { signal: ctrl.signal });
      if (!["stop", "length"].includes(r.choices[0].finish_reason)) fail("bad finish_reason", r.choices[0]);
    }
    stats.done++;
  } catch (e) {
    if (ctrl.signal.aborted) stats.aborted++;
    else fail("request failed", String(e));
  } finally {
    clearTimeout(timer);
  }
}

const modelId = client.models.list().then((l) => l.data[0].id);

async function round(r) {
  const t0 = Date.now();
  await Promise.all(Array.from({ length: CLIENTS }, async () => { for (let i = 0; i < PER; i++) await one(); }));
  // cancelled slots must be released promptly
  let m;
  for (let i = 0; i < 50; i++) {
    m = await metrics();
    if (m.busy === 0 && m.queue === 0 && m.finished === m.requests) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  console.log(`round ${r}: ${((Date.now() - t0) / 1000).toFixed(1)} s, done ${stats.done} (streamed ${stats.streamed}), aborted ${stats.aborted}, ` +
    `server: requests ${m.requests}, finished ${m.finished}, cancelled ${m.cancelled}, busy ${m.busy}, queue ${m.queue}, RSS ${rssKiB()} KiB`);
  if (m.busy !== 0) fail("slots still busy after the round", m);
  if (m.queue !== 0) fail("requests still queued after the round", m);
  if (m.finished !== m.requests) fail("not every request finished", m);
}

try {
  await round(1); // warms up threads, arenas and caches
  const rss1 = rssKiB();
  for (let r = 2; r <= ROUNDS; r++) await round(r);
  const rss2 = rssKiB();
  const grow = rss2 - rss1;
  console.log(`RSS after round 1: ${rss1} KiB, after round ${ROUNDS}: ${rss2} KiB (${grow >= 0 ? "+" : ""}${grow} KiB)`);
  if (rssCheck === "1" && grow > Math.max(16384, rss1 * 0.25)) fail("RSS grew", { rss1, rss2 });
  const m = await metrics();
  if (stats.aborted === 0) fail("no request was aborted: the test did not exercise disconnects");
  if (m.cancelled === 0) fail("the server counted no cancellations", m);
  const h = await fetch(base + "/health");
  if (h.status !== 200) fail("health after load", h.status);
  const last = await client.chat.completions.create({ model: await modelId, messages: [{ role: "user", content: "still there?" }], max_tokens: 4 });
  if (!last.choices[0]) fail("a request after the load");
} catch (e) {
  fail("unexpected exception", e && e.stack ? e.stack : e);
}
console.log(`load: ${CLIENTS} clients x ${PER} requests x ${ROUNDS} rounds, ${stats.done} completed, ${stats.aborted} aborted, ${failures} failures`);
process.exit(failures ? 1 : 0);
