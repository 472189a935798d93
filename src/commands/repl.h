/* repl.h - `grok chat`: an interactive chat with a model in the terminal
 * (libedit line editing and history, streamed replies, multi-turn context
 * through the chat template with the KV cache kept across turns), or a
 * line-per-turn filter when stdin is not a terminal. See repl.c. */
#ifndef GROK_REPL_H
#define GROK_REPL_H

#include "dist.h"

/* argv[0] is "chat". Returns the process exit status. */
int cmd_chat(int argc, char **argv, Dist *d);

#endif
