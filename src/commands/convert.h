/* convert.h - `grok convert`: xAI's official checkpoints to GGUF (llama.cpp's
 * `grok` architecture, which grok.c and llama.cpp both load).
 *
 *   grok convert grok1-ckpt CKPT_DIR OUT.gguf [--type T] [--tokenizer tokenizer.model]
 *   grok convert hf HF_DIR OUT.gguf [--type T]
 *
 * grok1-ckpt reads the Grok-1 JAX release (../shared/docs/grok-architecture.md
 * A3): 2 + 12·layers pickle files tensor%05d_000, read with a pickle opcode
 * scanner (pickle.h), mapped to layers by the lexicographic order of the
 * layer numbers, int8 weights dequantized with their per-column or 8-block
 * bf16 scales as the JAX reference does, bf16(w8 * scale) - or, for Q8_0
 * output, carried over as Q8_0 blocks (d = the scale, q = the int8 values)
 * where that is exact. hf reads Hugging Face safetensors: Grok-2's official
 * files (the tensor-parallel shards of the experts concatenated back, B7,
 * tokenizer.tok.json) and the Grok-1 ports (keyfan/grok-1-hf names, A8,
 * tokenizer.model).
 *
 * Tensors are streamed one at a time through the GGUF writer (peak memory:
 * the largest output tensor plus small per-thread tiles; the inputs are
 * memory-mapped), with a progress bar. Sizes are checked before anything is
 * written; the output appears under its name only when complete. */
#ifndef GROK_CONVERT_H
#define GROK_CONVERT_H

int cmd_convert(int argc, char **argv);

#endif
