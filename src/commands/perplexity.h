/* perplexity.h - `grok perplexity`: how well a model predicts a text file
 * (exp of the mean negative log-likelihood of its tokens). See perplexity.c. */
#ifndef GROK_PERPLEXITY_H
#define GROK_PERPLEXITY_H

#include "dist.h"

/* argv[0] is "perplexity". Returns the process exit status. */
int cmd_perplexity(int argc, char **argv, Dist *d);

#endif
