#!/usr/bin/env python3
"""Writes PyTorch reference fixtures for elle's GPT (Tests/Fixtures/gpt-*.json).

Run by hand with the repository's venv (`scripts/setup.sh --python-heavy` makes it, with torch and
transformers):
    .venv/bin/python scripts/make_gpt_fixture.py

The reference is Hugging Face's GPT2LMHeadModel (pre-LN blocks, gelu_new, tied output
embedding), run in float32 without dropout. Parameters are drawn at a larger scale than a real
initialization (and norms/biases away from 1/0) so every path carries a visible gradient. Each
fixture holds, flattened in elle's parameter layout (weights as [out, in]): the parameters, the
input tokens and targets (-1 = no loss), the mean loss, the logits, the gradients, and the
parameters after one torch.optim.AdamW step (weight decay only on 2-D tensors).

One step cannot tell beta1 from beta2 (bias-corrected, its update is lr * g / |g| whatever the
betas) and its weight decay (0.01 at lr 1e-3) moves a weight by 1e-5 of itself, the test's
tolerance. So `steps` holds a short training run from the same parameters: STEPS["count"]
updates on new batches, each forward, backward, gradient clipping at STEPS["clip"] (below every
step's norm, so it acts) and AdamW with weight decay 0.1; per step the loss and the gradient norm
before clipping, and the parameters at the end.
"""
import os, sys
import torch
import torch.nn.functional as F
from fixture_steps import clipped_steps, compact_json
from transformers import GPT2Config, GPT2LMHeadModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures")
ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=0.01)
STEPS = dict(count=3, lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=0.1, clip=1.0)


def elle_order(model, layers, grad=False):
    """Tensors (or their gradients) flattened in elle's GPTLayout order, weights as [out, in]
    (Hugging Face's Conv1D stores [in, out], hence the transposes)."""
    t = model.transformer
    pick = (lambda p: p.grad) if grad else (lambda p: p)
    out = [pick(t.wte.weight), pick(t.wpe.weight)]
    for l in range(layers):
        h = t.h[l]
        out += [
            pick(h.ln_1.weight), pick(h.ln_1.bias),
            pick(h.attn.c_attn.weight).t(), pick(h.attn.c_attn.bias),
            pick(h.attn.c_proj.weight).t(), pick(h.attn.c_proj.bias),
            pick(h.ln_2.weight), pick(h.ln_2.bias),
            pick(h.mlp.c_fc.weight).t(), pick(h.mlp.c_fc.bias),
            pick(h.mlp.c_proj.weight).t(), pick(h.mlp.c_proj.bias),
        ]
    out += [pick(t.ln_f.weight), pick(t.ln_f.bias)]
    return torch.cat([x.detach().reshape(-1) for x in out]).tolist()


def make(name, layers, width, heads, vocab, seq, batch, seed):
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=layers, n_embd=width, n_head=heads, vocab_size=vocab, n_positions=seq,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                     activation_function="gelu_new", tie_word_embeddings=True,
                     bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg).float()
    model.train()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("ln_1.weight") or pname.endswith("ln_2.weight") or pname.endswith("ln_f.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif pname.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    initial = {k: v.clone() for k, v in model.state_dict().items()}

    def draw_batch():
        tokens = torch.randint(0, vocab, (batch, seq))
        targets = torch.randint(0, vocab, (batch, seq))
        targets[0, 1] = -1  # a position without loss
        return tokens, targets

    tokens, targets = draw_batch()
    logits = model(input_ids=tokens).logits
    loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1), ignore_index=-1)
    loss.backward()

    params = elle_order(model, layers)
    grads = elle_order(model, layers, grad=True)

    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAM["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAM["lr"], betas=(ADAM["beta1"], ADAM["beta2"]), eps=ADAM["eps"])
    opt.step()
    updated = elle_order(model, layers)

    # The clipped steps, from the initial parameters: the batch above, then new ones.
    def loss_of(step_tokens, step_targets):
        step_logits = model(input_ids=step_tokens).logits
        return F.cross_entropy(step_logits.reshape(-1, vocab), step_targets.reshape(-1), ignore_index=-1)

    batches = [(tokens, targets)] + [draw_batch() for _ in range(STEPS["count"] - 1)]
    steps = clipped_steps(model, initial, batches, loss_of, decay, no_decay, STEPS, lambda: elle_order(model, layers))
    norms = ", ".join(format(r["norm"], ".3f") for r in steps["batches"])

    fixture = {
        "source": f"torch {torch.__version__}, GPT2LMHeadModel, scripts/make_gpt_fixture.py seed {seed}",
        "config": dict(layers=layers, width=width, heads=heads, vocab=vocab, seq=seq, batch=batch),
        "adam": ADAM,
        "tokens": tokens.reshape(-1).tolist(), "targets": targets.reshape(-1).tolist(),
        "loss": loss.item(), "logits": logits.detach().reshape(-1).tolist(),
        "parameters": params, "gradients": grads, "updated": updated, "steps": steps,
    }
    path = os.path.join(OUT, f"gpt-{name}.json")
    with open(path, "w") as f:
        f.write(compact_json(fixture))
    print(f"wrote {path}: loss {loss.item():.6f}, {len(params)} parameters; {len(steps['batches'])} clipped steps, gradient norms {norms}")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    # TESTING.md's tiny config, and an odd one whose sizes are not multiples of the SIMD width.
    make("tiny", layers=2, width=16, heads=2, vocab=32, seq=8, batch=2, seed=1)
    make("odd", layers=2, width=40, heads=4, vocab=50, seq=19, batch=3, seed=2)
