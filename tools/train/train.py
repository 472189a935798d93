#!/usr/bin/python3
"""Trains grok-nano on the tokenized WordNet dialogues (tokenize_data.py).

CPU only, reproducible from --seed: AdamW, linear warm-up then cosine decay,
batches of whole dialogues (each starts at position 0, as a `grok run` prompt
does) grouped by length so that little is padding, loss on the assistant
replies, plus a small load-balancing loss on the routers. Prints train and
held-out loss; saves out/ckpt.pt every --ckpt-every seconds and at the end
(resumes from it with --resume). --init CKPT starts from another run's
checkpoint with a fresh schedule; --end-time fits the rest of the cosine to a
wall-clock deadline."""
import argparse
import contextlib
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from model import Config, GrokNano

HERE = os.path.dirname(os.path.abspath(__file__))


def load(path):
    z = np.load(path)
    return z["tokens"].astype(np.int64), z["offsets"], z["mask"]


def batches(n_dlg, offs, token_budget, rng, chunk=4096):
    """Yields lists of dialogue indices: shuffled, then sorted by length
    within chunks, cut so that batch_size * max_len <= token_budget."""
    order = rng.permutation(n_dlg)
    lens = offs[1:] - offs[:-1]
    out = []
    for c in range(0, n_dlg, chunk):
        idx = order[c:c + chunk]
        idx = idx[np.argsort(lens[idx], kind="stable")]
        cur = []
        for i in idx:
            if cur and (len(cur) + 1) * max(lens[cur[-1]], lens[i]) > token_budget:
                out.append(cur)
                cur = []
            cur.append(i)
        if cur:
            out.append(cur)
    perm = rng.permutation(len(out))
    for p in perm:
        yield out[p]


def make_batch(ids, toks, offs, mask):
    lens = [offs[i + 1] - offs[i] for i in ids]
    T = max(lens)
    x = np.zeros((len(ids), T), np.int64)      # pad id 0 after the dialogue (never attended by it)
    m = np.zeros((len(ids), T), np.float32)
    for r, i in enumerate(ids):
        x[r, :lens[r]] = toks[offs[i]:offs[i + 1]]
        m[r, :lens[r]] = mask[offs[i]:offs[i + 1]]
    v = np.zeros((len(ids), T), bool)
    for r, n in enumerate(lens):
        v[r, :n] = True
    return torch.from_numpy(x), torch.from_numpy(m), torch.from_numpy(v)


def autocast(amp):
    """bf16 matrix products on CUDA (--bf16); nothing otherwise."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def to_dev(batch, dev):
    return tuple(t.to(dev, non_blocking=True) for t in batch)


def reply_loss(model, x, m, v):
    # position t predicts token t+1; only positions whose next token is a
    # reply token get logits (the others do not count in the loss)
    B, T = x.shape
    nxt = torch.zeros_like(m)
    nxt[:, :-1] = m[:, 1:]
    rows = nxt.reshape(-1).nonzero(as_tuple=True)[0]
    tgt = torch.cat([x[:, 1:], torch.zeros(B, 1, dtype=x.dtype, device=x.device)], 1).reshape(-1).index_select(0, rows)
    logits, aux = model(x, v, rows)
    lp = F.cross_entropy(logits.float(), tgt, reduction="sum")
    return lp, torch.tensor(float(rows.numel()), device=x.device), aux


@torch.no_grad()
def evaluate(model, data, n_dlg, budget=8192, dev="cpu", amp=False):
    toks, offs, mask = data
    n_dlg = min(n_dlg, len(offs) - 1)
    lens = offs[1:n_dlg + 1] - offs[:n_dlg]
    order = np.argsort(lens, kind="stable")
    tot, cnt, cur = 0.0, 0.0, []
    model.eval()
    for i in list(order) + [None]:
        if i is not None and (not cur or (len(cur) + 1) * max(lens[cur[-1]], lens[i]) <= budget):
            cur.append(i)
            continue
        x, m, v = to_dev(make_batch(cur, toks, offs, mask), dev)
        with autocast(amp):
            s, c, _ = reply_loss(model, x, m, v)
        tot, cnt = tot + s.item(), cnt + c.item()
        cur = [i]
    model.train()
    return tot / cnt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--tokens", type=int, default=8192, help="token budget of a batch (incl. padding)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--aux", type=float, default=0.01)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-dlg", type=int, default=400)
    ap.add_argument("--ckpt-every", type=float, default=300.0, help="seconds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", default="", help="start from this checkpoint's weights (and AdamW state) "
                    "with a fresh schedule: step 0 of --steps/--warmup/--lr; ignored when --resume finds out/ckpt.pt")
    ap.add_argument("--end-time", type=float, default=0.0,
                    help="unix time by which the run must end (a shared machine of unknown speed): from this "
                    "(re)start on, the cosine goes on from where --steps puts it to its end over the wall-clock "
                    "time left, and training stops then (or at --steps)")
    ap.add_argument("--config", default="{}", help="JSON overrides of model.Config")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--bf16", action="store_true", help="CUDA: matrix products in bf16 (autocast); "
                    "weights, optimizer and softmax/norms stay f32")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = Config(**json.loads(a.config))
    model = GrokNano(cfg)
    model.init_weights(a.seed)
    dev, amp = torch.device(a.device), a.bf16 and a.device.startswith("cuda")
    model.to(dev)
    print("config", cfg.to_dict(), "params %d" % model.n_params(), flush=True)
    train = load(os.path.join(a.out, "train.npz"))
    held = load(os.path.join(a.out, "heldout.npz"))
    n_train = len(train[1]) - 1

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)

    clock = {}   # --end-time: the wall-clock start of this process and the cosine position there

    def lr_at(step):
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        t = (step - a.warmup) / max(1, a.steps - a.warmup)
        if a.end_time:
            if not clock:
                clock["t0"], clock["f0"] = time.time(), min(1.0, t)
            now = min(time.time(), a.end_time)
            t = clock["f0"] + (1 - clock["f0"]) * (now - clock["t0"]) / max(1e-9, a.end_time - clock["t0"])
        return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))

    ckpt_path = os.path.join(a.out, "ckpt.pt")
    step, epoch, seen_tokens, elapsed = 0, 0, 0, 0.0
    if a.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=dev)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, epoch, seen_tokens, elapsed = ck["step"], ck["epoch"], ck["seen_tokens"], ck["elapsed"]
        print("resumed at step %d" % step, flush=True)
    elif a.init:
        ck = torch.load(a.init, map_location=dev)
        if ck["config"] != cfg.to_dict():
            raise SystemExit("--init: checkpoint config %s differs from %s" % (ck["config"], cfg.to_dict()))
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])    # AdamW moments; the lr is set per step from the new schedule
        print("initialized from %s (its step %d, %d tokens); fresh schedule" % (a.init, ck["step"], ck["seen_tokens"]),
              flush=True)

    def save(tag=""):
        torch.save({"model": {k: t.cpu() for k, t in model.state_dict().items()}, "opt": opt.state_dict(), "step": step, "epoch": epoch,
                    "seen_tokens": seen_tokens, "elapsed": elapsed, "config": cfg.to_dict(),
                    "args": vars(a)}, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)

    # the batch order is a function of (seed, epoch); on resume, skip the batches already done
    def batch_stream():
        ep, skip = epoch, step
        while True:
            rng = np.random.default_rng(a.seed * 1000 + ep)
            for ids in batches(n_train, train[1], a.tokens, rng):
                if skip > 0:
                    skip -= 1
                    continue
                yield ep, ids
            ep += 1

    stream = batch_stream()
    t0, last_ckpt, run_loss, run_n = time.time() - elapsed, time.time(), 0.0, 0
    while step < a.steps and not (a.end_time and time.time() >= a.end_time):
        epoch, ids = next(stream)
        x, m, v = to_dev(make_batch(ids, *train), dev)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with autocast(amp):
            s, c, aux = reply_loss(model, x, m, v)
        loss = s / c.clamp(min=1) + a.aux * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen_tokens += int(v.sum())
        run_loss += s.detach() / c.clamp(min=1)
        run_n += 1
        elapsed = time.time() - t0
        if step % 25 == 0:
            print("step %d  loss %.4f  aux %.3f  lr %.2e  tokens %d  %.0f s  %.0f tok/s" %
                  (step, float(run_loss) / run_n, float(aux), lr_at(step), seen_tokens, elapsed, seen_tokens / elapsed),
                  flush=True)
            run_loss, run_n = 0.0, 0
        if step % a.eval_every == 0:
            hl = evaluate(model, held, a.eval_dlg, dev=dev, amp=amp)
            print("step %d  held-out loss %.4f  ppl %.2f" % (step, hl, math.exp(hl)), flush=True)
        if time.time() - last_ckpt > a.ckpt_every:
            save()
            last_ckpt = time.time()
    save()
    hl = evaluate(model, held, len(held[1]) - 1, dev=dev, amp=amp)
    print("final held-out loss %.4f  ppl %.2f  (all %d held-out dialogues)  steps %d  tokens %d  train time %.0f s"
          % (hl, math.exp(hl), len(held[1]) - 1, step, seen_tokens, elapsed), flush=True)
    with open(os.path.join(a.out, "final.json"), "w") as f:
        json.dump({"heldout_loss": hl, "heldout_ppl": math.exp(hl), "steps": step, "tokens": seen_tokens,
                   "train_seconds": elapsed, "args": vars(a), "config": cfg.to_dict(),
                   "params": model.n_params()}, f, indent=1)


if __name__ == "__main__":
    main()
