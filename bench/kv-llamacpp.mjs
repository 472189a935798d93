// llama.cpp's logits with a given K cache type, for bench/kv-quality.
// usage: node kv-llamacpp.mjs MODEL.gguf TOKENS_FILE KTYPE STRIDE OUT.f32
// Evaluates the comma-separated tokens of TOKENS_FILE as one prompt (1 thread,
// V cache f16: llama.cpp cannot quantize V for grok, whose flash attention it
// turns off) and writes the logits of positions STRIDE-1, 2*STRIDE-1, ... as
// float32 rows. Run with node from the peer's folder (../shared/peer/setup.sh).
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
import fs from "node:fs";

const [modelPath, tokFile, kType, strideS, outPath] = process.argv.slice(2);
if (!outPath) {
    console.error("usage: node kv-llamacpp.mjs MODEL.gguf TOKENS_FILE KTYPE STRIDE OUT.f32");
    process.exit(2);
}
const tokens = fs.readFileSync(tokFile, "utf8").trim().split(",").map(Number);
const stride = Number(strideS);
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: 1});
const model = await llama.loadModel({modelPath, gpuLayers: 0, useMmap: true});
const context = await model.createContext({
    contextSize: tokens.length + 8, batchSize: 512, sequences: 1, threads: 1, flashAttention: false,
    experimentalKvCacheKeyType: kType.toUpperCase(), experimentalKvCacheValueType: "F16",
});
const seq = context.getSequence();
const input = tokens.map((t, i) => (i % stride === stride - 1 ? [t, {generateNext: {logits: true}}] : t));
const res = await seq.controlledEvaluate(input);
const rows = [];
for (let i = stride - 1; i < tokens.length; i += stride) {
    const m = res[i].next.logits;
    const row = new Float32Array(m.size);
    for (const [tok, v] of m) row[tok] = v;
    rows.push(row);
}
const out = new Float32Array(rows.length * rows[0].length);
rows.forEach((r, i) => out.set(r, i * r.length));
fs.writeFileSync(outPath, Buffer.from(out.buffer));
console.log(`llama.cpp ${llama.llamaCppRelease.release}: K ${kType} V F16, ${rows.length} positions written to ${outPath}`);
await context.dispose();
await model.dispose();
await llama.dispose();
