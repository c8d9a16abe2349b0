#!/usr/bin/env python3
"""Writes the stage plans of the ELLE experiment (issue 12) to plans/experiment/BUDGET/METHOD.yaml.

Every method gets the same training FLOPs in every stage, counted the way elle counts them
(Sources/Model/FLOPCount.swift: per update, (6 x parameters + 12 x L x D x seq) x tokens, BERT's
masked-LM head at the 15% of positions it runs on;
warmups included, evaluation not). A stage's budget is `base` updates of the initial model
(2/128); a larger model gets proportionally fewer updates, and a growing method spends part of
its stage budget on the function recovering warmup (FRW). The run's metrics.jsonl and report.md
state the FLOPs elle actually counted; docs/RESULTS.md lists them.

Usage: python3 scripts/make_experiment_plans.py VOCAB [--architecture bert]
VOCAB is the prepared tokenizer's vocabulary size. GPT plans go to plans/experiment/{short,long},
BERT plans (the same stream, shapes and FLOP budgets; masked-LM, AdamW eps 1e-6, linear
schedule with 8% warmup as the reference BERT) to plans/experiment/{bert-short,bert-long}. With GPT
it also writes the payoff plans (plans/experiment/payoff: where growth starts to pay off), the KI
stream plans (plans/experiment/ki) and the growth-policy plans (plans/experiment/policy-x4, -x16).
"""
import argparse
import os

DOMAINS = ["encyclopedic", "literature", "legal", "biomedical", "technical"]
DATA = "runs/experiment-data"
CONTEXT = 64
BATCH, ACCUM = 8, 2            # 16 sequences of 64 tokens per update, 1 rank
BUDGETS = {"short": 80, "long": 240}   # updates of the initial model per stage
# Growth schedule of every growing method: one step per new domain (head dim 64 throughout).
SHAPES = [(2, 128), (2, 192), (3, 192), (3, 256), (4, 256)]
SMALL, FINAL = SHAPES[0], SHAPES[-1]


def params(layers, width, vocab, architecture="gpt"):
    """Parameter count as GPTLayout / BERTLayout carve it."""
    gpt = vocab * width + CONTEXT * width + layers * (12 * width * width + 13 * width) + 2 * width
    # BERT: embedding norm instead of the final norm, plus the MLM head's dense (D, D) + bias, its
    # norm and the output bias (V); the tied projection is the token embedding, counted above.
    return gpt if architecture == "gpt" else gpt + bert_head(width, vocab) - vocab * width


def bert_head(width, vocab):
    """Parameters of BERT's masked-LM head, tied projection included (dense, bias, norm, V x D, bias)."""
    return width * width + 3 * width + vocab * width + vocab


def flops_per_update(shape, vocab, architecture="gpt"):
    """As Sources/Model/FLOPCount.swift counts it: BERT's masked-LM head at 15% of the tokens."""
    layers, width = shape
    counted = params(layers, width, vocab, architecture)
    if architecture == "bert":
        counted -= 0.85 * bert_head(width, vocab)
    return (6 * counted + 12 * layers * width * CONTEXT) * BATCH * ACCUM * CONTEXT



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


def plan_head(name, architecture, shape, lr, replay, prompts, log_every):
    """A plan's lines from `name:` to `stages:`: the model at `shape` and the shared defaults."""
    return [f"name: {name}",
            f"model: {{architecture: {architecture}, layers: {shape[0]}, width: {shape[1]}, heads: {shape[1] // 64}, context: {CONTEXT}, dropout: 0.0}}",
            f"data: {DATA}",
            "seed: 1",
            "keepCheckpoints: 1",
            "defaults:",
            f"  batch: {BATCH}",
            f"  seq: {CONTEXT}",
            f"  accumulation: {ACCUM}",
            f"  lr: {lr:.1e}",
            *(["  schedule: inverse-sqrt", "  warmup: 0.1"] if architecture == "gpt"
              else ["  schedule: linear", "  warmup: 0.08", "  epsilon: 1.0e-6"]),
            "  weightDecay: 0.01",
            "  clip: 1.0",
            f"  replay: {{ratio: {replay}, weighting: uniform}}",
            f"  prompts: {'true' if prompts else 'false'}",
            "  evalBatches: 6",
            f"  logEvery: {log_every}",
            "stages:"]


def write(budget, base, method, vocab, lr, architecture):
    description, m = METHODS[method]
    fpu = lambda shape: flops_per_update(shape, vocab, architecture)
    budget_flops = base * fpu(SMALL)
    growing = m.get("grow") is not None
    first = m.get("shape", SMALL)
    out = [f"# ELLE experiment (issue 12), budget {budget}: {description}.",
           f"# Written by scripts/make_experiment_plans.py: every stage costs the FLOPs of {base} updates of the",
           f"# 2/128 model ({budget_flops:.4e}), counted as elle counts them; data: elle data prepare, see docs/RESULTS.md.",
           *plan_head(f"{budget}-{method}", architecture, first, lr, m["replay"], m["prompts"], log_every=10)]
    total = 0.0
    shapes = m.get("shapes", SHAPES)
    for i, domain in enumerate(DOMAINS):
        shape = shapes[i] if growing else first
        per = fpu(shape)
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


# Where growth pays off: a two-domain stream (literature, then encyclopedic, the largest domain, so
# long stages repeat little data), the first stage at the small size for every run, the second at
# equal FLOPs either on the same model or after one function-preserving growth, with stage 2
# budgets of 1, 4, 16 and 64 times the `long` stage (240 updates of the small model). Two
# families: `payoff` starts from the experiment's 2/128, `payoff-tiny` from 1/64, whose few block
# parameters run out of capacity within these budgets. Plans go to plans/experiment/FAMILY/.
PAYOFF_FACTORS = [1, 4, 16, 64]
PAYOFF_FAMILIES = {
    "payoff": (SMALL, {"grown-3x192": (3, 192), "grown-4x256": FINAL}),
    "payoff-tiny": ((1, 64), {"grown-2x64": (2, 64), "grown-2x128": (2, 128)}),
}


def write_payoff(vocab, lr):
    base = BUDGETS["long"]
    for family, (small, grown) in PAYOFF_FAMILIES.items():
        stage_flops = base * flops_per_update(small, vocab)
        for factor in PAYOFF_FACTORS:
            for name, shape in {"small": small, **grown}.items():
                updates = int(round(factor * stage_flops / flops_per_update(shape, vocab)))
                grow = None if shape == small else dict(depthMode="identity", noise=0.001, moments="carry")
                lines = [f"# Where growth pays off (issue 12), written by scripts/make_experiment_plans.py: stage 2 costs",
                         f"# {factor} x {base} updates of the {small[0]}/{small[1]} model ({factor * stage_flops:.4e} FLOPs), spent on {shape[0]}/{shape[1]}.",
                         *plan_head(f"{family}-{name}-x{factor}", "gpt", small, lr, 0.1, True, log_every=50),
                         "  - domain: literature", f"    steps: {base}",
                         *stage_yaml(1, "encyclopedic", updates, grow, None, max(1, updates // 4), shape)]
                path = f"plans/experiment/{family}/{name}-x{factor}.yaml"
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write("\n".join(lines) + "\n")
                print(f"{family:11} {name}-x{factor:<5} stage 2: {updates} updates")


# Knowledge inheritance on the stream (issue 26): elle-fp (long budget) as it is, and with
# `ki: {teacher: previous}` in every growing stage (the model that ended the previous stage
# teaches the grown one): with elle's KI defaults (tau 1; for `previous` distillation runs the whole
# stage), with the early end of plain runs (`until: teacher`) and with the paper's settings. Every
# stage costs the same FLOPs in all four, the teacher's forward passes counted: a KI stage
# plans for the teacher running on all its updates (forward = a third of a training step), so it
# gets fewer student updates; a run whose distillation ends early (the defaults' rule) spends
# less than its budget (`until: teacher`), which its counted FLOPs show. Plans: plans/experiment/ki/METHOD-sSEED.yaml.
KI_METHODS = {
    "elle-fp": None,
    "ki-defaults": "{teacher: previous}",
    "ki-rule": "{teacher: previous, until: teacher}",
    "ki-paper": "{teacher: previous, temperature: 2, schedule: linear, until: steps}",
}


def write_ki(vocab, lr, seeds=(1, 2, 3)):
    base = BUDGETS["long"]
    budget_flops = base * flops_per_update(SMALL, vocab)
    grow = METHODS["elle-fp"][1]["grow"]
    for method, ki in KI_METHODS.items():
        for seed in seeds:
            lines = [f"# Knowledge inheritance on the stream (issue 26), written by scripts/make_experiment_plans.py: elle-fp",
                     f"# (budget long){'' if ki is None else ' with ki: ' + ki + ' in every growing stage'}; every stage costs",
                     f"# {budget_flops:.4e} FLOPs{'' if ki is None else ', the teacher forward on every update included'}.",
                     *plan_head(f"ki-{method}-s{seed}", "gpt", SMALL, lr, 0.1, True, log_every=10)]
            lines[lines.index("seed: 1")] = f"seed: {seed}"
            for i, domain in enumerate(DOMAINS):
                shape = SHAPES[i]
                per = flops_per_update(shape, vocab)
                if ki is not None and i > 0:
                    per += flops_per_update(SHAPES[i - 1], vocab) / 3
                updates = int(round(budget_flops / per))
                lines += stage_yaml(i, domain, updates, grow if i > 0 else None, None, max(1, updates // 4), shape)
                if ki is not None and i > 0:
                    lines.append(f"    ki: {ki}")
            path = f"plans/experiment/ki/{method}-s{seed}.yaml"
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
            print(f"ki          {method}-s{seed}")


# Growth that pays off (issue 22): a three-domain stream from 1/64, which saturates within a stage,
# at two stage budgets 4x apart (4 and 16 x the `long` stage of 240 updates of the 1/64 model), 2
# seeds. Never grow; grow before every new domain (elle-fp: 1/64 -> 2/64 -> 2/128; elle-fp-late:
# 2/64 only for the last domain; stack: as elle-fp with G_stack depth); the plateau policy
# (`growOnPlateau`, ladder 2/64 then 2/128, identity depth, moments carried) without and with a
# masked ramp of 5% of a stage; the final size 2/128 from scratch. Every stage costs the same FLOPs.
# Plans: plans/experiment/policy-xF/METHOD-sSEED.yaml.
POLICY_DOMAINS = DOMAINS[:3]
POLICY_SHAPES = [(1, 64), (2, 64), (2, 128)]
POLICY_METHODS = {
    "replay-prompts": dict(shapes=[(1, 64)] * 3),
    "elle-fp": dict(shapes=POLICY_SHAPES, depth="identity"),
    "elle-fp-late": dict(shapes=[(1, 64), (1, 64), (2, 64)], depth="identity"),
    "stack": dict(shapes=POLICY_SHAPES, depth="stack"),
    "policy": dict(policy=True),
    "policy-ramp": dict(policy=True, ramp=True),
    "scratch-final": dict(shapes=[(2, 128)] * 3),
}


def write_policy(vocab, lr, factors=(4, 16), seeds=(1, 2)):
    small = POLICY_SHAPES[0]
    for factor in factors:
        base = factor * BUDGETS["long"]
        stage_flops = base * flops_per_update(small, vocab)
        for method, m in POLICY_METHODS.items():
            for seed in seeds:
                shapes = m.get("shapes", [small] * 3)
                lines = [f"# Growth that pays off (issue 22), written by scripts/make_experiment_plans.py: {method}, every stage",
                         f"# costs {stage_flops:.4e} FLOPs ({base} updates of the 1/64 model).",
                         *plan_head(f"policy-x{factor}-{method}-s{seed}", "gpt", shapes[0], lr, 0.1, True, log_every=50)]
                lines[lines.index("seed: 1")] = f"seed: {seed}"
                lines[lines.index("  evalBatches: 6")] = "  evalBatches: 20"   # the policy fits slopes to these losses
                if m.get("policy"):
                    ramp = f", ramp: {base // 20}" if m.get("ramp") else ""
                    ladder = ", ".join(f"{{layers: {l}, width: {w}, heads: {w // 64}, noise: 0.001{ramp}}}" for l, w in POLICY_SHAPES[1:])
                    lines.insert(lines.index("defaults:"), f"growOnPlateau: {{ladder: [{ladder}], window: 4}}")
                for i, domain in enumerate(POLICY_DOMAINS):
                    shape = shapes[i]
                    updates = base if m.get("policy") else int(round(stage_flops / flops_per_update(shape, vocab)))
                    grow = None
                    if i > 0 and shape != shapes[i - 1]:
                        grow = dict(depthMode=m["depth"], noise=0.001, moments="carry")
                    lines += stage_yaml(i, domain, updates, grow, None, max(1, updates // 16), shape)
                path = f"plans/experiment/policy-x{factor}/{method}-s{seed}.yaml"
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write("\n".join(lines) + "\n")
            print(f"policy-x{factor:<3} {method}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("vocab", type=int)
    p.add_argument("--architecture", choices=["gpt", "bert"], default="gpt")
    args = p.parse_args()
    prefix, lr = ("", 2e-3) if args.architecture == "gpt" else ("bert-", 1e-3)
    for budget, base in BUDGETS.items():
        for method in METHODS:
            total = write(prefix + budget, base, method, args.vocab, lr, args.architecture)
            print(f"{prefix + budget:10} {method:15} {total:.4e}")
    if args.architecture == "gpt":
        write_payoff(args.vocab, 2e-3)
        write_ki(args.vocab, 2e-3)
        write_policy(args.vocab, 2e-3)


if __name__ == "__main__":
    main()
