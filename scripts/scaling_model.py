#!/usr/bin/env python3
"""Cost model of elle's data-parallel step, calibrated on scripts/scaling.sh's measurements
(docs/SCALING.md). Run by hand (needs numpy and matplotlib, e.g. .venv/bin/python):

    scripts/scaling_model.py RESULTS.jsonl [...] [--plot docs/scaling.png] [--node-gflops G]
        [--predictions docs/scaling/model-predictions-24.md]

Prints markdown: measured step times, hidden fractions, weak scaling, the fitted links, the
model against every measured configuration, the growth broadcast, the predictions (fp32 exchange,
8 to 1024 nodes) and issue 24's key predictions; --predictions writes issue 24's full tables
(every exchange, 2 to 1024 nodes) and the memory per rank, with docs/scaling/zero-memory.jsonl's
measurements beside them.

Model, per update on p ranks (one per node), all times in seconds, B and alpha per network:
  MPI's all-reduce (MPI_Iallreduce; the shim forces libnbc's ring): t(n, p) = 2 (p-1)/p n / B +
    2 (p-1) alpha. B and alpha are fitted on the all-reduce-by-size runs (2, 3 and 4 ranks).
  step = compute + kappa * (bytes a rank sends while backward runs) + exposed
  compute: forward 0.95/3, backward 0.95 * 2/3, the optimizer 0.05 of the step (ZeRO-1: 1/p of
    the optimizer); inside backward each part in proportion to its FLOPs (head 2VD, block
    24D^2 + 4TD per token).
  The bucket plan (GradientSynchronizer): reports the tied embedding after the head's weight
    product (half the head), the final norm after the head, blocks L-1..0 tensor by tensor (each
    product's weight and bias after its weight product, each norm after itself), the position
    embedding last; a report extends the open bucket when it lies just below
    it; a bucket is started at bucket_mb (split in equal pieces) or when a report is not
    adjacent; what is left starts after backward. Every rank starts the same collectives.
  Always: the token-row presence merge (MPI all-reduce of V floats, at backward's start) and,
    after backward, the touched rows (U(p * tokens) rows of D floats) as a float32 tree sum.
  The gradient exchange, as elle sends it (w = 4 bytes per float, 2 with the bf16 exchange):
    plain, 2 ranks (Communicator.startTreeSum): one MPI ring all-reduce per bucket (bf16: of the
      bf16 values with the shim's bf16 sum); one link, each starting when its range is final and
      the previous one is done.
    plain, 3+ ranks (MPICommunicator.startTreeSum, BF16Exchange.startTreeSumBF16, fp32 and bf16
      alike): an MPI all-to-all of each rank's shares when the bucket is ready, (p-1)/p w n / B +
      (p-1) alpha (libnbc's linear all-to-all: p-1 messages), queued on the link; each owner adds
      its p shares in the pairwise tree over rank order and sends its share of the sums point to
      point to every rank (ShareExchange) as soon as its all-to-all is done (the next report during
      backward), the same cost again on the same link queue; the sums and copies (16 or 20 bytes
      of memory traffic per float at MEMORY_RATE) run on the computing thread and delay it.
      "Tree" is the order of the additions, not the messages: nothing travels level by level.
      (Before stop 32 the second half was an MPI all-gather started inside wait(), after
      backward, one bucket after another: all of it exposed.)
    ZeRO-1 (Communicator.startTreeReduce, ZeroSharding.swift): shards of whole blocks of 16384
      floats; every bucket cut at shard boundaries and into messages of at most 2 MiB of floats,
      owners interleaved; each message is sent point to point by the p-1 others to its owner,
      whose incoming link carries (p-1) w m / B + alpha (incast: one queue per owner, owners in
      parallel; the senders' outgoing link (p-1)/p w m / B on average). An owner stages what it
      receives and, past 4 buckets per sending rank (bucket_mb 0: past nothing), waits for its
      oldest reduction before starting the next piece: backward stalls (the stall delays every
      rank: an approximation). After backward: the token rows, the owners' sums (3+ ranks), the
      clipping norm's all-reduce of per-block partial sums, then the parameter all-gather, every
      owner sending its shard to every rank, (p-1) 4 shard / B + (p-1) alpha in all, consumed by
      the next forward pass (`LanguageModel.arrivals`): the owners' messages go out interleaved,
      so a fraction f of every shard has arrived after f of that time; the forward pass reads the
      embeddings, block 0..L-1, then the final norm and head, waiting at each part for what other
      ranks own of it; the slowest rank's waits are exposed (`forward_wait`).
  kappa: CPU time each byte a rank sends during backward costs the computing cores (TCP copies,
    polling), fitted on the measured overlapped steps (not ZeRO-1's, whose wait leaves out the
    all-gather). A rank sends 2 (p-1)/p n per ring all-reduce of n bytes, (p-1)/p n per
    all-to-all, (p-1)/p of every ZeRO-1 message on average.
  alone (`elle bench comm`'s replay, everything started at once): the rings' sum; on 3+ ranks
    all-to-alls then the all-gathers one by one; ZeRO-1: an owner's link carries (w + 4) bytes
    per float of its shard from each other rank.
  growth: rank 0 grows, broadcasts (pipelined tree: c * n / B + ceil(log2 p) * (alpha + 128 KiB / B))
    and every rank hashes; amortized over the reference plan's updates.
  memory per rank (memory()): parameters 4N, gradient 4N, moments 8N (ZeRO-1: 8 x shard), bf16
    weight copy 2N with the bf16 step, and the exchange's staging at the end of backward.
Checked on 2 ranks only (the measured steps); everything on 3+ ranks is the code's behaviour
priced with the fitted link, not a measurement.
"""
import argparse
import json
import math
import os
import sys
from collections import defaultdict, namedtuple

import numpy as np

MIB = 1 << 20
# ZeRO-1's largest point-to-point message (ShardLayout.messageElements).
MESSAGE_FLOATS = 1 << 19
# Memory traffic rate of the local work of staged collectives (sums, bf16 conversions, copies)
# on this machine, bytes/s: assumed, not measured (it matters on 3+ ranks only).
MEMORY_RATE = 8e9
# Latency of a real 1 Gbit/s network (TCP through a switch), assumed for the predictions.
ALPHA_1G = 50e-6


# MARK: reading measurements

def load(paths):
    """Every run of the JSON-lines files, each tagged with its file (`source`: the file's name, or
    its directory's for results.jsonl); a line that does not parse (a run still being written) is
    skipped with a warning."""
    runs = []
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        source = os.path.basename(os.path.dirname(os.path.abspath(path))) if stem == "results" else stem
        with open(path) as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    run = json.loads(line)
                except json.JSONDecodeError:
                    print(f"warning: {path}:{number}: incomplete line skipped", file=sys.stderr)
                    continue
                run["source"] = source
                runs.append(run)
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


# MARK: the exchange

Exchange = namedtuple("Exchange", "zero wire")
FP32 = Exchange(0, "fp32")
EXCHANGES = [FP32, Exchange(0, "bf16"), Exchange(1, "fp32"), Exchange(1, "bf16")]


def exchange_of(r):
    """A run's exchange; runs from before issue 24 have neither field (fp32, no ZeRO)."""
    return Exchange(r.get("zero", 0), r.get("allreduce_dtype", "fp32"))


def exchange_name(x):
    return ("ZeRO-1" if x.zero else "all-reduce") + (" bf16" if x.wire == "bf16" else " fp32")


def shard_floats(params, p):
    """ZeRO-1's shard (ShardLayout.shardSize): whole blocks of 16384 floats, the last shard shorter."""
    blocks = -(-params // 16384)
    return max(1, -(-blocks // p)) * 16384


def block_reports(shape, lower, start, span):
    """Block reports (range, when final) in backward's order: each tensor as soon as it is final
    (GPT.backward). A block's backward is `span` of backward from `start`; its parts in FLOPs per
    token (the units of backward_parts): each product's weight product then its input product
    (fc.proj 4D^2 + 4D^2, fc 4D^2 + 4D^2, attention projection D^2 + D^2, then attention 4DT,
    qkv 3D^2 + 3D^2). Layout: ln1, qkv, proj, ln2, fc, fc.proj (weights and biases)."""
    d, t = shape.D, shape.T
    total = 24 * d * d + 4 * d * t
    ln1, qkv, proj, ln2, fc, fcproj = [2 * d, 3 * d * d + 3 * d, d * d + d, 2 * d, 4 * d * d + 4 * d, 4 * d * d + d]
    offsets = [lower]
    for size in [ln1, qkv, proj, ln2, fc]:
        offsets.append(offsets[-1] + size)
    o_ln1, o_qkv, o_proj, o_ln2, o_fc, o_fcproj = offsets
    end = lower + shape.block
    at = lambda flops: start + span * flops / total
    return [(o_fcproj, end, at(4 * d * d)), (o_fc, o_fcproj, at(12 * d * d)), (o_ln2, o_fc, at(16 * d * d)),
            (o_proj, o_ln2, at(17 * d * d)), (o_qkv, o_proj, at(21 * d * d + 4 * d * t)), (o_ln1, o_qkv, start + span)]


def buckets(shape, bucket_bytes):
    """(ready fraction of backward, first float, floats) of every gradient collective of one
    update, in start order, as GradientSynchronizer starts them (bucket_bytes 0: the whole buffer
    after backward). The buffer: wte, wpe, blocks 0..L-1, final norm; a report extends the open
    bucket when it lies just below it."""
    cap = bucket_bytes // 4
    if cap == 0:
        return [(1.0, 0, shape.params)]
    head, blocks = shape.backward_parts()
    wpe = shape.V * shape.D
    first_block = wpe + shape.context * shape.D
    # Reports (range, when final as a fraction of backward).
    reports = [(0, wpe, head / 2), (shape.params - 2 * shape.D, shape.params, head)]
    t = head
    for layer in reversed(range(shape.L)):
        reports += block_reports(shape, first_block + layer * shape.block, t, blocks[layer])
        t += blocks[layer]
    reports.append((wpe, first_block, 1.0))
    out = []

    def start(lower, upper, ready):
        count = upper - lower
        pieces = max(1, math.ceil(count / cap))
        for k in range(pieces):
            out.append((ready, lower + count * k // pieces, count * (k + 1) // pieces - count * k // pieces))

    open_range = None
    for lower, upper, ready in reports:
        if open_range and open_range[0] == upper:
            open_range = (lower, open_range[1])
        else:
            if open_range:
                start(*open_range, ready)
            open_range = (lower, upper)
        if open_range[1] - open_range[0] >= cap:
            start(*open_range, ready)
            open_range = None
    if open_range:
        start(*open_range, 1.0)
    return out


def forward_wait(shape, forward, shard, p, gather):
    """ZeRO-1: how long the slowest rank's forward pass waits for the parameter all-gather that
    started when the update ended (`gather` seconds in all). Owners send interleaved, so f of each
    shard has arrived after f * gather; the pass reads the embeddings (no time), blocks 0..L-1,
    then the final norm and the head (times as backward_parts' shares of `forward`), waiting
    at each for the parts other ranks own."""
    head, blocks = shape.backward_parts()
    first_block = shape.V * shape.D + shape.context * shape.D
    parts = [(0, first_block, 0.0)]
    parts += [(first_block + l * shape.block, first_block + (l + 1) * shape.block, blocks[l] * forward) for l in range(shape.L)]
    parts.append((shape.params - 2 * shape.D, shape.params, head * forward))
    worst = 0.0
    for rank in range(p):
        t = 0.0
        for lower, upper, seconds in parts:
            ready = 0.0
            for owner in range(p):
                o_lower, o_upper = owner * shard, min((owner + 1) * shard, shape.params)
                if owner == rank or o_upper <= lower or o_lower >= upper:
                    continue
                ready = max(ready, gather * (min(upper, o_upper) - o_lower) / (o_upper - o_lower))
            t = max(t, ready) + seconds
        worst = max(worst, t - forward)
    return worst


def message_cuts(pieces):
    """ShardLayout.interleavedMessages: each (owner, lower, count) piece cut into messages of at
    most 2 MiB of floats, taken round-robin over the pieces."""
    cut = [[(owner, lower + k, min(MESSAGE_FLOATS, count - k)) for k in range(0, count, MESSAGE_FLOATS)]
           for owner, lower, count in pieces]
    out = []
    for k in range(max((len(c) for c in cut), default=0)):
        out += [c[k] for c in cut if k < len(c)]
    return out


def shard_pieces(lower, count, shard):
    """ShardLayout.pieces: [lower, lower + count) cut at shard boundaries, with owners."""
    out = []
    upper = lower + count
    while lower < upper:
        owner = lower // shard
        end = min(upper, (owner + 1) * shard)
        out.append((owner, lower, end - lower))
        lower = end
    return out


Step = namedtuple("Step", "step exposed alone sent gather work")


def simulate(shape, compute, bucket_bytes, p, link, tokens_per_rank, kappa, rows_of=distinct_rows, exchange=FP32,
             memory_rate=MEMORY_RATE):
    """One update on p ranks: Step(step, exposed, alone, bytes a rank sent while backward ran,
    gather). exposed = step - compute - kappa * sent (what the ranks waited for, ZeRO-1's
    all-gather included: `gather`); alone = the same collectives started at once without the
    computation (`elle bench comm`'s replay). The collectives, as elle starts them (module doc)."""
    if p <= 1:
        return Step(compute, 0.0, 0.0, 0.0, 0.0, compute)
    b, alpha = link["B"], link["alpha"]
    w = 2 if exchange.wire == "bf16" else 4
    optimizer = compute * 0.05
    if exchange.zero:
        compute -= optimizer * (1 - 1 / p)  # each rank updates its shard only
    forward = compute * 0.95 / 3
    backward = compute * 0.95 * 2 / 3
    end = forward + backward
    ring = lambda n: ring_time(n, p, b, alpha)
    a2a = lambda n: (p - 1) / p * n / b + (p - 1) * alpha  # MPI_Ialltoall / MPI_Iallgather (linear), n bytes in all
    presence = ring(4 * shape.V)
    row_bytes = 4 * rows_of(p * tokens_per_rank, shape.V) * shape.D
    sent = 2 * (p - 1) / p * 4 * shape.V  # the presence merge starts with backward
    plan = [(forward + ready * backward, lower, count) for ready, lower, count in buckets(shape, bucket_bytes)]
    # Local work of a staged collective after backward (sums, bf16 conversions, copies), bytes
    # of memory traffic per gradient float summed: only on 3+ ranks (2 ranks: inside MPI).
    local_per_float = 20 if w == 2 else 16
    if not exchange.zero:
        free, alone, tail, local = forward + presence, presence, 0.0, 0.0
        for when, lower, count in plan:
            nbytes = w * count
            if p == 2:  # one MPI ring all-reduce per bucket (bf16: with the shim's bf16 sum)
                duration = ring(nbytes)
                alone += duration
                if when < end:
                    sent += nbytes
            else:  # startTreeSum: all-to-all now; the owners' sums go point to point as soon as it is done
                # (ShareExchange, at the next report); the owner's sum is local work on the
                # computing thread (during backward: it delays backward; after: exposed).
                duration = 2 * a2a(nbytes)
                work = local_per_float * count / memory_rate
                local += work
                alone += duration + work
                if when < end:
                    sent += 2 * (p - 1) / p * nbytes
            free = max(when, free) + duration
        if p == 2:
            rows = ring(row_bytes)
        else:  # the token rows: a float32 startTreeSum, its all-gather last of all
            rows = 2 * a2a(row_bytes) + 16 * row_bytes / 4 / memory_rate
        last = max(end + local, free) + tail + rows
        alone += rows
        gather = 0.0
    else:
        shard = shard_floats(shape.params, p)
        # Each owner's incoming link (the p-1 others send it every piece of its shard: incast),
        # the senders' outgoing link (a rank sends (p-1)/p of every message on average), the
        # owner's staged reductions (finish time, floats) and the computation's delay by stalls.
        inbound = [forward + presence] * p
        outbound = forward + presence
        load = [0.0] * p
        staged = [[] for _ in range(p)]
        staged_floats = [0] * p
        limit = 4 * max(bucket_bytes // 4, 1) * (p - 1)
        stall, post = 0.0, forward
        for when, lower, count in plan:
            during = when < end
            for owner, first, m in message_cuts(shard_pieces(lower, count, shard)):
                post = max(post, when + stall)
                queue = staged[owner]
                while queue and queue[0][0] <= post:
                    staged_floats[owner] -= queue.pop(0)[1]
                owned = m * (p - 1)
                while staged_floats[owner] + owned > limit and queue:
                    done, floats = queue.pop(0)
                    staged_floats[owner] -= floats
                    if done > post:
                        if during:
                            stall += done - post
                        post = done
                duration = (p - 1) * w * m / b + alpha
                inbound[owner] = max(post, inbound[owner]) + duration
                outbound = max(post, outbound) + (p - 1) / p * w * m / b
                load[owner] += duration
                queue.append((inbound[owner], owned))
                staged_floats[owner] += owned
                if during:
                    sent += (p - 1) / p * w * m
        end += stall
        # The token rows (a float32 tree sum over every link) once backward has ended, the
        # owners' sums (p pieces per shard float: 3+ ranks), the clipping norm's all-reduce of
        # per-block partial sums (doubles), then the all-gather: every owner sends its shard to
        # every rank point to point, all at once, consumed by the next forward pass.
        rows = ring(row_bytes) if p == 2 else 2 * a2a(row_bytes) + 16 * row_bytes / 4 / memory_rate
        sums = (local_per_float - 8) * shard * p / memory_rate if p > 2 else 0.0
        norm = ring(8 * math.ceil(shape.params / 16384))
        reduced = max(max(inbound), outbound, end, post)
        gather = forward_wait(shape, forward, shard, p, (p - 1) * 4 * min(shard, shape.params) / b + (p - 1) * alpha)
        last = reduced + rows + sums + norm + gather
        # The replay: the reduces and the all-gather's broadcasts started together; an owner's
        # incoming link carries its shard from every other rank twice (w + 4 bytes per float).
        alone = presence + (p - 1) * (w + 4) * min(shard, shape.params) / b + (p - 1) * alpha * 2 + rows
    # ZeRO-1: a stall of backward (an owner waiting for its staging) is exposed too.
    exposed = max(0.0, last - (forward + backward))
    return Step(compute + kappa * sent + exposed, exposed, alone, sent, gather, compute)


# MARK: calibration and checks against the measured steps

def step_runs(runs):
    return [r for r in runs if "overlapped_ms_median" in r["result"]]


def fit_kappa(runs, links):
    """CPU cost per byte a rank sends while backward runs: measured (overlapped - compute - wait)
    over the bytes the model says a rank sent during backward (on the wire: bf16 halves them); one
    value per transport (tcp, shm). From each run's best steps (other jobs only add time; medians
    of two noisy modes differ by more than this cost on a loaded machine). Not from ZeRO-1 runs:
    their wait leaves out the all-gather, so the difference holds more than this cost."""
    samples = defaultdict(list)
    for run in step_runs(runs):
        r = run["result"]
        net = network_of(run)
        link = links.get(net)
        exchange = exchange_of(r)
        if link is None or exchange.zero:
            continue
        shape = Shape(r["layers"], r["width"], r["vocab"], r["seq"])
        compute = min(r["compute_ms"]) / 1000
        sent = simulate(shape, compute, int(r["bucket_mb"] * MIB), r["ranks"], link, r["batch"] * r["seq"], 0,
                        distinct_random_rows, exchange).sent
        slowdown = (min(r["overlapped_ms"]) - min(r["compute_ms"]) - r["overlapped_wait_ms_median"]) / 1000
        if sent > 0:
            samples["shm" if net == "shm" else "tcp"].append(slowdown / sent)
    return {k: max(0.0, median(v)) for k, v in samples.items()}


def check(runs, links, kappa):
    """Per measured configuration of each results file (all rounds together): the model's
    overlapped step, serial step and collectives-alone time against the measurement, from the
    medians of all repeats and from the best-of-all. The configuration's own measured compute step
    (interleaved with the others in the same run; a bf16 step's for a bf16 step) is the model's
    input; what is checked is the communication part."""
    groups = defaultdict(list)
    for run in step_runs(runs):
        groups[(run["source"], run["experiment"], run["config"])].append(run)
    rows = []
    for (source, experiment, config), group in sorted(groups.items()):
        r = group[0]["result"]
        net = network_of(group[0])
        if net not in links:
            continue
        shape = Shape(r["layers"], r["width"], r["vocab"], r["seq"])
        exchange = exchange_of(r)
        k = kappa.get("shm" if net == "shm" else "tcp", 0)
        measured = {mode: [v / 1000 for run in group for v in run["result"][f"{mode}_ms"]]
                    for mode in ("compute", "overlapped", "serial", "alone")}
        row = {"config": f"{source}: {experiment}/{config}", "repeats": len(measured["compute"]),
               "wait": median([run["result"]["overlapped_wait_ms_median"] / 1000 for run in group])}
        for statistic, f in (("median", median), ("best", best)):
            compute = f(measured["compute"])
            args = (shape, compute)
            tail = (r["ranks"], links[net], r["batch"] * r["seq"], k, distinct_random_rows, exchange)
            overlapped = simulate(*args, int(r["bucket_mb"] * MIB), *tail)
            serial = simulate(*args, 0, *tail)
            row[statistic] = {"compute": compute, "exposed": overlapped.exposed, "gather": overlapped.gather,
                              "overlapped": (f(measured["overlapped"]), overlapped.step),
                              "serial": (f(measured["serial"]), serial.step),
                              "alone": (f(measured["alone"]), overlapped.alone)}
        rows.append(row)
    return rows


# MARK: the measurements themselves

def best(values):
    return float(min(values))


def summarize(runs):
    """Step-time figures per configuration: medians over every repeat of every round, ranges,
    and best-of-all (on a shared machine other jobs only ever add time, so the minimum of many
    interleaved repeats is the closest to the machine's own speed). Per results file: the same
    configuration in two files may be two builds."""
    by_config = defaultdict(lambda: defaultdict(list))
    for run in runs:
        r = run["result"]
        key = (run["source"], run["experiment"], run["config"])
        for mode in ("compute", "overlapped", "serial", "alone"):
            if f"{mode}_ms" in r:
                by_config[key][mode] += [v / 1000 for v in r[f"{mode}_ms"]]
        if "hidden_fraction" in r:
            by_config[key]["hidden"] += r["hidden_fraction"]
        for mode in ("overlapped", "serial"):
            if f"{mode}_wait_ms_median" in r:
                by_config[key][f"{mode}_wait"].append(r[f"{mode}_wait_ms_median"] / 1000)
    print("## Measured step times (s): median [range] best, over all repeats of all rounds")
    print("| file | experiment | config | repeats | compute | overlapped | serial | alone | waited after backward (overlapped / serial) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (source, experiment, config), modes in sorted(by_config.items()):
        def cell(mode):
            v = modes.get(mode)
            return f"{median(v):.3f} [{min(v):.3f}-{max(v):.3f}] {best(v):.3f}" if v else "-"
        waits = " / ".join(f"{median(modes[m]):.3f}" for m in ("overlapped_wait", "serial_wait") if modes.get(m)) or "-"
        print(f"| {source} | {experiment} | {config} | {len(modes['compute'])} | {cell('compute')} | {cell('overlapped')} | "
              f"{cell('serial')} | {cell('alone')} | {waits} |")

    print("\n## Hidden fraction: 1 - (overlapped - compute) / alone (the issue's definition), and from the wait")
    print("(1 - time the overlapped step waited for its collectives after backward / alone: blind to the CPU")
    print("that communication takes from computation, but insensitive to how long the computation took)")
    print("| config | per repeat (paired, median [range]) | from medians | from best-of | from the wait (median of runs) | "
          "control: serial mode, per repeat (should be ~0%) | (serial - overlapped) / alone, per repeat |")
    print("|---|---|---|---|---|---|---|")
    for (source, experiment, config), m in sorted(by_config.items()):
        if not m.get("alone"):
            continue
        hidden = m["hidden"]
        from_medians = 1 - (median(m["overlapped"]) - median(m["compute"])) / median(m["alone"])
        from_best = 1 - (best(m["overlapped"]) - best(m["compute"])) / best(m["alone"])
        from_wait = 1 - median(m["overlapped_wait"]) / median(m["alone"])
        # Control: the same formula for the serial mode, whose communication is all exposed (~0%).
        control = [1 - (sv - c) / a for sv, c, a in zip(m["serial"], m["compute"], m["alone"])]
        # Saved against the serial step (the same collectives, all after backward), per repeat.
        saved = [(sv - o) / a for sv, o, a in zip(m["serial"], m["overlapped"], m["alone"])]
        print(f"| {source}: {experiment}/{config} | {100 * median(hidden):.0f}% [{100 * min(hidden):.0f}-{100 * max(hidden):.0f}%] | "
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

    local = {config: m for (_, experiment, config), m in by_config.items() if experiment == "local"}
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
    """{(model, network): [(nodes, step, efficiency, exposed, growth, gather)]} for nodes of
    `node_flops` FLOP/s: the fp32 step with the fp32 exchange, growth amortized."""
    table = {}
    for layers, width in PLAN:
        shape = Shape(layers, width, vocab, seq)
        compute = shape.flops_per_token() * tokens_per_node / node_flops
        for name, rate in NETWORKS.items():
            link = {"B": rate / 8 * efficiency_1g, "alpha": alpha_by_net[name]}
            series = []
            for p in NODES:
                s = simulate(shape, compute, int(bucket_mb * MIB), p, link, tokens_per_node,
                             kappa.get("tcp", 0) * base_flops / node_flops, memory_rate=MEMORY_RATE * node_flops / base_flops)
                growth = growth_time(shape, p, link, grow_rate) * GROWTHS / PLAN_UPDATES
                total = s.step + growth
                series.append((p, total, compute / total, s.exposed, growth, s.gather))
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


# Issue 24's predictions: every exchange, both step precisions, 2 to 1024 nodes.
NODES_24 = [2 ** k for k in range(1, 11)]
SIZES_24 = [(6, 384), (12, 768)]
# The bf16 step's compute against the fp32 step's when no run says (main measures it).
BF16_STEP = 0.57
MODES = [("fp32 step, fp32 exchange", "fp32", Exchange(0, "fp32")),
         ("fp32 step, bf16 exchange", "fp32", Exchange(0, "bf16")),
         ("bf16 step, bf16 exchange", "bf16", Exchange(0, "bf16")),
         ("fp32 step, fp32 exchange, ZeRO-1", "fp32", Exchange(1, "fp32")),
         ("fp32 step, bf16 exchange, ZeRO-1", "fp32", Exchange(1, "bf16")),
         ("bf16 step, bf16 exchange, ZeRO-1", "bf16", Exchange(1, "bf16"))]


def predict_modes(links_24, kappa, node_flops, base_flops, tokens_per_node, bucket_mb, vocab, seq, bf16_step):
    """{(model, network, mode): [(nodes, compute, step, exposed, hidden, efficiency)]}: per update
    on nodes of `node_flops` (fp32; a bf16 step takes bf16_step of its time). Efficiency = the
    same step on one node (no communication) / the step on p nodes (over 100% with ZeRO-1 when
    communication costs less than the optimizer work it saves); hidden = 1 - (step - the step's
    own computation) / alone (negative: backward's stalls on ZeRO-1's staging cost more than the
    collectives alone take). CPU costs (kappa, local work) scale with the node's speed."""
    table = {}
    scale = base_flops / node_flops
    for layers, width in SIZES_24:
        shape = Shape(layers, width, vocab, seq)
        fp32 = shape.flops_per_token() * tokens_per_node / node_flops
        for name, link in links_24.items():
            for mode, step, exchange in MODES:
                compute = fp32 * (bf16_step if step == "bf16" else 1.0)
                series = []
                for p in NODES_24:
                    s = simulate(shape, compute, int(bucket_mb * MIB), p, link, tokens_per_node, kappa.get("tcp", 0) * scale,
                                 exchange=exchange, memory_rate=MEMORY_RATE / scale)
                    exposed = s.step - s.work  # against its own computation (ZeRO-1: the shard's update)
                    series.append((p, compute, s.step, exposed, 1 - exposed / s.alone if s.alone else 1.0, compute / s.step))
                table[(f"{layers}/{width}", name, mode)] = series
    return table


def print_predictions(out, label, flops, table, assumptions):
    """The full tables (one per model and network) to `out`."""
    print(f"\n## Nodes of {label} ({flops / 1e9:.0f} GFLOP/s)\n", file=out)
    print(assumptions, file=out)
    for (model, net, mode), series in table.items():
        if mode != MODES[0][0]:
            continue
        print(f"\n### {model}, {net}: step s / exposed s / hidden / efficiency\n", file=out)
        print("| mode | compute (s) | " + " | ".join(str(p) for p in NODES_24) + " |", file=out)
        print("|---|---|" + "---|" * len(NODES_24), file=out)
        for m, _, _ in MODES:
            rows = table[(model, net, m)]
            cells = [f"{s:.3g} / {e:.3g} / {100 * h:.0f}% / {100 * f:.0f}%" for _, _, s, e, h, f in rows]
            print(f"| {m} | {rows[0][1]:.3f} | " + " | ".join(cells) + " |", file=out)


def print_key_rows(label, table, nodes=(8, 64, 1024)):
    print(f"\n## Key predictions, nodes of {label}: step s (hidden, efficiency) at {', '.join(map(str, nodes))} nodes")
    print("| model | network | mode | compute (s) | " + " | ".join(f"{p} nodes" for p in nodes) + " |")
    print("|---|---|---|---|" + "---|" * len(nodes))
    for (model, net, mode), series in table.items():
        by = {s[0]: s for s in series}
        cells = [f"{by[p][2]:.3g} ({100 * by[p][4]:.0f}%, {100 * by[p][5]:.0f}%)" for p in nodes]
        print(f"| {model} | {net} | {mode} | {series[0][1]:.3f} | " + " | ".join(cells) + " |")


# MARK: memory per rank

MEMORY_SIZES = [(6, 384), (12, 768), (24, 1024), (48, 1600)]
MEMORY_RANKS = [2 ** k for k in range(0, 11)]


def memory(shape, p, zero, step, wire, bucket_bytes):
    """Bytes per rank: (state, staging). State: parameters 4N, gradient 4N, Adam's moments 8N
    (ZeRO-1: rank 0's shard, the largest, 8 x shard), the bf16 step's weight copy 2N. Staging:
    what the exchange holds at the end of backward (GradientSync.swift, MPICommunicator.swift,
    BF16Exchange.swift; every buffer below lives until `finish` waits its collective):
      plain, 2 ranks: fp32 nothing (in place); bf16 the bf16 copy of every bucket, 2N.
      plain, 3+ ranks: every bucket's all-to-all out and in buffers, w x share each, 2 x 4N
        (fp32), and for bf16 also the gathered bf16 sums, 3 x 2N: an upper bound, since a
        bucket whose shares are all sent and received during backward frees them then.
      ZeRO-1: the owner's received pieces, (p-1) x count floats per piece, bounded by 4 buckets
        per sending rank plus the message being started (and by the shard); bf16: as bf16
        (p/(p-1) slots per piece), plus every piece this rank sends rounded to bf16, 2N (p-1)/p.
    Not counted: activations, the token rows (a few MB), the clipping partials."""
    n = shape.params
    shard = min(n, shard_floats(n, p)) if zero and p > 1 else n
    state = 8 * n + 8 * shard + (2 * n if step == "bf16" else 0)
    w = 2 if wire == "bf16" else 4
    if p == 1:
        staging = 0
    elif not zero:
        staging = (2 * n if wire == "bf16" else 0) if p == 2 else (2 if wire == "fp32" else 3) * w * n
    else:
        bucket = max(bucket_bytes // 4, 1)
        owned = min(4 * bucket * (p - 1) + MESSAGE_FLOATS * (p - 1), (p - 1) * shard)
        staging = 4 * owned if wire == "fp32" else 2 * owned * p / (p - 1) + 2 * n * (p - 1) / p
    return state, staging


def print_memory(out, vocab, seq, bucket_mb, measured, tables=True):
    bucket = int(bucket_mb * MIB)
    if tables:
        print_memory_tables(out, vocab, seq, bucket, bucket_mb)
    if measured:
        print_measured_memory(out, bucket, measured)


def print_memory_tables(out, vocab, seq, bucket, bucket_mb):
    print(f"\n## Memory per rank (MB = 1e6 bytes; V {vocab}, context {seq}, bucket {bucket_mb:g} MiB)\n", file=out)
    print("State: parameters 4N + gradient 4N + Adam's moments 8N (ZeRO-1: 8 x rank 0's shard) + 2N bf16 weight "
          "copy with the bf16 step. Staging: what the gradient exchange holds at the end of backward "
          "(`memory()` in the script). Activations not counted.", file=out)
    for layers, width in MEMORY_SIZES:
        shape = Shape(layers, width, vocab, seq)
        print(f"\n### {layers}/{width}: {shape.params / 1e6:.1f}M parameters\n", file=out)
        print("| ranks | plain: state fp32 step (bf16 step) | plain: staging fp32 / bf16 exchange | plain: peak, fp32 step + fp32 exchange | "
              "ZeRO-1: state fp32 step (bf16 step) | ZeRO-1: staging fp32 / bf16 exchange | ZeRO-1: peak, fp32 step + fp32 exchange | "
              "ZeRO-1 saves (peak, fp32) |", file=out)
        print("|---|---|---|---|---|---|---|---|", file=out)
        for p in MEMORY_RANKS:
            cells = []
            peaks = []
            for zero in (0, 1):
                s32, g32 = memory(shape, p, zero, "fp32", "fp32", bucket)
                s16, _ = memory(shape, p, zero, "bf16", "bf16", bucket)
                _, g16 = memory(shape, p, zero, "fp32", "bf16", bucket)
                cells += [f"{s32 / 1e6:,.0f} ({s16 / 1e6:,.0f})", f"{g32 / 1e6:,.0f} / {g16 / 1e6:,.0f}", f"{(s32 + g32) / 1e6:,.0f}"]
                peaks.append(s32 + g32)
            print(f"| {p} | " + " | ".join(cells) + f" | {(peaks[0] - peaks[1]) / 1e6:,.0f} |", file=out)


def print_measured_memory(out, bucket, measured):
    if measured:
        print("\n### Measured (`elle bench memory`, docs/scaling/zero-memory.jsonl) against the model\n", file=out)
        print("| model | ranks | measured peak RSS plain / ZeRO-1 (largest rank, MB) | measured saving (worst rank) | predicted: moments only, "
              "8 (1 - 1/N) N (measured / it) | predicted: moments + staging | measured / predicted (moments + staging) |", file=out)
        print("|---|---|---|---|---|---|---|", file=out)
        for (layers, width, v, ranks), pair in sorted(measured.items()):
            if set(pair) != {0, 1}:
                continue
            shape = Shape(layers, width, v, pair[0]["seq"])
            plain, zero = max(pair[0]["peak_rss_bytes"]), max(pair[1]["peak_rss_bytes"])
            saving = min(a - b for a, b in zip(pair[0]["peak_rss_bytes"], pair[1]["peak_rss_bytes"]))
            s0, g0 = memory(shape, ranks, 0, pair[0]["precision"], "fp32", bucket)
            s1, g1 = memory(shape, ranks, 1, pair[1]["precision"], "fp32", bucket)
            moments = s0 - s1
            both = (s0 + g0) - (s1 + g1)
            print(f"| {layers}/{width} (V {v}) | {ranks} | {plain / 1e6:,.0f} / {zero / 1e6:,.0f} | {saving / 1e6:,.0f} MB | "
                  f"{moments / 1e6:,.0f} MB ({100 * saving / moments:.0f}%) | {both / 1e6:,.0f} MB | {100 * saving / both:.0f}% |", file=out)


def bf16_step_ratio(runs):
    """The bf16 step's compute time over the fp32 step's, from runs that measured both (median
    compute of each precision, same model and batch); BF16_STEP without such runs."""
    times = defaultdict(list)
    for run in step_runs(runs):
        r = run["result"]
        times[(r["layers"], r["width"], r["batch"], r.get("precision", "fp32"))] += r["compute_ms"]
    ratios = [median(v) / median(times[k[:3] + ("fp32",)]) for k, v in times.items()
              if k[3] == "bf16" and times.get(k[:3] + ("fp32",))]
    return median(ratios) if ratios else BF16_STEP


def print_issue24(args, runs, links, kappa, node, eff_1g, alpha):
    """Issue 24: predictions for every exchange and step precision from 2 to 1024 nodes (key rows
    here, full tables and the memory per rank in --predictions)."""
    ratio = bf16_step_ratio(runs)
    one = links.get("1gbit", {"B": 0.9 * 1e9 / 8, "alpha": 3e-6})
    links_24 = {"1 Gbit/s": {"B": one["B"], "alpha": max(one["alpha"], ALPHA_1G)},
                "10 Gbit/s": {"B": 10e9 / 8 * eff_1g, "alpha": alpha["10 Gbit/s"]},
                "100 Gbit/s": {"B": 100e9 / 8 * eff_1g, "alpha": alpha["100 Gbit/s"]}}
    assumptions = (
        f"Assumptions: one rank per node; {args.tokens_per_node} tokens per node per update (8 x {args.seq}), V {args.vocab}, "
        f"T {args.seq}, buckets of {args.bucket_mb:g} MiB (elle's default); compute from this machine's rate "
        f"({node / 1e9:.0f} GFLOP/s for its 2 cores) or a node {args.fast_node:g}x faster, the bf16 step taking {ratio:.2f} of "
        f"the fp32 step's time (measured here); links: 1 Gbit/s as fitted on the namespaces (B {one['B'] / 1e9:.3f} GB/s), "
        f"latency {ALPHA_1G * 1e6:.0f} us assumed (the veth pair's fitted {one['alpha'] * 1e6:.0f} us is no switch's); "
        f"10 and 100 Gbit/s at the same {100 * eff_1g:.0f}% of nominal with {alpha['10 Gbit/s'] * 1e6:.0f} and "
        f"{alpha['100 Gbit/s'] * 1e6:.0f} us; CPU per byte sent (kappa {kappa.get('tcp', 0) * 1e9:.2f} s/GB) and the staged "
        f"collectives' local work ({MEMORY_RATE / 1e9:.0f} GB/s of memory traffic, assumed) scaled by the node's speed; "
        "growth not included (under 0.1 ms per update). Efficiency = the same step on one node / the step on N nodes; "
        "hidden = 1 - exposed / the collectives alone, exposed = step - the step's own computation (ZeRO-1 updates only its shard: 5% of compute is the optimizer); negative hidden: backward stalls on ZeRO-1's staging. Extrapolated: everything "
        "beyond 2 ranks (3 and 4 ranks were measured only for MPI's all-reduce by size; the all-to-all, all-gather, "
        "incast onto ZeRO-1's owners and the point-to-point all-gather on 3+ ranks are modeled from the code, not measured), "
        "every link but 1 Gbit/s, and every node but this one.")
    print(f"\n## Issue 24: every exchange and step precision, {NODES_24[0]} to {NODES_24[-1]} nodes")
    print(assumptions)
    tables = {}
    for label, flops in [("this machine", node), (f"{args.fast_node:g}x faster node", node * args.fast_node)]:
        tables[label] = (flops, predict_modes(links_24, kappa, flops, node, args.tokens_per_node, args.bucket_mb,
                                              args.vocab, args.seq, ratio))
        print_key_rows(label, tables[label][1])
    measured = {}
    if args.memory and os.path.exists(args.memory):
        for run in load([args.memory]):
            r = run["result"]
            measured.setdefault((r["layers"], r["width"], r["vocab"], r["ranks"]), {})[r["zero"]] = r
    out = open(args.predictions, "w") if args.predictions else sys.stdout
    if args.predictions:
        print("# Cost model predictions: ZeRO-1 and the bf16 exchange, 2 to 1024 nodes (issue 24)\n", file=out)
        print("Made by `.venv/bin/python scripts/scaling_model.py " + " ".join(args.results) +
              f" --node-gflops {node / 1e9:.0f} --predictions {args.predictions}` (docs/SCALING.md, "
              "\"Predictions to 1024 nodes: ZeRO-1 and the bf16 exchange\"). Each cell: step time (s) / exposed "
              "communication (s) / hidden fraction / weak-scaling efficiency.", file=out)
    for label, (flops, table) in tables.items():
        print_predictions(out, label, flops, table, assumptions)
    print_memory(out, 50257, args.seq, args.bucket_mb, {})
    print_memory(out, 16384, 128, args.bucket_mb, measured, tables=False)
    if args.predictions:
        out.close()
        print(f"\nfull tables and the memory per rank: {args.predictions}")


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
    parser.add_argument("--predictions", help="write issue 24's full prediction and memory tables here (markdown)")
    parser.add_argument("--memory", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "scaling",
                                                         "zero-memory.jsonl"),
                        help="`elle bench memory` runs to set beside the memory model (docs/scaling/zero-memory.jsonl)")
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
    print(f"\nkappa (CPU seconds per GB a rank sends during backward, on the wire; ZeRO-1 runs not used): " +
          ", ".join(f"{k} {v * 1e9:.3f}" for k, v in kappa.items()))

    rows = check(runs, links, kappa)
    print("\n## Model vs measurement, per configuration (input: its measured compute step)")
    print("(ZeRO-1: the measured wait covers the reduces and token rows; the predicted exposed time also holds backward's "
          "stalls on the owner's staging; the next forward pass's wait for the parameter all-gather is given beside)")
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
            waited = f"{row['wait']:.3f}" if statistic == "median" else "-"
            exposed = f"{waited} / {x['exposed'] - x['gather']:.3f}" + (f" (+ the next forward's wait for the all-gather {x['gather']:.3f})" if x["gather"] else "")
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
        step, exposed, alone, _, _, _ = simulate(shape, compute, 25 * MIB, 2, links[net], r["batch"] * r["seq"],
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
            print(f"| {model} | {net} | {compute:.2f} | " + " | ".join(f"{100 * s[2]:.0f}%" for s in series) + " |")
        print("\nOne growth event (grow on rank 0, broadcast the grown model, hash), seconds at 8 / 1024 nodes; "
              f"{GROWTHS} per plan of {PLAN_UPDATES} updates, amortized in the efficiencies above:")
        for (model, net), series in table.items():
            if model == "6/384" or (net != "10 Gbit/s" and model != "12/768"):
                continue
            events = [s[4] * PLAN_UPDATES / GROWTHS for s in series]
            print(f"- grown to {model}, {net}: {events[0]:.2f} / {events[-1]:.2f} s "
                  f"(amortized {1000 * series[-1][4]:.2f} ms per update)")
        model, net = "12/768", "10 Gbit/s"
        p, step, e, exposed, growth, _ = table[(model, net)][-1]
        print(f"\n{model} at {p} nodes over {net}: step {step:.2f} s, exposed {exposed:.3f} s, growth amortized {growth * 1e3:.2f} ms/update")
    print_issue24(args, runs, links, kappa, node, eff_1g, alpha)

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
