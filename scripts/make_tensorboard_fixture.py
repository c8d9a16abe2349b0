"""Writes Tests/Fixtures/tensorboard/ (a small TensorBoard event file) with TensorBoard's own
protocol buffers and record writer, then reads it back with TensorBoard's EventAccumulator and
checks what the reader makes of it: the scalars, the text note, and the restart (a SessionLog
START drops the points written before it at its step and later). TensorBoardTests (Swift, no
Python) writes the same events and requires the same bytes, CRCs included.

    scripts/setup.sh --python && .venv/bin/python scripts/make_tensorboard_fixture.py
"""
import os
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.text.summary_v2 import text_pb
from tensorboard.summary.writer.record_writer import RecordWriter

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "tensorboard")
NAME = "events.out.tfevents.1700000000.fixture.1.elle"
NOTE = "stage 1/3 (literature) done: literature 12.34 | AP 12.34 | AP+ 0.00 — é 文"


def scalars(wall, step, values):
    return event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in values]))


# Keep in step with TensorBoardTests.fixtureEvents.
events = [
    event_pb2.Event(wall_time=1700000000.0, step=0, file_version="brain.Event:2"),
    scalars(1700000001.5, 1, [("train/loss", 5.25), ("train/lr", 1e-3)]),
    scalars(1700000002.25, 2, [("train/loss", 4.5), ("train/lr", 2e-3)]),
    event_pb2.Event(wall_time=1700000002.5, step=2, summary=text_pb("notes", NOTE)),
    scalars(1700000003.0, 3, [("train/loss", 4.0), ("eval/perplexities/literature", 54.598150033144236),
                              ("train/replay_share", 0.0), ("growth/delta", -1.5)]),
    scalars(1700000004.0, 4, [("train/loss", 3.5)]),                     # stale: the run crashed after it
    event_pb2.Event(wall_time=1700000010.0, step=4, session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)),
    scalars(1700000011.0, 4, [("train/loss", 3.75)]),
    scalars(1700000012.0, 300, [("train/loss", 3.25)]),
]

os.makedirs(OUT, exist_ok=True)
path = os.path.join(OUT, NAME)
with open(path, "wb") as f:
    writer = RecordWriter(f)
    for e in events:
        writer.write(e.SerializeToString())

acc = event_accumulator.EventAccumulator(OUT, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0})
acc.Reload()
loss = [(s.step, s.value) for s in acc.Scalars("train/loss")]
expected = [(1, 5.25), (2, 4.5), (3, 4.0), (4, 3.75), (300, 3.25)]
assert loss == expected, loss
assert [(s.step, s.value) for s in acc.Scalars("growth/delta")] == [(3, -1.5)]
assert [(s.step, s.value) for s in acc.Scalars("train/replay_share")] == [(3, 0.0)]
ppl = acc.Scalars("eval/perplexities/literature")[0].value
assert abs(ppl - 54.598150033144236) < 1e-5, ppl
notes = acc.Tensors("notes")
assert len(notes) == 1 and notes[0].step == 2 and notes[0].tensor_proto.string_val[0].decode() == NOTE, notes
print(f"wrote {path} ({os.path.getsize(path)} bytes); EventAccumulator reads train/loss {loss} "
      f"(the stale step-4 point dropped at the restart), {len(acc.Tags()['scalars'])} scalar tags, 1 text note")
