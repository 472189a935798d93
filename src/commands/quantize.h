/* quantize.h - `grok quantize IN.gguf OUT.gguf TYPE [-t N] [--pure]`:
 * rewrites a GGUF model with its weight matrices in another ggml type, one
 * tensor at a time (streamed through the GGUF writer's fill callback, so the
 * model is never held in memory), on a pool of threads, with a progress bar
 * on stderr.
 *
 * TYPE is a ggml type (f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q3_K,
 * q4_K, q5_K, q6_K: every weight matrix gets it) or one of the mixes Q2_K,
 * Q3_K_M, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M (rules in quantize.c and README).
 * Norms and the router (ffn_gate_inp) always stay F32. */
#ifndef GROK_QUANTIZE_H
#define GROK_QUANTIZE_H

int cmd_quantize(int argc, char **argv);

#endif
