// node llama_tokenize.mjs PEER_DIR MODEL.gguf TEXT_FILE : prints llama.cpp's token ids of the
// file's text (special tokens parsed), space-separated.
import fs from "node:fs";
import path from "node:path";
import {pathToFileURL} from "node:url";
const [peer, modelPath, textPath] = process.argv.slice(2);
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(path.join(peer, "node_modules/node-llama-cpp/dist/index.js")).href);
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath, gpuLayers: 0, vocabOnly: true});
const text = fs.readFileSync(textPath, "utf8");
console.log(model.tokenize(text, true).join(" "));
await model.dispose(); await llama.dispose();
