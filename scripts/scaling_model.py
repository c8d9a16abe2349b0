#!/usr/bin/env python3
"""Cost model of elle's data-parallel step, calibrated on scripts/scaling.sh's measurements
(docs/SCALING.md). Run by hand (needs numpy and matplotlib, e.g. .venv/bin/python):

    scripts/scaling_model.py RESULTS.jsonl [...] [--plot docs/scaling.png] [--node-gflops G]

Prints markdown: measured step times, hidden fractions, weak scaling, the fitted links, the
model against every measured configuration, the growth broadcast, and the predictions.

Model, per update on p ranks (one per node), all times in seconds:
  all-reduce of n bytes (ring):  t(n, p) = 2 (p-1)/p * n / B + 2 (p-1) * alpha
  step = compute + kappa * (bytes sent while backward runs) + exposed
  exposed = when the last collective ends - when backward ends (>= 0), from a simulation of the
    synchronizer: the same bucket plan (reports: tied embedding after the head, final norm, blocks
    L-1..0, embeddings; buckets of at most bucket_mb, split in equal pieces), each collective
    starting when its range is final and the previous one has finished (one link), plus the
    token-row presence merge (V floats, at backward's start) and the touched rows' all-reduce
    (U(p * tokens) rows of D floats, after backward).
  compute: forward, backward and the optimizer; backward is 2/3 of forward + backward and every
    part of it takes time in proportion to its FLOPs (head 2VD, block 24D^2 + 4TD per token).
  kappa: CPU time one byte of communication costs the computing cores (TCP copies, polling),
    fitted on the measured overlapped steps.
  growth: rank 0 grows, broadcasts (pipelined tree: c * n / B + ceil(log2 p) * (alpha + 128 KiB / B))
    and every rank hashes; amortized over the reference plan's updates.
B and alpha are fitted per network on the all-reduce-by-size runs (2, 3 and 4 ranks).
"""
import argparse
import json
import math
import sys
from collections import defaultdict

import numpy as np

MIB = 1 << 20


# MARK: reading measurements

def load(paths):
    runs = []
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    runs.append(json.loads(line))
    return runs


def network_of(run):
    """('shm'|'1gbit'|'10gbit'|'none', ranks) of a run with all-reduce rows."""
    config = run["config"]
    if run["experiment"] in ("local", "weak"):
        return "shm"
    for rate in ("10gbit", "1gbit", "none"):
        if f"-{rate}" in config:
            return rate
    return None


def median(values):
    return float(np.median(values))


# MARK: the ring all-reduce

def fit_links(runs):
    """Per network: (B bytes/s, alpha s) from every (p, size) median of the runs with all-reduce
    rows: B by least squares on sizes >= 1 MiB (bandwidth-bound), alpha as the median latency
    left over on sizes <= 64 KiB, alternately (two rounds)."""
    points = defaultdict(list)
    for run in runs:
        r = run["result"]
        net = network_of(run)
        if net is None or "allreduce" not in r:
            continue
        p = r["ranks"]
        for row in r["allreduce"]:
            points[net].append((p, row["bytes"], row["median_ms"] / 1000))
    links = {}
    for net, pts in points.items():
        alpha, b = 0.0, 1e9
        for _ in range(2):
            large = [(2 * (p - 1) / p * n, s - 2 * (p - 1) * alpha) for p, n, s in pts if n >= MIB]
            if large:
                b = sum(x * x for x, _ in large) / sum(x * y for x, y in large)
            small = [(s - 2 * (p - 1) / p * n / b) / (2 * (p - 1)) for p, n, s in pts if n <= 64 * 1024]
            if small:
                alpha = max(1e-6, median(small))
        links[net] = {"B": b, "alpha": alpha, "points": [(p, n, s, ring_time(n, p, b, alpha)) for p, n, s in pts]}
    return links


def ring_time(n, p, b, alpha):
    if p <= 1 or n <= 0:
        return 0.0
    return 2 * (p - 1) / p * n / b + 2 * (p - 1) * alpha


# MARK: the model's shape, FLOPs and bucket plan

class Shape:
    def __init__(self, layers, width, vocab, seq, context=None):
        self.L, self.D, self.V, self.T = layers, width, vocab, seq
        self.context = context or seq
        d = width
        self.block = 12 * d * d + 13 * d  # ln1, qkv, proj, ln2, fc, fcproj (weights and biases)
        self.params = vocab * d + self.context * d + layers * self.block + 2 * d

    def flops_per_token(self):
        """Forward + backward (6 per parameter used in a product, 12 L D T for attention)."""
        return 6 * (self.L * 12 * self.D ** 2 + self.V * self.D) + 12 * self.L * self.D * self.T

    def backward_parts(self):
        """Fractions of backward time: head, then each block (from the last)."""
        head = 2 * self.V * self.D
        block = 24 * self.D ** 2 + 4 * self.D * self.T
        total = head + self.L * block
        return head / total, [block / total] * self.L


def distinct_rows(tokens, vocab):
    """Distinct token ids among `tokens` tokens of text (the tied embedding's touched rows):
    Heaps' law fitted on GPT-2 BPE ids of data/sample (U = 1.41 n^0.80 for n <= 16K, measured),
    saturating at the vocabulary."""
    u = 1.41 * tokens ** 0.80
    return vocab * (1 - math.exp(-u / vocab))


def distinct_random_rows(tokens, vocab):
    """Expected distinct ids among `tokens` uniform random ids (what `elle bench comm` trains on)."""
    return vocab * (1 - math.exp(-tokens / vocab))


def collectives(shape, bucket_bytes, p, tokens_per_rank, rows_of=distinct_rows, wire=4):
    """(ready fraction of backward, bytes) of every collective of one update, in start order,
    as GradientSynchronizer starts them; ready -1 means at backward's start."""
    if p <= 1:
        return []
    cap = bucket_bytes // 4
    head, blocks = shape.backward_parts()
    # Reports (elements, when final as a fraction of backward).
    reports = [("wte", shape.V * shape.D, head), ("lnf", 2 * shape.D, head)]
    t = head
    for frac in blocks:
        t += frac
        reports.append(("block", shape.block, t))
    reports.append(("wpe", shape.context * shape.D, 1.0))
    out = [(-1.0, 4 * shape.V)]  # token-row presence merge, started as backward begins
    open_count, adjacent = 0, False

    def start(count, ready):
        pieces = max(1, math.ceil(count / cap)) if cap > 0 else 1
        for k in range(pieces):
            size = count * (k + 1) // pieces - count * k // pieces
            out.append((ready, wire * size))

    for name, count, ready in reports:
        contiguous = name != "lnf" and open_count > 0  # every report but the first two extends downward
        if cap == 0:
            continue
        if not contiguous and open_count > 0:
            start(open_count, ready)
            open_count = 0
        open_count += count
        if open_count >= cap:
            start(open_count, ready)
            open_count = 0
    if cap == 0:
        start(shape.params, 1.0)
    elif open_count > 0:
        start(open_count, 1.0)
    rows = rows_of(p * tokens_per_rank, shape.V)
    out.append((1.0, 4 * rows * shape.D))
    return out


def exchange_of(r):
    """(zero, bytes per gradient float on the wire) of a run; runs from before issue 24 have
    neither field (no ZeRO, float32)."""
    return r.get("zero", 0), 2 if r.get("allreduce_dtype", "fp32") == "bf16" else 4


def simulate(shape, compute, bucket_bytes, p, link, tokens_per_rank, kappa, rows_of=distinct_rows, exchange=(0, 4)):
    """(step, exposed, alone, overlapped bytes) for one update.

    `exchange` = (zero, wire): wire is the bytes per gradient float (4, or 2 with the bf16
    exchange; the token rows and the presence merge stay float32). On 2 ranks a bf16 bucket is one
    ring all-reduce of half the bytes, and ZeRO-1's reduce of a piece onto its owner moves what
    the ring's reduce-scatter and all-gather move (n / B), so both use the ring's time; ZeRO-1 then
    adds the parameter all-gather after the update, (p - 1) / p * 4 N / B + (p - 1) alpha, which
    nothing hides. With more ranks ZeRO-1's reduce onto one owner at a time and bf16's all-gather
    after backward cost more than this: the model is checked on 2 ranks only for those modes."""
    zero, wire = exchange
    forward = compute * 0.95 / 3
    backward = compute * 0.95 * 2 / 3
    end = forward + backward
    free, sent_during = forward, 0.0
    alone = 0.0
    for ready, nbytes in collectives(shape, bucket_bytes, p, tokens_per_rank, rows_of, wire):
        when = forward if ready < 0 else forward + ready * backward
        duration = ring_time(nbytes, p, link["B"], link["alpha"])
        alone += duration
        begin = max(when, free)
        free = begin + duration
        if when < end:
            sent_during += nbytes
    exposed = max(0.0, free - end)
    if zero and p > 1:
        gather = (p - 1) / p * 4 * shape.params / link["B"] + (p - 1) * link["alpha"]
        exposed += gather
        # The alone replay starts the reduces and the all-gather together: per direction each
        # rank's link carries (p - 1) / p of both, (p - 1) / p (wire + 4) N bytes, where the reduces
        # alone were counted at the ring's 2 (p - 1) / p wire N.
        alone += (p - 1) / p * (4 - wire) * shape.params / link["B"]
    return compute + kappa * sent_during + exposed, exposed, alone, sent_during


# MARK: calibration and checks against the measured steps

def step_runs(runs):
    return [r for r in runs if "overlapped_ms_median" in r["result"]]


def fit_kappa(runs, links):
    """CPU cost per byte sent while backward runs: measured (overlapped - compute - wait) over
    the bytes the model says were sent during backward; one value per transport (tcp, shm).
    From each run's best steps (other jobs only add time; medians of two noisy modes differ by
    more than this cost on a loaded machine)."""
    samples = defaultdict(list)
    for run in step_runs(runs):
        r = run["result"]
        net = network_of(run)
        link = links.get(net)
        if link is None:
            continue
        shape = Shape(r["layers"], r["width"], r["vocab"], r["seq"])
        compute = min(r["compute_ms"]) / 1000
        _, _, _, sent = simulate(shape, compute, int(r["bucket_mb"] * MIB), r["ranks"], link, r["batch"] * r["seq"], 0,
                                 distinct_random_rows, exchange_of(r))
        slowdown = (min(r["overlapped_ms"]) - min(r["compute_ms"]) - r["overlapped_wait_ms_median"]) / 1000
        if sent > 0:
            samples["shm" if net == "shm" else "tcp"].append(slowdown / sent)
    return {k: max(0.0, median(v)) for k, v in samples.items()}


def check(runs, links, kappa):
    """Per measured configuration (all rounds together): the model's overlapped step, serial step
    and collectives-alone time against the measurement, from the medians of all repeats and from
    the best-of-all. The configuration's own measured compute step (interleaved with the others in
    the same run) is the model's input; what is checked is the communication part."""
    groups = defaultdict(list)
    for run in step_runs(runs):
        groups[(run["experiment"], run["config"])].append(run)
    rows = []
    for (experiment, config), group in sorted(groups.items()):
        r = group[0]["result"]
        net = network_of(group[0])
        if net not in links:
            continue
        shape = Shape(r["layers"], r["width"], r["vocab"], r["seq"])
        k = kappa.get("shm" if net == "shm" else "tcp", 0)
        measured = {mode: [v / 1000 for run in group for v in run["result"][f"{mode}_ms"]]
                    for mode in ("compute", "overlapped", "serial", "alone")}
        row = {"config": f"{experiment}/{config}", "repeats": len(measured["compute"]),
               "wait": median([run["result"]["overlapped_wait_ms_median"] / 1000 for run in group])}
        for statistic, f in (("median", median), ("best", best)):
            compute = f(measured["compute"])
            args = (shape, compute)
            tail = (r["ranks"], links[net], r["batch"] * r["seq"], k, distinct_random_rows, exchange_of(r))
            overlapped, exposed, alone, _ = simulate(*args, int(r["bucket_mb"] * MIB), *tail)
            serial, _, _, _ = simulate(*args, 0, *tail)
            row[statistic] = {"compute": compute, "exposed": exposed,
                              "overlapped": (f(measured["overlapped"]), overlapped),
                              "serial": (f(measured["serial"]), serial),
                              "alone": (f(measured["alone"]), alone)}
        rows.append(row)
    return rows


# MARK: the measurements themselves

def best(values):
    return float(min(values))


def summarize(runs):
    """Step-time figures per configuration: medians over every repeat of every round, ranges,
    and best-of-all (on a shared machine other jobs only ever add time, so the minimum of many
    interleaved repeats is the closest to the machine's own speed)."""
    by_config = defaultdict(lambda: defaultdict(list))
    for run in runs:
        r = run["result"]
        for mode in ("compute", "overlapped", "serial", "alone"):
            if f"{mode}_ms" in r:
                by_config[(run["experiment"], run["config"])][mode] += [v / 1000 for v in r[f"{mode}_ms"]]
        if "hidden_fraction" in r:
            by_config[(run["experiment"], run["config"])]["hidden"] += r["hidden_fraction"]
        for mode in ("overlapped", "serial"):
            if f"{mode}_wait_ms_median" in r:
                by_config[(run["experiment"], run["config"])][f"{mode}_wait"].append(r[f"{mode}_wait_ms_median"] / 1000)
    print("## Measured step times (s): median [range] best, over all repeats of all rounds")
    print("| experiment | config | repeats | compute | overlapped | serial | alone | waited after backward (overlapped / serial) |")
    print("|---|---|---|---|---|---|---|---|")
    for (experiment, config), modes in sorted(by_config.items()):
        def cell(mode):
            v = modes.get(mode)
            return f"{median(v):.3f} [{min(v):.3f}-{max(v):.3f}] {best(v):.3f}" if v else "-"
        waits = " / ".join(f"{median(modes[m]):.3f}" for m in ("overlapped_wait", "serial_wait") if modes.get(m)) or "-"
        print(f"| {experiment} | {config} | {len(modes['compute'])} | {cell('compute')} | {cell('overlapped')} | "
              f"{cell('serial')} | {cell('alone')} | {waits} |")

    print("\n## Hidden fraction: 1 - (overlapped - compute) / alone (the issue's definition), and from the wait")
    print("(1 - time the overlapped step waited for its collectives after backward / alone: blind to the CPU")
    print("that communication takes from computation, but insensitive to how long the computation took)")
    print("| config | per repeat (paired, median [range]) | from medians | from best-of | from the wait (median of runs) | "
          "control: serial mode, per repeat (should be ~0%) | (serial - overlapped) / alone, per repeat |")
    print("|---|---|---|---|---|---|---|")
    controls = {}
    for (experiment, config), m in sorted(by_config.items()):
        if not m.get("alone"):
            continue
        hidden = m["hidden"]
        from_medians = 1 - (median(m["overlapped"]) - median(m["compute"])) / median(m["alone"])
        from_best = 1 - (best(m["overlapped"]) - best(m["compute"])) / best(m["alone"])
        from_wait = 1 - median(m["overlapped_wait"]) / median(m["alone"])
        # Control: the same formula for the serial mode, whose communication is all exposed (~0%).
        control = [1 - (sv - c) / a for sv, c, a in zip(m["serial"], m["compute"], m["alone"])]
        controls[(experiment, config)] = control
        # Saved against the serial step (the same collectives, all after backward), per repeat.
        saved = [(sv - o) / a for sv, o, a in zip(m["serial"], m["overlapped"], m["alone"])]
        print(f"| {experiment}/{config} | {100 * median(hidden):.0f}% [{100 * min(hidden):.0f}-{100 * max(hidden):.0f}%] | "
              f"{100 * from_medians:.0f}% | {100 * from_best:.0f}% | {100 * from_wait:.0f}% | "
              f"{100 * median(control):.0f}% [{100 * min(control):.0f}-{100 * max(control):.0f}%] | "
              f"{100 * median(saved):.0f}% [{100 * min(saved):.0f}-{100 * max(saved):.0f}%] |")

    weak = [run for run in runs if run["experiment"] == "weak"]
    if weak:
        print("\n## Weak scaling, back-to-back runs (experiment weak): 1 rank x 1 thread (batch B) vs 2 ranks x 1 thread "
              "(batch B each, overlapped step); efficiency = 1x1 step / 2x1 step, from the runs' medians and best steps")
        print("| round | 1 x 1 run | load before | 1x1 median / best (s) | 2 x 1 run | load before | 2x1 median / best (s) | efficiency (medians / best) |")
        print("|---|---|---|---|---|---|---|---|")
        pairs = [("1x1-b1", "2x1-b1"), ("1x1-b1", "2x1-b1-unbound"), ("1x1-b1-sessions", "2x1-b1-sessions")]
        all_eff = defaultdict(list)
        for rnd in sorted({run["round"] for run in weak}):
            in_round = {run["config"]: run for run in weak if run["round"] == rnd}
            for one_name, two_name in pairs:
                if one_name not in in_round or two_name not in in_round:
                    continue
                one, two = in_round[one_name], in_round[two_name]
                o, t = one["result"]["compute_ms"], two["result"]["overlapped_ms"]
                eff = (median(o) / median(t), min(o) / min(t))
                all_eff[two_name].append(eff)
                print(f"| {rnd} | {one_name} | {one.get('load_before', '?').split()[0]} | {median(o) / 1000:.2f} / {min(o) / 1000:.2f} | "
                      f"{two_name} | {two.get('load_before', '?').split()[0]} | {median(t) / 1000:.2f} / {min(t) / 1000:.2f} | "
                      f"{100 * eff[0]:.0f}% / {100 * eff[1]:.0f}% |")
        for name, effs in all_eff.items():
            print(f"- {name}: efficiency from medians {100 * min(e[0] for e in effs):.0f}-{100 * max(e[0] for e in effs):.0f}%, "
                  f"from best steps {100 * min(e[1] for e in effs):.0f}-{100 * max(e[1] for e in effs):.0f}% over {len(effs)} round(s)")

    local = {config: m for (experiment, config), m in by_config.items() if experiment == "local"}
    if all(k in local for k in ("1x1-b1", "2x1-b1")):
        one, two = local["1x1-b1"]["compute"], local["2x1-b1"]["overlapped"]
        print("\n## Scaling on this 2-core machine (6/384 unless given otherwise)")
        print(f"weak scaling, 2 ranks x 1 thread (batch B each, overlapped) vs 1 rank x 1 thread (batch B): "
              f"efficiency {100 * median(one) / median(two):.0f}% from medians, {100 * best(one) / best(two):.0f}% from best-of")
        two_compute = local["2x1-b1"]["compute"]
        print(f"  (2 ranks computing without communication: {100 * median(one) / median(two_compute):.0f}% / "
              f"{100 * best(one) / best(two_compute):.0f}%: what sharing the machine's memory system costs)")
        if "1x1-b2" in local and "1x2-b2" in local:
            base = local["1x1-b2"]["compute"]
            for name, values in [("1 rank x 2 threads (batch 2B)", local["1x2-b2"]["compute"]),
                                 ("2 ranks x 1 thread (batch B each)", two)]:
                print(f"strong scaling, {name} vs 1 rank x 1 thread (batch 2B): speedup "
                      f"{median(base) / median(values):.2f}x from medians, {best(base) / best(values):.2f}x from best-of")


# MARK: predictions

PLAN = [(6, 384), (8, 512), (10, 640), (11, 704), (12, 768)]
NETWORKS = {"10 Gbit/s": 10e9, "25 Gbit/s": 25e9, "100 Gbit/s": 100e9}
NODES = [8, 16, 32, 64, 128, 256, 512, 1024]
# Reference plan (ELLE.md section 1): 62.5k updates on the first domain, then per later domain
# 5k FRW + 20k; one growth before each later domain.
PLAN_UPDATES = 62_500 + 4 * 25_000
GROWTHS = 4


def predict(links, kappa, node_flops, base_flops, efficiency_1g, alpha_by_net, tokens_per_node, bucket_mb, vocab,
            seq, grow_rate):
    """{(model, network): [(nodes, step, efficiency)]} for nodes of `node_flops` FLOP/s."""
    table = {}
    for layers, width in PLAN:
        shape = Shape(layers, width, vocab, seq)
        compute = shape.flops_per_token() * tokens_per_node / node_flops
        for name, rate in NETWORKS.items():
            link = {"B": rate / 8 * efficiency_1g, "alpha": alpha_by_net[name]}
            series = []
            for p in NODES:
                step, exposed, _, _ = simulate(shape, compute, int(bucket_mb * MIB), p, link, tokens_per_node,
                                               kappa.get("tcp", 0) * base_flops / node_flops)
                growth = growth_time(shape, p, link, grow_rate) * GROWTHS / PLAN_UPDATES
                step += growth
                series.append((p, step, compute / step, exposed, growth))
            table[(f"{layers}/{width}", name)] = series
    return table


def broadcast_time(nbytes, p, link):
    """Pipelined tree broadcast of n bytes to p ranks: each inner node sends twice (binary tree)
    the whole message, plus one 128 KiB segment and a latency per level."""
    hops = math.ceil(math.log2(p))
    return (2 if p > 2 else 1) * nbytes / link["B"] + hops * (link["alpha"] + 128 * 1024 / link["B"])


def growth_time(shape, p, link, grow_rate):
    """Seconds of one growth event: grow on rank 0 and hash (grow_rate bytes/s), broadcast."""
    nbytes = 4 * shape.params
    return nbytes / grow_rate + broadcast_time(nbytes, p, link)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+")
    parser.add_argument("--plot", help="write the efficiency plot here (PNG)")
    parser.add_argument("--tokens-per-node", type=int, default=8 * 512, help="tokens per node per update (8 x 512)")
    parser.add_argument("--bucket-mb", type=float, default=2)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--fast-node", type=float, default=20, help="second node type: this many times this machine's rate")
    parser.add_argument("--node-gflops", type=float, help="this machine's rate (2 cores) instead of the best 1 x 1 step's")
    args = parser.parse_args()
    runs = load(args.results)
    summarize(runs)
    print()
    links = fit_links(runs)
    kappa = fit_kappa(runs, links)

    print("## Fitted links (ring all-reduce: t = 2(p-1)/p n/B + 2(p-1) alpha)")
    print("| network | B (GB/s) | alpha (us) | points | median abs error |")
    print("|---|---|---|---|---|")
    for net, link in sorted(links.items()):
        errors = [abs(pred - s) / s for _, n, s, pred in link["points"] if n >= 1 << 20]
        print(f"| {net} | {link['B'] / 1e9:.3f} | {link['alpha'] * 1e6:.1f} | {len(link['points'])} | "
              f"{100 * median(errors):.0f}% (>= 1 MiB) |")
    print(f"\nkappa (CPU seconds per GB sent during backward): " +
          ", ".join(f"{k} {v * 1e9:.3f}" for k, v in kappa.items()))

    rows = check(runs, links, kappa)
    print("\n## Model vs measurement, per configuration (input: its measured compute step)")
    print("| config | statistic | repeats | compute | overlapped measured / predicted (error) | "
          "serial measured / predicted (error) | alone measured / predicted (error) | exposed: waited / predicted |")
    print("|---|---|---|---|---|---|---|---|")
    worst = 0
    for row in rows:
        for statistic in ("median", "best"):
            x = row[statistic]
            cells = []
            for mode in ("overlapped", "serial", "alone"):
                m, pr = x[mode]
                error = pr / m - 1
                if mode != "alone":
                    worst = max(worst, abs(error))
                cells.append(f"{m:.3f} / {pr:.3f} ({100 * error:+.0f}%)")
            exposed = f"{row['wait']:.3f} / {x['exposed']:.3f}" if statistic == "median" else f"- / {x['exposed']:.3f}"
            print(f"| {row['config']} | {statistic} | {row['repeats']} | {x['compute']:.3f} | " + " | ".join(cells) + f" | {exposed} |")
    print(f"\nlargest step-time error (overlapped and serial, medians and best-of): {100 * worst:.1f}%")

    # Node rate: this machine's (2 cores) rate from the best 1-rank x 1-thread step, times two
    # cores (other jobs only slow a step down; the best step is the closest to the machine's own).
    rates = []
    for run in runs:
        r = run["result"]
        if run["experiment"] in ("local", "weak") and "compute_ms" in r and r["ranks"] == 1 and r["threads"] == 1:
            shape = Shape(r["layers"], r["width"], r["vocab"], r["seq"])
            rates.append(shape.flops_per_token() * r["batch"] * r["seq"] / (min(r["compute_ms"]) / 1000) * 2)
    node = args.node_gflops * 1e9 if args.node_gflops else max(rates) if rates else 60e9
    eff_1g = links["1gbit"]["B"] / (1e9 / 8) if "1gbit" in links else 0.9
    grow_rate = 1.0e9
    for run in runs:
        if run["experiment"] == "grow":
            g = run["result"]
            grow_rate = 4 * g["parameters_to"] / ((g["grow_ms_median"] + g["verify_ms_median"]) / 1000)
            break
    # The hidden fraction the model expects at 1 Gbit/s on an idle machine: compute = the best
    # 1 x 1 step of the same model and batch (a loaded machine stretches backward, hiding more).
    one = [run["result"] for run in runs if run["experiment"] in ("local", "weak") and run["result"].get("ranks") == 1
           and run["result"].get("threads") == 1 and "compute_ms" in run["result"]]
    for net in ("1gbit", "10gbit"):
        if net not in links or not one:
            continue
        r = min(one, key=lambda x: min(x["compute_ms"]))
        shape = Shape(r["layers"], r["width"], r["vocab"], r["seq"])
        compute = min(r["compute_ms"]) / 1000
        step, exposed, alone, _ = simulate(shape, compute, 25 * MIB, 2, links[net], r["batch"] * r["seq"],
                                           kappa.get("tcp", 0), distinct_random_rows)
        print(f"\nmodel, 2 ranks at {net}, compute {compute:.2f} s (best 1 x 1 step, batch {r['batch']}): step {step:.3f} s, "
              f"exposed {exposed:.3f} s, alone {alone:.3f} s, hidden fraction {100 * (1 - (step - compute) / alone):.0f}%")
    grow_runs = [run for run in runs if run["experiment"] == "grow"]
    if grow_runs:
        print("\n## Growth broadcast, 2 ranks (rank 0 grows, broadcasts the grown parameters, every rank hashes)")
        print("| config | runs | bytes | grow + verify (ms, median) | broadcast measured median / best (ms) | predicted (ms) | error (median / best) |")
        print("|---|---|---|---|---|---|---|")
        for config in sorted({run["config"] for run in grow_runs}):
            group = [run for run in grow_runs if run["config"] == config]
            g = group[0]["result"]
            nbytes = 4 * g["parameters_to"]
            net = network_of(group[0])
            link = links.get(net)
            measured_median = median([run["result"]["broadcast_ms_median"] for run in group]) / 1000
            measured_best = best([run["result"]["broadcast_ms_best"] for run in group]) / 1000
            predicted = broadcast_time(nbytes, 2, link) if link else float("nan")
            others = median([(run["result"]["grow_ms_median"] + run["result"]["verify_ms_median"]) for run in group])
            print(f"| {config} | {len(group)} | {nbytes / 1e6:.0f} MB | {others:.0f} | {1000 * measured_median:.0f} / "
                  f"{1000 * measured_best:.0f} | {1000 * predicted:.0f} | {100 * (predicted / measured_median - 1):+.0f}% / "
                  f"{100 * (predicted / measured_best - 1):+.0f}% |")
    alpha = {"10 Gbit/s": 25e-6, "25 Gbit/s": 15e-6, "100 Gbit/s": 5e-6}
    print(f"\nnode: {node / 1e9:.0f} GFLOP/s (this machine's 2 cores: --node-gflops, or from the best 1 x 1 step); link efficiency {eff_1g:.2f} of the "
          f"nominal rate (measured at 1 Gbit/s); alpha assumed " + ", ".join(f"{k} {v * 1e6:.0f} us" for k, v in alpha.items()))
    tables = {}
    for label, flops in [("this machine", node), (f"{args.fast_node:g}x faster node", node * args.fast_node)]:
        table = predict(links, kappa, flops, node, eff_1g, alpha, args.tokens_per_node, args.bucket_mb, args.vocab,
                        args.seq, grow_rate)
        tables[label] = table
        print(f"\n## Predicted weak-scaling efficiency, nodes of {label} ({flops / 1e9:.0f} GFLOP/s), "
              f"{args.tokens_per_node} tokens per node per update, V={args.vocab}, T={args.seq}, bucket {args.bucket_mb:g} MiB")
        print("| model | network | compute (s) | " + " | ".join(f"{p}" for p in NODES) + " |")
        print("|---|---|---|" + "---|" * len(NODES))
        for (model, net), series in table.items():
            compute = series[0][1] * series[0][2]
            print(f"| {model} | {net} | {compute:.2f} | " + " | ".join(f"{100 * e:.0f}%" for _, _, e, _, _ in series) + " |")
        print("\nOne growth event (grow on rank 0, broadcast the grown model, hash), seconds at 8 / 1024 nodes; "
              f"{GROWTHS} per plan of {PLAN_UPDATES} updates, amortized in the efficiencies above:")
        for (model, net), series in table.items():
            if model == "6/384" or (net != "10 Gbit/s" and model != "12/768"):
                continue
            events = [s[4] * PLAN_UPDATES / GROWTHS for s in series]
            print(f"- grown to {model}, {net}: {events[0]:.2f} / {events[-1]:.2f} s "
                  f"(amortized {1000 * series[-1][4]:.2f} ms per update)")
        model, net = "12/768", "10 Gbit/s"
        p, step, e, exposed, growth = table[(model, net)][-1]
        print(f"\n{model} at {p} nodes over {net}: step {step:.2f} s, exposed {exposed:.3f} s, growth amortized {growth * 1e3:.2f} ms/update")

    if args.plot:
        plot(args.plot, tables, rows, links)


def plot(path, tables, rows, links):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    styles = {"10 Gbit/s": ":", "25 Gbit/s": "--", "100 Gbit/s": "-"}
    colors = dict(zip([f"{l}/{w}" for l, w in PLAN], plt.cm.viridis(np.linspace(0, 0.9, len(PLAN)))))
    for ax, (label, table) in zip(axes[:2], tables.items()):
        for (model, net), series in table.items():
            ax.plot([s[0] for s in series], [100 * s[2] for s in series], styles[net], color=colors[model],
                    label=f"{model}, {net}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("nodes")
        ax.set_ylabel("predicted weak-scaling efficiency (%)")
        ax.set_title(f"nodes like {label}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=1)
    ax = axes[2]
    for net, link in sorted(links.items()):
        pts = [(n, s, pred) for p, n, s, pred in link["points"] if p == 2]
        pts.sort()
        line, = ax.plot([n / MIB for n, _, _ in pts], [1000 * s for _, s, _ in pts], "o", label=f"{net} measured")
        ax.plot([n / MIB for n, _, _ in pts], [1000 * pr for _, _, pr in pts], "-", color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("all-reduce size (MiB), 2 ranks")
    ax.set_ylabel("time (ms)")
    ax.set_title("ring model (lines) vs measured (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nplot: {path}")


if __name__ == "__main__":
    sys.exit(main())
