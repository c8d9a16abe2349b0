#!/usr/bin/env python3
"""Summarize and plot the knowledge-inheritance experiment (scripts/ki_experiment.sh).

Usage: plot_ki.py RUNS_FOLDER [PNG]   (default PNG: RUNS_FOLDER/ki.png)

Reads RUNS_FOLDER/{teacher,scratch,ki}/metrics.jsonl (elle train's metrics; a resumed run's
repeated records are collapsed, the last one wins) and prints a Markdown summary: the
from-scratch run's final validation perplexity, and the steps and FLOPs (student alone, and
student + teacher forward passes) the KI run needed to reach it, or "not reached".
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(folder):
    """(validation records by step, training records by step) of a run folder."""
    valid, train = {}, {}
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if "valid_perplexity" in r:
                valid[r["step"]] = r
            elif "loss" in r:
                train[r["step"]] = r
    return [valid[s] for s in sorted(valid)], [train[s] for s in sorted(train)]


def total(r):
    return r.get("total_flops", r["flops"])


def main():
    root = sys.argv[1]
    png = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "ki.png")
    teacher_valid, teacher_train = read(os.path.join(root, "teacher"))
    scratch, _ = read(os.path.join(root, "scratch"))
    ki, ki_train = read(os.path.join(root, "ki"))
    target = scratch[-1]["valid_perplexity"]
    final_step, final_flops = scratch[-1]["step"], scratch[-1]["flops"]

    reached = next((r for r in ki if r["valid_perplexity"] <= target), None)
    kd_last = max((r["step"] for r in ki_train if r.get("kd_weight", 0) > 0), default=0)
    lines = [
        "| run | final step | final valid PPL | training FLOPs |",
        "|---|---|---|---|",
        f"| teacher 4/256 | {teacher_valid[-1]['step']} | {teacher_valid[-1]['valid_perplexity']:.2f} | {teacher_valid[-1]['flops']:.3e} |",
        f"| student 6/384 from scratch | {final_step} | {target:.2f} | {final_flops:.3e} |",
        f"| student 6/384 with KI | {ki[-1]['step']} | {ki[-1]['valid_perplexity']:.2f} | {ki[-1]['flops']:.3e} student + {ki[-1]['teacher_flops']:.3e} teacher = {total(ki[-1]):.3e} |",
        "",
    ]
    if reached is None:
        lines.append(f"KI run vs the from-scratch final perplexity {target:.2f}: **not reached** "
                     f"(best KI validation perplexity {min(r['valid_perplexity'] for r in ki):.2f}).")
    else:
        # Linear interpolation between the evaluation before and the one that reached the target.
        i = ki.index(reached)
        step, flops, tflops = reached["step"], reached["flops"], total(reached)
        if i > 0:
            a, b = ki[i - 1], reached
            w = (a["valid_perplexity"] - target) / (a["valid_perplexity"] - b["valid_perplexity"])
            step = a["step"] + w * (b["step"] - a["step"])
            flops = a["flops"] + w * (b["flops"] - a["flops"])
            tflops = total(a) + w * (total(b) - total(a))
        lines += [
            f"KI reaches the from-scratch final perplexity {target:.2f} at the evaluation after update "
            f"{reached['step']} (interpolated: update {step:.0f}) of {final_step}.",
            "",
            "| | updates | student FLOPs | student + teacher FLOPs |",
            "|---|---|---|---|",
            f"| from scratch (final) | {final_step} | {final_flops:.3e} | {final_flops:.3e} |",
            f"| KI, first evaluation at or below | {reached['step']} | {reached['flops']:.3e} | {total(reached):.3e} |",
            f"| KI, interpolated | {step:.0f} | {flops:.3e} | {tflops:.3e} |",
            "",
            f"Saving at the interpolated point: {100 * (1 - step / final_step):.0f}% of the updates, "
            f"{100 * (1 - flops / final_flops):.0f}% of the student FLOPs, "
            f"{100 * (1 - tflops / final_flops):.0f}% of the FLOPs counting the teacher's forward passes "
            f"(the teacher's own training, {teacher_valid[-1]['flops']:.3e} FLOPs, not included).",
        ]
    lines.append("")
    lines.append(f"Distillation (a_t > 0) through update {kd_last} (last logged); plot: {png}")
    print("\n".join(lines))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot([r["step"] for r in scratch], [r["valid_perplexity"] for r in scratch], "o-", label="6/384 from scratch")
    ax1.plot([r["step"] for r in ki], [r["valid_perplexity"] for r in ki], "s-", label="6/384 with KI")
    ax1.axhline(teacher_valid[-1]["valid_perplexity"], color="gray", ls=":", label="teacher 4/256 (final)")
    ax1.axhline(target, color="black", ls="--", lw=0.8, label="from-scratch final")
    ax1.set_xlabel("update")
    ax1.set_ylabel("validation perplexity")
    ax1.set_yscale("log")
    ax1.legend()
    ax2.plot([r["flops"] for r in scratch], [r["valid_perplexity"] for r in scratch], "o-", label="from scratch")
    ax2.plot([total(r) for r in ki], [r["valid_perplexity"] for r in ki], "s-", label="KI, student + teacher FLOPs")
    ax2.plot([r["flops"] for r in ki], [r["valid_perplexity"] for r in ki], "s:", alpha=0.5, label="KI, student FLOPs only")
    ax2.axhline(target, color="black", ls="--", lw=0.8)
    ax2.set_xlabel("training FLOPs")
    ax2.set_yscale("log")
    ax2.legend()
    fig.suptitle("Knowledge inheritance: GPT 6/384 student, 4/256 teacher (elle)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main()
