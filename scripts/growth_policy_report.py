#!/usr/bin/env python3
"""Table and plot of the plateau-policy time-to-target runs (scripts/growth_policy_experiment.sh).

Usage: growth_policy_report.py [OUT] [--plots DIR]   (default OUT runs/growth-policy, DIR docs/results)

Also, for targets on the way: the scratch run's perplexity after 25, 50, 75 and 100% of its
FLOPs C, and the FLOPs each run needs to reach it, as a fraction of the scratch run's (below 1:
fewer FLOPs than the final size from scratch).

Head start (an offline bound on any growth timing): for every validation (F, loss) of a run while
it is smaller than 2/128 (small-1x64 throughout, the others before their growth to 2/128), the
FLOPs F_scratch(loss) the scratch run of the same seed needs to reach that loss, minus F. A
2/128 grown there that afterwards learns per FLOP as scratch does at equal loss reaches scratch's
final loss that many FLOPs before C; the maximum over the curve, as a fraction of C, is then the
largest saving at C any growth timing could give. After a growth to 2/128 the report shows how
the head start moved (above 0 and rising: the grown model learns faster per FLOP than scratch at
equal loss; falling: slower), which says whether the bound's premise held.

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
    """(evals [(flops, perplexity)], growths [(step, flops, to)], steps [step of each eval]) of a run."""
    evals, growths, checks, counted = {}, [], {}, {}
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if "flops" in r and "step" in r:
                counted[r["step"]] = r["flops"]
            if "valid_perplexity" in r:
                evals[r["step"]] = (r["flops"], r["valid_perplexity"])
            if r.get("event") == "plateau_check":
                checks[r["step"]] = r["flops"]
            if r.get("event") == "growth":
                growths.append((r["step"], checks.get(r["step"]), r["grown_to"]))
    # A growth at a fixed update (--grow-at) has no plateau check: its FLOPs from the last two
    # records before it (the size, hence the FLOPs per update, is constant between them).
    for i, (step, flops, to) in enumerate(growths):
        before = sorted(s for s in counted if s <= step)
        if flops is None and len(before) >= 2:
            s0, s1 = before[-2], before[-1]
            growths[i] = (step, counted[s1] + (step - s1) * (counted[s1] - counted[s0]) / (s1 - s0), to)
    return [evals[s] for s in sorted(evals)], growths, sorted(evals)


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


FINAL = "L2 D128"   # the final size's shape in a growth's grown_to


def head_start(curve, scratch):
    """[(flops, head start)] of a (flops, perplexity) curve against the scratch run's curve: the
    FLOPs scratch needs to reach each point's perplexity minus the point's FLOPs (None where the
    point is below scratch's final perplexity)."""
    out = []
    for f, ppl in curve:
        reach = flops_to(scratch, ppl)
        out.append((f, reach - f if reach is not None else None))
    return out


def head_start_tables(runs, eval_steps):
    """Markdown lines: the head-start bound, and what happened to the head start after a growth to 2/128."""
    lines = ["", "Head start F_scratch(loss) - F while smaller than 2/128, as a fraction of C (the scratch run's FLOPs):", "",
             "| run | seed | largest head start | at update (FLOPs, perplexity) | at the growth to 2/128 |", "|---|---|---|---|---|"]
    after = ["", "After the growth to 2/128: head start (fraction of C) at the validation before it, the first after it, "
             "the middle of what remained and the end; run FLOPs / scratch FLOPs between the losses of the first validation "
             "after the growth and the end (above 1: slower per FLOP than scratch at equal loss):", "",
             "| run | seed | growth (update, FLOPs) | before | first after | middle | end | FLOPs ratio at equal loss |",
             "|---|---|---|---|---|---|---|---|"]
    best = defaultdict(list)
    for (name, seed), (curve, growths) in sorted(runs.items()):
        scratch = runs.get(("scratch-2x128", seed))
        if name == "scratch-2x128" or not scratch:
            continue
        budget = scratch[0][-1][0]
        final = [(step, flops) for step, flops, to in growths if FINAL in to]
        steps = eval_steps[(name, seed)]
        small = [p for p, step in zip(curve, steps) if not final or step <= final[0][0]]
        starts = [(h, f, ppl, step) for (f, h), (_, ppl), step in zip(head_start(small, scratch[0]), small, steps) if h is not None]
        if not starts:
            continue
        h, f, ppl, step = max(starts)
        best[name].append(h / budget)
        at_growth = f"{starts[-1][0] / budget:+.3f}" if final else "-"
        lines.append(f"| {name} | {seed} | **{h / budget:+.3f}** | {step} ({f:.2e}, {ppl:.2f}) | {at_growth} |")
        if not final:
            continue
        grown = [p for p, step in zip(curve, steps) if step > final[0][0]]
        if not grown:
            continue
        hs = head_start(grown, scratch[0])
        cell = lambda h: f"{h / budget:+.3f}" if h is not None else "below scratch's final"
        middle = hs[len(hs) // 2][1]
        a, b = flops_to(scratch[0], grown[0][1]), flops_to(scratch[0], grown[-1][1])
        ratio = (grown[-1][0] - grown[0][0]) / (b - a) if a is not None and b is not None and b > a else None
        after.append(f"| {name} | {seed} | {final[0][0]} ({final[0][1]:.2e}) | {cell(starts[-1][0])} | {cell(hs[0][1])} | "
                     f"{cell(middle)} | {cell(hs[-1][1])} | " + (f"{ratio:.2f}" if ratio else "-") + " |")
    lines += ["", "| run | largest head start, mean of seeds (the saving at C it would allow) |", "|---|---|"]
    lines += [f"| {name} | {sum(v) / len(v):.3f} ({', '.join(f'{x:.3f}' for x in v)}) |" for name, v in sorted(best.items())]
    return lines + after


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", nargs="?", default="runs/growth-policy")
    parser.add_argument("--plots", default="docs/results")
    args = parser.parse_args()
    runs, eval_steps = {}, {}
    for folder in sorted(glob.glob(os.path.join(args.out, "*-s*"))):
        m = re.match(r"(.+)-s(\d+)$", os.path.basename(folder))
        if m and os.path.exists(os.path.join(folder, "metrics.jsonl")):
            curve, growths, steps = read(folder)
            if curve:
                runs[(m.group(1), int(m.group(2)))] = (curve, growths)
                eval_steps[(m.group(1), int(m.group(2)))] = steps
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
    lines += head_start_tables(runs, eval_steps)
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
    others = iter(["tab:green", "tab:red", "tab:purple", "tab:brown"])
    for name, _ in sorted(runs):
        if name not in colors:
            colors[name] = next(others, None)
    fig, (ax, hx) = plt.subplots(1, 2, figsize=(14, 5))
    for (name, seed), (curve, growths) in sorted(runs.items()):
        xs, ys = zip(*curve)
        ax.plot(xs, ys, color=colors.get(name, None), linestyle="-" if seed == 1 else "--",
                label=f"{name} s{seed}")
        for step, flops, _ in growths:
            if flops:
                ax.axvline(flops, color=colors.get(name, None), alpha=0.3, linestyle=":")
        scratch = runs.get(("scratch-2x128", seed))
        if scratch and name != "scratch-2x128":
            budget = scratch[0][-1][0]
            points = [(f / budget, h / budget) for f, h in head_start(curve, scratch[0]) if h is not None]
            if points:
                hx.plot(*zip(*points), color=colors.get(name, None), linestyle="-" if seed == 1 else "--",
                        label=f"{name} s{seed}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("validation perplexity (encyclopedic)")
    ax.set_title("1/64 growing to 2/128 against 2/128 from scratch (dotted: growths)", fontsize=9)
    ax.legend(fontsize=7)
    hx.axhline(0, color="black", linewidth=0.8)
    hx.axhline(0.3, color="black", linewidth=0.8, linestyle=":")
    hx.set_xlabel("training FLOPs / C")
    hx.set_ylabel("head start: (F_scratch(loss) - F) / C")
    hx.set_title("FLOPs ahead of 2/128 from scratch at equal loss (dotted: the 30% asked for)")
    hx.legend(fontsize=7)
    os.makedirs(args.plots, exist_ok=True)
    fig.savefig(os.path.join(args.plots, "growth-policy.png"), dpi=110, bbox_inches="tight")
    print("plot:", os.path.join(args.plots, "growth-policy.png"))


if __name__ == "__main__":
    main()
