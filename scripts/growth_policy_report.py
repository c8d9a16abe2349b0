#!/usr/bin/env python3
"""Table and plot of the plateau-policy time-to-target runs (scripts/growth_policy_experiment.sh).

Usage: growth_policy_report.py [OUT] [--plots DIR]   (default OUT runs/growth-policy, DIR docs/results)

Also, for targets on the way: the scratch run's perplexity after 25, 50, 75 and 100% of its
FLOPs C, and the FLOPs each run needs to reach it, as a fraction of the scratch run's (below 1:
fewer FLOPs than the final size from scratch).

For every run OUT/NAME-sSEED: its final validation perplexity, the growths the policy made (update
and FLOPs), and the FLOPs at which it first reaches the final perplexity of `scratch-2x128` of the
same seed (linear in log perplexity between validations; "-" if never), as a fraction of that
scratch run's FLOPs. Writes OUT/report.md and DIR/growth-policy.png (validation perplexity against
FLOPs, growth points marked) when matplotlib is there (.venv: scripts/setup.sh --python).
"""
import argparse
import glob
import json
import math
import os
import re
from collections import defaultdict

import ki_sweep  # noqa: E402  (scripts/ is on the path when run as a script)


def read(folder):
    """(evals [(flops, perplexity)], growths [(step, flops, to)]) of a run."""
    evals, growths, checks = {}, [], {}
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if "valid_perplexity" in r:
                evals[r["step"]] = (r["flops"], r["valid_perplexity"])
            if r.get("event") == "plateau_check":
                checks[r["step"]] = r["flops"]
            if r.get("event") == "growth":
                growths.append((r["step"], checks.get(r["step"]), r["grown_to"]))
    return [evals[s] for s in sorted(evals)], growths


def flops_to(curve, target):
    """FLOPs at which a (flops, perplexity) curve first reaches `target` (ki_sweep's rule)."""
    return ki_sweep.flops_to([(None, f, p) for f, p in curve], target)


def interpolate(curve, flops):
    """ln perplexity of `curve` at `flops` (linear in FLOPs between validations)."""
    prev = None
    for f, ppl in curve:
        if f >= flops:
            if prev is None:
                return math.log(ppl)
            f0, p0 = prev
            return math.log(p0) + (math.log(ppl) - math.log(p0)) * (flops - f0) / (f - f0)
        prev = (f, ppl)
    return math.log(curve[-1][1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", nargs="?", default="runs/growth-policy")
    parser.add_argument("--plots", default="docs/results")
    args = parser.parse_args()
    runs = {}
    for folder in sorted(glob.glob(os.path.join(args.out, "*-s*"))):
        m = re.match(r"(.+)-s(\d+)$", os.path.basename(folder))
        if m and os.path.exists(os.path.join(folder, "metrics.jsonl")):
            curve, growths = read(folder)
            if curve:
                runs[(m.group(1), int(m.group(2)))] = (curve, growths)
    lines = ["| run | seed | final perplexity | growths (update, FLOPs) | FLOPs to scratch's final perplexity | fraction of scratch's FLOPs |",
             "|---|---|---|---|---|---|"]
    fractions = defaultdict(list)
    finals = defaultdict(list)
    for (name, seed), (curve, growths) in sorted(runs.items()):
        scratch = runs.get(("scratch-2x128", seed))
        target = scratch[0][-1][1] if scratch else None
        reach = flops_to(curve, target) if target else None
        fraction = reach / scratch[0][-1][0] if reach else None
        if fraction is not None:
            fractions[name].append(fraction)
        finals[name].append(curve[-1][1])
        grown = ", ".join(f"{step} ({flops:.2e}) -> {to.split(' dropout')[0]}" if flops else f"{step} -> {to}" for step, flops, to in growths) or "-"
        lines.append(f"| {name} | {seed} | {curve[-1][1]:.2f} | {grown} | "
                     + (f"{reach:.3e}" if reach else "-") + " | " + (f"{fraction:.3f}" if fraction is not None else "-") + " |")
    lines += ["", "| run | mean final perplexity | mean fraction of scratch's FLOPs to its final perplexity (seeds reaching it) |", "|---|---|---|"]
    for name in sorted(finals):
        f = fractions.get(name, [])
        lines.append(f"| {name} | {sum(finals[name]) / len(finals[name]):.2f} | "
                     + (f"{sum(f) / len(f):.3f} ({len(f)} of {len(finals[name])})" if f else f"- (0 of {len(finals[name])})") + " |")
    # Time to intermediate targets: the scratch run's perplexity at a fraction of its FLOPs, and
    # the FLOPs each run needs to reach it (mean over seeds, as a fraction of the scratch run's).
    fractions_of_c = [0.25, 0.5, 0.75, 1.0]
    lines += ["", "| run | " + " | ".join(f"to scratch's perplexity at {f:.0%} of C" for f in fractions_of_c) + " |",
              "|---|" + "---|" * len(fractions_of_c)]
    for name in sorted(finals):
        cells = []
        for f in fractions_of_c:
            ratios = []
            for seed in sorted(s for n, s in runs if n == name):
                scratch = runs.get(("scratch-2x128", seed))
                if not scratch:
                    continue
                budget = scratch[0][-1][0]
                target = math.exp(interpolate(scratch[0], f * budget))
                reach = flops_to(runs[(name, seed)][0], target)
                ratios.append(reach / (f * budget) if reach else None)
            known = [r for r in ratios if r is not None]
            cells.append(f"{sum(known) / len(known):.2f}" + ("" if len(known) == len(ratios) else f" ({len(known)} of {len(ratios)})") if known else "never")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    report = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(report)
    print(report)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: no plot (scripts/setup.sh --python, then .venv/bin/python)")
        return
    colors = {"scratch-2x128": "black", "small-1x64": "grey", "policy": "tab:blue", "policy-ramp": "tab:orange"}
    fig, ax = plt.subplots(figsize=(8, 5))
    for (name, seed), (curve, growths) in sorted(runs.items()):
        xs, ys = zip(*curve)
        ax.plot(xs, ys, color=colors.get(name, None), linestyle="-" if seed == 1 else "--",
                label=f"{name} s{seed}")
        for step, flops, _ in growths:
            if flops:
                ax.axvline(flops, color=colors.get(name, None), alpha=0.3, linestyle=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("validation perplexity (encyclopedic)")
    ax.set_title("Growth on plateau: 1/64 -> 2/64 -> 2/128 against 2/128 from scratch (dotted: growths)")
    ax.legend(fontsize=7)
    os.makedirs(args.plots, exist_ok=True)
    fig.savefig(os.path.join(args.plots, "growth-policy.png"), dpi=110, bbox_inches="tight")
    print("plot:", os.path.join(args.plots, "growth-policy.png"))


if __name__ == "__main__":
    main()
