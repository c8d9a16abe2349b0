"""Reads a run's TensorBoard event files with TensorBoard's own reader (EventAccumulator) and
compares every scalar tag and value with the run's metrics.jsonl, under the tag rule of
Sources/Training/Run/TensorBoardSink.swift: a record's group is its "event" ("train" when it
has none); each number is the scalar GROUP/KEY and each list of numbers GROUP/KEY/LABEL, LABEL
the record's "domains" entry (or the index); step, stage, update, phase, domain(s) only place
the point. A {"event": "restart", "step": S} record (a resume after a crash) drops the earlier
points past S, as TensorBoard's restart marker does. Values are compared as float32 (what an
event file holds), exactly.

    .venv/bin/python scripts/check_tensorboard.py RUN_DIR [EVENTS_DIR]    # EVENTS_DIR: default RUN_DIR

Exits 1 naming the first differences, 0 when every tag and point agrees.
"""
import json
import os
import sys

import numpy as np
from tensorboard.backend.event_processing import event_accumulator

PLACEMENT = {"step", "stage", "update", "event", "phase", "domain", "domains"}


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def scalars(record):
    group = record.get("event", "train")
    labels = record.get("domains")
    for key in sorted(record):
        if key in PLACEMENT:
            continue
        value = record[key]
        if is_number(value):
            yield f"{group}/{key}", value
        elif isinstance(value, list) and all(is_number(x) for x in value):
            for i, x in enumerate(value):
                label = labels[i] if isinstance(labels, list) and len(labels) == len(value) else str(i)
                yield f"{group}/{key}/{label}", x


def expected(metrics_path):
    points = {}
    with open(metrics_path) as f:
        for line in f:
            record = json.loads(line)
            step = record.get("step")
            if not isinstance(step, int):
                continue
            if record.get("event") == "restart":
                points = {tag: [p for p in ps if p[0] <= step] for tag, ps in points.items()}
                continue
            for tag, value in scalars(record):
                points.setdefault(tag, []).append((step, float(np.float32(value))))
    return {tag: ps for tag, ps in points.items() if ps}


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    run = sys.argv[1]
    events = sys.argv[2] if len(sys.argv) == 3 else run
    want = expected(os.path.join(run, "metrics.jsonl"))
    acc = event_accumulator.EventAccumulator(events, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    have = {tag: [(e.step, float(e.value)) for e in acc.Scalars(tag)] for tag in tags["scalars"]}
    notes = acc.Tensors("notes") if "notes" in tags["tensors"] else []
    files = sorted(f for f in os.listdir(events) if "tfevents" in f)

    problems = []
    for tag in sorted(set(want) - set(have)):
        problems.append(f"{tag}: in metrics.jsonl ({len(want[tag])} points), not in the event files")
    for tag in sorted(set(have) - set(want)):
        problems.append(f"{tag}: in the event files ({len(have[tag])} points), not in metrics.jsonl")
    for tag in sorted(set(want) & set(have)):
        if want[tag] != have[tag]:
            k = next((i for i, (a, b) in enumerate(zip(want[tag], have[tag])) if a != b), min(len(want[tag]), len(have[tag])))
            got = have[tag][k] if k < len(have[tag]) else "nothing"
            wanted = want[tag][k] if k < len(want[tag]) else "nothing"
            problems.append(f"{tag}: point {k}: metrics.jsonl {wanted}, event files {got} "
                            f"({len(want[tag])} vs {len(have[tag])} points)")
    points = sum(len(p) for p in want.values())
    print(f"{events}: {len(files)} event file(s), {len(have)} scalar tags, {sum(len(p) for p in have.values())} points, "
          f"{len(notes)} text notes; metrics.jsonl: {len(want)} tags, {points} points")
    for note in notes[:3]:
        print(f"  note at step {note.step}: {note.tensor_proto.string_val[0].decode()[:100]}")
    if problems:
        print(f"DIFFERENT in {len(problems)} tag(s):")
        for p in problems[:20]:
            print("  " + p)
        sys.exit(1)
    print(f"every scalar tag and value equals metrics.jsonl ({len(want)} tags, {points} points, float32 exact)")


if __name__ == "__main__":
    main()
