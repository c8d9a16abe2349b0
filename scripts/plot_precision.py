#!/usr/bin/env python3
"""bf16 against fp32 on the same run (scripts/precision_experiment.sh): validation curves.

Usage: plot_precision.py FP32_RUN BF16_RUN PNG

Reads each run folder's metrics.jsonl (a resumed run's repeated records are collapsed, the last
one wins), prints a Markdown table of the validation loss of both at every evaluation with their
relative difference, and plots both curves (loss, and the difference in percent) into PNG.
Exits non-zero if the curves are more than 1% apart at any evaluation (TESTING.md, bf16).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curve(folder):
    """{step: validation loss} of a run folder."""
    valid = {}
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if "valid_loss" in r:
                valid[r["step"]] = r["valid_loss"]
    return valid


def main():
    fp32_run, bf16_run, png = sys.argv[1:4]
    a, b = curve(fp32_run), curve(bf16_run)
    steps = sorted(set(a) & set(b))
    if not steps:
        sys.exit("no evaluation in common")
    diff = [100 * (b[s] - a[s]) / a[s] for s in steps]
    print("| update | fp32 valid loss | bf16 valid loss | bf16 - fp32 |")
    print("|---|---|---|---|")
    for s, d in zip(steps, diff):
        print(f"| {s} | {a[s]:.4f} | {b[s]:.4f} | {d:+.2f}% |")
    worst = max(abs(d) for d in diff)
    print(f"\n{len(steps)} evaluations; largest difference {worst:.2f}% (at update {steps[diff.index(max(diff, key=abs))]})")

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(steps, [a[s] for s in steps], "o-", ms=3, label="fp32")
    top.plot(steps, [b[s] for s in steps], "s--", ms=3, label="bf16 (mixed precision)")
    top.set_ylabel("validation loss")
    top.set_title("GPT 6/384, literature, 8k BPE: same seed and data order")
    top.legend()
    top.grid(alpha=0.3)
    bottom.plot(steps, diff, "k.-")
    bottom.axhline(0, color="gray", lw=0.5)
    for y in (-1, 1):
        bottom.axhline(y, color="red", lw=0.5, ls=":")
    bottom.set_ylabel("bf16 - fp32 (%)")
    bottom.set_xlabel("update")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"wrote {png}")
    sys.exit(0 if worst <= 1 else 1)


if __name__ == "__main__":
    main()
