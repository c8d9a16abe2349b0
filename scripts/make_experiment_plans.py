#!/usr/bin/env python3
"""Writes the stage plans of the ELLE experiment (issue 12) to plans/experiment/BUDGET/METHOD.yaml.

Every method gets the same training FLOPs in every stage, counted the way elle counts them
(Sources/Lifelong/LifelongRun.swift: per update, (6 x parameters + 12 x L x D x seq) x tokens;
warmups included, evaluation not). A stage's budget is `base` updates of the initial model
(2/128); a larger model gets proportionally fewer updates, and a growing method spends part of
its stage budget on the function recovering warmup (FRW). The run's metrics.jsonl and report.md
state the FLOPs elle actually counted; docs/RESULTS.md lists them.

Usage: python3 scripts/make_experiment_plans.py VOCAB   (the prepared tokenizer's vocabulary size)
"""
import os
import sys

DOMAINS = ["encyclopedic", "literature", "legal", "biomedical", "technical"]
DATA = "runs/experiment-data"
CONTEXT = 64
BATCH, ACCUM = 8, 2            # 16 sequences of 64 tokens per update, 1 rank
BUDGETS = {"short": 80, "long": 240}   # updates of the initial model per stage
# Growth schedule of every growing method: one step per new domain (head dim 64 throughout).
SHAPES = [(2, 128), (2, 192), (3, 192), (3, 256), (4, 256)]
SMALL, FINAL = SHAPES[0], SHAPES[-1]


def params(layers, width, vocab):
    return vocab * width + CONTEXT * width + layers * (12 * width * width + 13 * width) + 2 * width


def flops_per_update(shape, vocab):
    layers, width = shape
    return (6 * params(layers, width, vocab) + 12 * layers * width * CONTEXT) * BATCH * ACCUM * CONTEXT



# method -> (description, settings)
METHODS = {
    "naive": ("naive continual: initial size, no growth, no replay, no prompts",
              dict(grow=None, replay=0.0, prompts=False)),
    "replay": ("replay only: initial size, 10% replay, no prompts, no growth",
               dict(grow=None, replay=0.1, prompts=False)),
    "replay-prompts": ("replay and domain prompts at the initial size (ELLE without growth)",
                       dict(grow=None, replay=0.1, prompts=True)),
    "grow-noreplay": ("function-preserving growth (as elle-fp) without replay",
                      dict(grow=dict(depthMode="identity", noise=0.001, moments="carry"), frw=None,
                           replay=0.0, prompts=True)),
    "scratch-final": ("the final-size model (4/256) from scratch on the same stream, replay and prompts",
                      dict(grow=None, shape=FINAL, replay=0.1, prompts=True)),
    "elle-pub": ("ELLE as published: copy depth, noise 0.01 on copies, Adam reset, FRW (1/5 of the stage budget) at the stage's peak lr",
                 dict(grow=dict(depthMode="copy", noise=0.01, moments="reset"), frw=dict(share=0.2, lr_factor=1.0),
                      replay=0.1, prompts=True)),
    "elle-pub-gentle": ("ELLE as published but FRW at a tenth of the peak lr (isolates FRW's learning rate from copy-depth growth)",
                        dict(grow=dict(depthMode="copy", noise=0.01, moments="reset"), frw=dict(share=0.2, lr_factor=0.1),
                             replay=0.1, prompts=True)),
    "elle-fp-late": ("ELLE function-preserving with the least growth: 2/128 until the last domain, then 2/192 (identity, carry, no FRW)",
                     dict(grow=dict(depthMode="identity", noise=0.001, moments="carry"), frw=None, replay=0.1, prompts=True,
                          shapes=[(2, 128)] * 4 + [(2, 192)])),
    "elle-fp": ("ELLE function-preserving: identity depth, noise 0.001 on copies only, Adam moments carried, no FRW",
                dict(grow=dict(depthMode="identity", noise=0.001, moments="carry"), frw=None, replay=0.1, prompts=True)),
}


def stage_yaml(i, domain, steps, grow, frw, eval_every, shape):
    lines = [f"  - domain: {domain}", f"    steps: {steps}", f"    evalEvery: {eval_every}"]
    if grow is not None:
        layers, width = shape
        g = grow
        lines.append(f"    grow: {{layers: {layers}, width: {width}, heads: {width // 64}, depthMode: {g['depthMode']}, "
                     f"noise: {g['noise']}, moments: {g['moments']}}}")
    if frw is not None:
        lines.append(f"    frw: {{steps: {frw[0]}, lr: {frw[1]:.2e}}}")
    return lines


def write(budget, base, method, vocab, lr):
    description, m = METHODS[method]
    budget_flops = base * flops_per_update(SMALL, vocab)
    growing = m.get("grow") is not None
    first = m.get("shape", SMALL)
    out = [f"# ELLE experiment (issue 12), budget {budget}: {description}.",
           f"# Written by scripts/make_experiment_plans.py: every stage costs the FLOPs of {base} updates of the",
           f"# 2/128 model ({budget_flops:.4e}), counted as elle counts them; data: elle data prepare, see docs/RESULTS.md.",
           f"name: {budget}-{method}",
           f"model: {{architecture: gpt, layers: {first[0]}, width: {first[1]}, heads: {first[1] // 64}, context: {CONTEXT}, dropout: 0.0}}",
           f"data: {DATA}",
           "seed: 1",
           "keepCheckpoints: 1",
           "defaults:",
           f"  batch: {BATCH}",
           f"  seq: {CONTEXT}",
           f"  accumulation: {ACCUM}",
           f"  lr: {lr:.1e}",
           "  schedule: inverse-sqrt",
           "  warmup: 0.1",
           "  weightDecay: 0.01",
           "  clip: 1.0",
           f"  replay: {{ratio: {m['replay']}, weighting: uniform}}",
           f"  prompts: {'true' if m['prompts'] else 'false'}",
           "  evalBatches: 6",
           "  logEvery: 10",
           "stages:"]
    total = 0.0
    shapes = m.get("shapes", SHAPES)
    for i, domain in enumerate(DOMAINS):
        shape = shapes[i] if growing else first
        per = flops_per_update(shape, vocab)
        updates = int(round(budget_flops / per))
        frw = None
        if growing and i > 0 and m.get("frw"):
            w = max(1, int(round(m["frw"]["share"] * updates)))
            frw = (w, lr * m["frw"]["lr_factor"])
            updates -= w
        total += per * (updates + (frw[0] if frw else 0))
        eval_every = max(1, updates // 2)
        grows = growing and i > 0 and shapes[i] != shapes[i - 1]
        out += stage_yaml(i, domain, updates, m.get("grow") if grows else None, frw, eval_every, shape)
    out.insert(3, f"# Total training FLOPs: {total:.4e} (budget {5 * budget_flops:.4e}).")
    path = f"plans/experiment/{budget}/{method}.yaml"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return total


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    vocab = int(sys.argv[1])
    for budget, base in BUDGETS.items():
        for method in METHODS:
            total = write(budget, base, method, vocab, lr=2e-3)
            print(f"{budget:6} {method:15} {total:.4e}")


if __name__ == "__main__":
    main()
