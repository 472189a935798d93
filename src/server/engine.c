/* engine.c - the batching engine of `grok serve`: jobs and their
 * lifetime, slots, admission of queued jobs (longest shared prefix, the
 * prompt cache, context shift), and the engine thread that runs one
 * forward pass per step over every decoding slot's next token plus a chunk
 * of prompt tokens, samples, and hands text to the waiting connections
 * (the layers split over N ranks: up to N groups of slots in flight at
 * once, pipe_step).
 * See server.c's header for the threads and the lock. */
#include "dist.h"
#include "server_internal.h"

uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void rate_add(Rate *r, double now, uint64_t n) {
    long long sec = (long long)now;
    int i = (int)(sec % RATE_BUCKETS);
    if (r->sec[i] != sec) r->sec[i] = sec, r->n[i] = 0;
    r->n[i] += n;
}

/* Average over the last RATE_WINDOW whole seconds. */
double rate_get(const Rate *r, double now) {
    long long sec = (long long)now;
    uint64_t sum = 0;
    for (int i = 0; i < RATE_BUCKETS; i++)
        if (r->sec[i] < sec && r->sec[i] >= sec - RATE_WINDOW) sum += r->n[i];
    return (double)sum / RATE_WINDOW;
}

/* ---- job lifetime (all under mu) --------------------------------------- */

void job_free(Job *j) {
    if (!j) return;
    free(j->prompt);
    grammar_matcher_free(j->gm);
    grammar_free(j->grammar);
    resp_ctx_free(j->resp);
    sampler_free(j->smp);
    stop_matcher_free(&j->sm);
    str_free(&j->text);
    free(j->lps);
    pthread_cond_destroy(&j->cond);
    free(j);
}

void job_unref(Job *j) {
    if (j && --j->refs == 0) job_free(j);
}

Job *job_new(void) {
    Job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca)) {
        free(j);
        return NULL;
    }
#if !defined(__APPLE__)
    pthread_condattr_setclock(&ca, COND_CLOCK);
#endif
    int r = pthread_cond_init(&j->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (r) {
        free(j);
        return NULL;
    }
    j->refs = 1;
    j->logprobs = -1;
    j->state = JOB_QUEUED;
    return j;
}

static void job_done(Server *s, Job *j, const char *finish, const char *error) {
    if (j->state == JOB_DONE) return;
    j->state = JOB_DONE;
    j->finish = finish;
    j->t_done = time_now();
    if (error) snprintf(j->error, sizeof j->error, "%s", error);
    if (j->cancelled) s->fin_cancelled++;
    else if (error) s->fin_error++;
    else if (finish && !strcmp(finish, "length")) s->fin_length++;
    else s->fin_stop++;
    pthread_cond_broadcast(&j->cond);
}

/* Cancels a job whose client went away (under mu). */
void job_cancel(Server *s, Job *j) {
    if (!j || j->state == JOB_DONE) return;
    j->cancelled = true;
    if (j->state == JOB_QUEUED) {
        Job **pp = &s->q_head, *prev = NULL;
        while (*pp && *pp != j) prev = *pp, pp = &(*pp)->next;
        if (*pp) {
            *pp = j->next;
            if (s->q_tail == j) s->q_tail = prev;
            s->q_len--;
            j->next = NULL;
            job_done(s, j, NULL, NULL);
            job_unref(j); /* the queue's reference */
        }
    } else {
        pthread_cond_signal(&s->work);
    }
}

/* ---- the engine -------------------------------------------------------- */

static void slot_release(Server *s, Slot *sl) {
    Job *j = sl->job;
    /* what the slot computed goes to the prompt cache, for any slot to start from */
    if (s->pc) /* only what a fresh computation would give: not what a context shift moved */
        pcache_save(s->pc, s->ctx, (int)(sl - s->slots), sl->cache, sl->n_exact < sl->n_past ? sl->n_exact : sl->n_past);
    sampler_free(j->smp); /* the vocabulary-sized buffers go with the slot */
    j->smp = NULL;
    sl->job = NULL;
    sl->prefill = false;
    s->n_busy--;
    job_unref(j);
}

#define SHIFT_MIN_RUN 16 /* fewer cached tokens than this are recomputed rather than shifted */

static int common_prefix(const int *a, int na, const int *b, int nb) {
    int n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Moves queued jobs into free slots (under mu). */
void engine_admit(Server *s) {
    while (s->q_head) {
        Job *j = s->q_head;
        int best = -1, best_lcp = -1;
        for (int i = 0; i < s->n_slots; i++) {
            Slot *sl = &s->slots[i];
            if (sl->job) continue;
            int l = common_prefix(sl->cache, sl->n_past, j->prompt, j->n_prompt);
            if (l > best_lcp) best = i, best_lcp = l;
        }
        if (best < 0) return;
        s->q_head = j->next;
        if (!s->q_head) s->q_tail = NULL;
        s->q_len--;
        j->next = NULL;
        Slot *sl = &s->slots[best];
        if (j->max_tokens == 0) { /* nothing to generate */
            job_done(s, j, "length", NULL);
            job_unref(j);
            continue;
        }
        /* the vocabulary-sized sampler buffers exist only while a slot runs
         * the job: a queue of 1,000 requests holds no 1,000 of them */
        Error err = {{0}};
        if (!(j->smp = sampler_new(&j->sp, s->n_vocab, &err))) {
            job_done(s, j, NULL, err.msg);
            job_unref(j);
            continue;
        }
        for (int i = 0; i < j->n_prompt; i++) sampler_accept(j->smp, j->prompt[i]);
        /* the common prefix, and a later cached stretch that continues the
         * prompt (a conversation whose oldest turns were dropped) shifted
         * into place */
        Error rerr = {{0}};
        int reuse = context_reuse(s->ctx, best, sl->cache, sl->n_past, j->prompt, j->n_prompt, SHIFT_MIN_RUN, &rerr);
        if (reuse < 0) reuse = best_lcp;
        int exact = best_lcp < sl->n_exact ? best_lcp : sl->n_exact; /* a shifted stretch is not exact */
        if (s->pc) { /* then whole blocks from the prompt cache (the last prompt token is always computed) */
            const int r = pcache_restore(s->pc, s->ctx, best, j->prompt, j->n_prompt - 1, reuse);
            if (r > reuse) {
                memcpy(sl->cache + reuse, j->prompt + reuse, (size_t)(r - reuse) * sizeof(int));
                if (exact == reuse) exact = r;
                reuse = r;
            }
        }
        int keep = reuse < j->n_prompt ? reuse : j->n_prompt - 1;
        sl->job = j;
        sl->n_past = keep;
        sl->n_exact = exact < keep ? exact : keep;
        sl->prefill = true;
        sl->pending = 0;
        j->cached_tokens = keep;
        j->state = JOB_RUNNING;
        s->n_busy++;
    }
}

/* Appends a logprob entry for `tok` from the raw logits (in sl->raw). */
static void logprob_entry(Server *s, const float *raw, int tok, int n_top, TokLP *e) {
    const int V = s->n_vocab;
    float mx = raw[0];
    for (int i = 1; i < V; i++)
        if (raw[i] > mx) mx = raw[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)(raw[i] - mx));
    const float lse = mx + (float)log(sum);
    e->id = tok;
    e->lp = raw[tok] - lse;
    e->n_top = 0;
    for (int i = 0; i < V && n_top > 0; i++) {
        float v = raw[i];
        if (e->n_top == n_top && v <= e->top_lp[n_top - 1]) continue;
        int k = e->n_top < n_top ? e->n_top++ : n_top - 1;
        while (k > 0 && e->top_lp[k - 1] < v) {
            e->top_lp[k] = e->top_lp[k - 1];
            e->top_id[k] = e->top_id[k - 1];
            k--;
        }
        e->top_lp[k] = v;
        e->top_id[k] = i;
    }
    for (int k = 0; k < e->n_top; k++) e->top_lp[k] -= lse;
}

/* The reply has filled the context (--context-shift, max_tokens not yet
 * reached): as llama.cpp's server, the first n_keep tokens stay (the system
 * messages), half of the rest after them is discarded, and what follows is
 * moved down by a context shift. False if nothing can be discarded. Called
 * without mu; the job's counters are read only once it is done. */
static bool slot_shift(Server *s, Slot *sl) {
    Job *j = sl->job;
    if (!j->shift) return false;
    const int n_keep = j->n_keep < sl->n_past ? j->n_keep : sl->n_past;
    const int n_discard = (sl->n_past - n_keep) / 2;
    const int seq = (int)(sl - s->slots);
    Error err = {{0}};
    if (n_discard < 1 || context_shift(s->ctx, seq, n_keep + n_discard, sl->n_past, -n_discard, &err)) return false;
    memmove(sl->cache + n_keep, sl->cache + n_keep + n_discard,
            (size_t)(sl->n_past - n_keep - n_discard) * sizeof(int));
    sl->n_past -= n_discard;
    if (sl->n_exact > n_keep) sl->n_exact = n_keep;
    j->n_shifts++;
    j->n_discarded += n_discard;
    if (s->verbose)
        fprintf(stderr, "grok serve: %s context shift mid-reply: kept %d, discarded %d, moved %d tokens\n", j->id,
                n_keep, n_discard, sl->n_past - n_keep);
    return true;
}

/* Samples the next token of slot sl from its logits row and publishes the
 * resulting text. Called without mu. */
static void engine_token(Server *s, Slot *sl, float *lg) {
    Job *j = sl->job;
    TokLP lpe;
    bool has_lp = false;
    if (j->logprobs >= 0) memcpy(sl->raw, lg, (size_t)s->n_vocab * sizeof(float));
    GrammarFilter gf = {j->gm, s->n_vocab, 0, 0};
    TokenFilter tf = {&gf, grammar_filter_allows, grammar_filter_mask};
    const double t_s0 = time_now();
    const int tok = j->gm ? sampler_sample_filtered(j->smp, lg, &tf) : sampler_sample(j->smp, lg);
    double t_sample = time_now() - t_s0;
    if (tok < 0) { /* nothing can continue the grammar (or its limits were hit) */
        pthread_mutex_lock(&s->mu);
        job_done(s, j, NULL, tok == -1 ? "grammar: no token of the vocabulary can continue the reply"
                                       : "grammar: too ambiguous (parser limits) or out of memory");
        slot_release(s, sl);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    const char *finish = NULL, *emit;
    size_t emit_len;
    char piece[256];
    bool oom = false, hit = false, eot = false;
    sl->scratch.len = 0;
    if ((tok == s->eos && !j->ignore_eos) || tok == j->stop_token) { /* end of text: not part of the reply */
        finish = "stop";
        eot = true;
    } else {
        if (j->logprobs >= 0) {
            logprob_entry(s, sl->raw, tok, j->logprobs, &lpe);
            has_lp = true;
        }
        sampler_accept(j->smp, tok);
        j->n_gen++;
        Error gerr = {{0}};
        const double ta = j->gm ? time_now() : 0;
        if (j->gm && grammar_matcher_accept(j->gm, tok, &gerr)) oom = true; /* not reached: the token was allowed */
        if (j->gm) gf.seconds += time_now() - ta, t_sample += time_now() - ta;
        size_t n = token_decoder_push(s->tok, &j->dec, tok, piece, sizeof piece);
        hit = stop_matcher_push(&j->sm, piece, n, &emit, &emit_len) != 0;
        if (str_put(&sl->scratch, emit, emit_len)) oom = true;
        if (hit || (j->gm && grammar_matcher_must_end(j->gm))) finish = "stop";
        else if (j->n_gen >= j->max_tokens || (sl->n_past >= s->n_ctx && !slot_shift(s, sl))) finish = "length";
    }
    if (finish && !hit) { /* end of text: release what was held back */
        size_t n = token_decoder_flush(&j->dec, piece, sizeof piece);
        bool hit2 = stop_matcher_push(&j->sm, piece, n, &emit, &emit_len) != 0;
        if (str_put(&sl->scratch, emit, emit_len)) oom = true;
        if (!hit2) {
            stop_matcher_flush(&j->sm, &emit, &emit_len);
            if (str_put(&sl->scratch, emit, emit_len)) oom = true;
        }
    }
    /* NUL bytes cannot travel in JSON strings built with strlen */
    size_t w = 0;
    for (size_t i = 0; i < sl->scratch.len; i++)
        if (sl->scratch.s[i]) sl->scratch.s[w++] = sl->scratch.s[i];
    sl->scratch.len = w;
    const double now = time_now();
    pthread_mutex_lock(&s->mu);
    if (j->gm) s->grammar_tokens++, s->grammar_masks += (uint64_t)gf.n_masks, s->grammar_seconds += gf.seconds;
    s->sample_seconds += t_sample;
    if (!eot) {
        j->completion_tokens++;
        s->gen_tokens++;
        rate_add(&s->gen_rate, now, 1);
    }
    if (j->t_first == 0) {
        j->t_first = now;
        s->ttft_sum += now - j->t_queued;
        s->ttft_count++;
    }
    if (!oom && w && str_put(&j->text, sl->scratch.s, w)) oom = true;
    if (!oom && has_lp) {
        if (j->n_lps == j->cap_lps) {
            int cap = j->cap_lps ? 2 * j->cap_lps : 64;
            TokLP *t = realloc(j->lps, (size_t)cap * sizeof *t);
            if (t) j->lps = t, j->cap_lps = cap;
            else oom = true;
        }
        if (!oom) j->lps[j->n_lps++] = lpe;
    }
    if (oom) {
        job_done(s, j, NULL, "out of memory");
        slot_release(s, sl);
    } else if (finish) {
        job_done(s, j, finish, NULL);
        slot_release(s, sl);
    } else {
        sl->next = tok;
        pthread_cond_broadcast(&j->cond);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- steps: batches of slots ------------------------------------------- */

/* Fills s->b_* with group g's batch: the next token of up to max_decode
 * decoding slots and a chunk of prompt tokens, from slots not in flight; marks
 * them in flight in g. The number of tokens (0: nothing to do). */
static int group_fill(Server *s, int g, int max_decode) {
    int nb = 0, nrows = 0;
    int *rows = s->row_slot + (size_t)g * (size_t)s->n_slots;
    const int start = s->n_groups > 1 ? s->rr : 0; /* several groups: round-robin, none waits behind the others */
    for (int k = 0; k < s->n_slots && nb < max_decode; k++) {
        const int i = (start + k) % s->n_slots;
        Slot *sl = &s->slots[i];
        if (!sl->job || sl->prefill || sl->flight) continue;
        s->b_tok[nb] = sl->next;
        s->b_pos[nb] = sl->n_past;
        s->b_seq[nb] = i;
        s->b_out[nb] = true;
        rows[nrows++] = i;
        sl->flight = g + 1;
        nb++;
    }
    const int n_decode = nb;
    int budget = s->chunk;
    for (int k = 0; k < s->n_slots && budget > 0; k++) {
        const int i = (s->rr + k) % s->n_slots;
        Slot *sl = &s->slots[i];
        if (!sl->job || !sl->prefill || sl->flight) continue;
        const Job *j = sl->job;
        const int left = j->n_prompt - sl->n_past, n = left < budget ? left : budget;
        for (int t = 0; t < n; t++) {
            s->b_tok[nb] = j->prompt[sl->n_past + t];
            s->b_pos[nb] = sl->n_past + t;
            s->b_seq[nb] = i;
            s->b_out[nb] = (t == n - 1 && n == left);
            nb++;
        }
        if (n == left) rows[nrows++] = i;
        sl->pending = n;
        sl->flight = g + 1;
        budget -= n;
    }
    s->rr = (s->rr + 1) % s->n_slots;
    s->g_rows[g] = nrows, s->g_tokens[g] = nb, s->g_decode[g] = n_decode;
    return nb;
}

/* Group g's batch is done (rc 0: its logits are in s->logits) or failed:
 * the metrics, then the tokens into the slots' caches and the next tokens
 * sampled. `seconds`: the time in the forward calls. */
static void group_done(Server *s, int g, int rc, const Error *err, double seconds) {
    const double t1 = time_now();
    const int nb = s->g_tokens[g], n_decode = s->g_decode[g];
    pthread_mutex_lock(&s->mu);
    s->steps++;
    s->batch_tokens += (uint64_t)nb;
    s->busy_seconds += seconds;
    s->prompt_tokens_computed += (uint64_t)(nb - n_decode);
    rate_add(&s->pp_rate, t1, (uint64_t)(nb - n_decode));
    if (rc) { /* should not happen: inputs are validated; fail every active job */
        fprintf(stderr, "grok serve: forward failed: %s\n", err->msg);
        /* several processes and one of them failed: the server cannot go
         * on; the jobs get a 503 and the main thread shuts it down */
        const bool gone = dist_failed(s->dist);
        if (gone) kill(getpid(), SIGTERM);
        s->g_count = 0; /* a failed forward call ended every batch in flight */
        for (int i = 0; i < s->n_slots; i++) {
            s->slots[i].flight = 0;
            if (s->slots[i].job) {
                job_done(s, s->slots[i].job, NULL, gone ? SHUTDOWN_MSG : err->msg);
                s->slots[i].n_past = s->slots[i].n_exact = 0;
                slot_release(s, &s->slots[i]);
            }
        }
        pthread_mutex_unlock(&s->mu);
        return;
    }
    pthread_mutex_unlock(&s->mu);
    /* the tokens are in the cache now */
    for (int i = 0; i < s->n_slots; i++) {
        Slot *sl = &s->slots[i];
        if (sl->flight != g + 1) continue;
        sl->flight = 0;
        if (!sl->job) continue;
        const bool exact = sl->n_exact == sl->n_past; /* computed on an exact prefix: exact too */
        if (!sl->prefill) {
            sl->cache[sl->n_past++] = sl->next;
            if (exact) sl->n_exact = sl->n_past;
        } else if (sl->pending) {
            memcpy(sl->cache + sl->n_past, sl->job->prompt + sl->n_past, (size_t)sl->pending * sizeof(int));
            sl->n_past += sl->pending;
            if (exact) sl->n_exact = sl->n_past;
            sl->pending = 0;
            if (sl->n_past == sl->job->n_prompt) sl->prefill = false;
        }
    }
    const int *rows = s->row_slot + (size_t)g * (size_t)s->n_slots;
    for (int r = 0; r < s->g_rows[g]; r++) engine_token(s, &s->slots[rows[r]], s->logits + (size_t)r * s->n_vocab);
}

/* One engine step: a batched forward pass over every active slot. */
static void engine_step(Server *s) {
    const int nb = group_fill(s, 0, s->n_slots);
    if (nb == 0) return;
    Error err = {{0}};
    const double t0 = time_now();
    Batch b = {nb, s->b_tok, s->b_pos, s->b_seq, s->b_out};
    int rc = forward(s->ctx, &b, s->logits, &err);
    group_done(s, 0, rc, &err, time_now() - t0);
}

/* The oldest group in flight: waits for its logits and goes on with its
 * slots. */
static void group_collect(Server *s) {
    const int g = s->g_head;
    Error err = {{0}};
    const double t0 = time_now();
    const int rc = forward_collect(s->ctx, s->logits, &err);
    const double dt = time_now() - t0;
    s->g_head = (s->g_head + 1) % s->n_groups;
    s->g_count--;
    group_done(s, g, rc, &err, dt);
}

/* One step with several groups in flight (the layers split over N ranks,
 * forward_submit): the active slots are shared out over up to N groups of
 * about n_active / N decoding slots (each slot in one group at a time, so a
 * slot's next token is sampled before it goes in again), and prompt chunks
 * join a group; every free group with work is submitted, then the oldest is
 * collected: submit A, submit B, collect A, (sample A), submit A's next
 * step, collect B, ... so that every rank works on one group while rank 0
 * samples another's tokens. Each group's results are those of running the
 * groups one after the other (forward.h). */
static void pipe_step(Server *s) {
    int active = 0;
    for (int i = 0; i < s->n_slots; i++) active += s->slots[i].job != NULL;
    const int per = (active + s->n_groups - 1) / s->n_groups;
    while (s->g_count < s->n_groups) {
        const int g = (s->g_head + s->g_count) % s->n_groups;
        const int nb = group_fill(s, g, per > 0 ? per : 1);
        if (nb == 0) break;
        Error err = {{0}};
        const double t0 = time_now();
        Batch b = {nb, s->b_tok, s->b_pos, s->b_seq, s->b_out};
        if (forward_submit(s->ctx, &b, &err)) {
            group_done(s, g, -1, &err, time_now() - t0);
            return;
        }
        const double dt = time_now() - t0;
        pthread_mutex_lock(&s->mu);
        s->busy_seconds += dt;
        pthread_mutex_unlock(&s->mu);
        s->g_count++;
    }
    if (s->g_count) group_collect(s);
}

/* Every group in flight collected (a slot operation, or a shutdown, runs
 * with nothing in flight). */
static void engine_drain(Server *s) {
    while (s->g_count) group_collect(s);
}

void *engine_main(void *arg) {
    Server *s = arg;
    bool trimmed = true; /* memory handed back since the last request */
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->g_count && (s->stopping || s->ops_head)) { /* nothing in flight for these */
            pthread_mutex_unlock(&s->mu);
            engine_drain(s);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        for (int i = 0; i < s->n_slots; i++) {
            Slot *sl = &s->slots[i];
            if (sl->flight) continue; /* its group's results come first */
            if (sl->job && (sl->job->cancelled || s->stopping)) {
                if (sl->prefill) sl->pending = 0;
                job_done(s, sl->job, NULL, sl->job->cancelled ? NULL : SHUTDOWN_MSG);
                slot_release(s, sl);
            }
        }
        if (s->ops_head) slots_run(s); /* slot save / restore / erase, between two forward passes */
        if (s->stopping) {
            while (s->q_head) {
                Job *j = s->q_head;
                s->q_head = j->next;
                s->q_len--;
                job_done(s, j, NULL, SHUTDOWN_MSG);
                job_unref(j);
            }
            s->q_tail = NULL;
            break;
        }
        engine_admit(s);
        if (s->n_busy == 0) {
            if (!trimmed) {
                /* a burst is over: give the heap's free pages back (requests
                 * cancelled mid-stream leave it fragmented; RSS would stay at
                 * the burst's peak) */
                trimmed = true;
                pthread_mutex_unlock(&s->mu);
#ifdef __GLIBC__
                malloc_trim(0);
#endif
                pthread_mutex_lock(&s->mu);
                continue;
            }
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        trimmed = false;
        pthread_mutex_unlock(&s->mu);
        if (s->n_groups > 1) pipe_step(s);
        else engine_step(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Queues a job (takes a reference for the engine). 0, or an HTTP status. */
int job_submit(Server *s, Job *j) {
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return 503;
    }
    if (s->q_len >= s->max_queue) {
        pthread_mutex_unlock(&s->mu);
        return 429;
    }
    j->refs++;
    j->t_queued = time_now();
    if (s->q_tail) s->q_tail->next = j;
    else s->q_head = j;
    s->q_tail = j;
    s->q_len++;
    s->prompt_tokens += (uint64_t)j->n_prompt;
    if (j->kind == KIND_CHAT) s->req_chat++;
    else s->req_completion++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return 0;
}
