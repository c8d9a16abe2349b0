#!/usr/bin/env python3
"""Writes the export-direction Hugging Face fixtures under Tests/Fixtures/ (read by
Tests/InteropTests/HFExportReferenceTests.swift, which needs no Python).

Run by hand after a release build, with the repository's venv (`scripts/setup.sh --python-heavy`: torch, transformers):
    swift build -c release
    .venv/bin/python scripts/make_export_fixture.py

For GPT and for BERT, elle trains a small model on data/sample (a BPE learned on it, with domain
prompts) and `elle export --format hf` writes Tests/Fixtures/hf-export-{gpt2,bert}/. transformers
then loads that folder with no elle code (GPT2LMHeadModel or BertForMaskedLM.from_pretrained,
AutoTokenizer.from_pretrained) and hf-export-{gpt2,bert}-reference.safetensors records what it
computed:
- `ids` (I64 [N]): AutoTokenizer's ids of a held-out text (the text is the file's metadata `text`);
- `tokens` (I64 [S, T]) and `logits` (F32 [S, T, V]): the model's logits at every position of S
  sequences of the context length T. GPT: text, a domain prompt before text, random ids. BERT:
  <|bos|>-first text, text with <|mask|> at 15% of the positions and padding at the end
  (attention_mask = token != <|pad|>, elle's padding mask), a domain prompt after <|bos|>, random
  ids.
The Swift test re-exports the folder's model and requires the same bytes, so these logits are what
transformers computes from elle's export as it is now; then it compares elle's own logits.
"""
import os, random, shutil, subprocess, sys, tempfile
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertForMaskedLM, GPT2LMHeadModel

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "Tests", "Fixtures")
ELLE = os.path.join(ROOT, ".build", "release", "elle")
SEQ = 32


def run(work, *args):
    out = subprocess.run([ELLE, *args], cwd=work, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"elle {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def held_out_text(length=1500):
    """The end of the legal sample texts (the models train on literature)."""
    folder = os.path.join(ROOT, "data", "sample", "legal")
    text = "".join(open(os.path.join(folder, f), encoding="utf-8").read() for f in sorted(os.listdir(folder))[-12:])
    return text[-length:]


def export(work, name, model_args):
    """Trains a small model in `work`, exports it to Tests/Fixtures/hf-export-NAME; the folder."""
    run(work, "train", *model_args, "--data", "data", "--domain", "literature", "--out", name, "--layers", "2",
        "--width", "32", "--heads", "2", "--seq", str(SEQ), "--batch", "8", "--steps", "40", "--lr", "3e-3",
        "--warmup", "5", "--eval-every", "0", "--log-every", "40", "--threads", "2")
    folder = os.path.join(OUT, f"hf-export-{name}")
    shutil.rmtree(folder, ignore_errors=True)
    print(run(work, "export", "--checkpoint", name, "--format", "hf", "--out", folder), end="")
    return folder


def save_reference(name, text, ids, sequences, logits):
    path = os.path.join(OUT, f"hf-export-{name}-reference.safetensors")
    save_file({"ids": torch.tensor(ids, dtype=torch.int64), "tokens": torch.tensor(sequences, dtype=torch.int64),
               "logits": logits.float().contiguous()}, path,
              metadata={"text": text, "made_by": "scripts/make_export_fixture.py", "transformers": __import__("transformers").__version__,
                        "torch": torch.__version__})
    print(f"wrote {path}: {len(ids)} ids, tokens {list(logits.shape[:2])}, vocab {logits.shape[2]}")


def gpt2(work):
    folder = export(work, "gpt2", [])
    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = held_out_text()
    ids = tokenizer(text)["input_ids"]
    assert len(ids) >= 3 * SEQ, len(ids)
    prompt = tokenizer.convert_tokens_to_ids("<|domain:legal|>")
    rng = random.Random(1)
    sequences = [ids[:SEQ], [prompt] + ids[SEQ:2 * SEQ - 1], [rng.randrange(model.config.vocab_size) for _ in range(SEQ)]]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(sequences)).logits
    save_reference("gpt2", text, ids, sequences, logits)


def bert(work):
    folder = export(work, "bert", ["--model", "bert"])
    model = BertForMaskedLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = held_out_text()
    ids = tokenizer(text)["input_ids"]
    assert len(ids) >= 3 * SEQ, len(ids)
    bos, mask, pad, prompt, end = (tokenizer.convert_tokens_to_ids(x)
                                   for x in ["<|bos|>", "<|mask|>", "<|pad|>", "<|domain:legal|>", "<|endoftext|>"])
    rng = random.Random(2)
    masked = [bos] + ids[SEQ:2 * SEQ - 1]
    for k in rng.sample(range(1, SEQ - 6), (SEQ * 15) // 100):
        masked[k] = mask
    masked[SEQ - 6:] = [pad] * 6
    sequences = [[bos] + ids[:SEQ - 1], masked, [bos, prompt] + ids[2 * SEQ:3 * SEQ - 2],
                 [bos] + [rng.randrange(end) for _ in range(SEQ - 1)]]
    tokens = torch.tensor(sequences)
    with torch.no_grad():
        logits = model(input_ids=tokens, attention_mask=(tokens != pad).long()).logits
    save_reference("bert", text, ids, sequences, logits)


if __name__ == "__main__":
    if not os.path.exists(ELLE):
        sys.exit(f"{ELLE} is missing: swift build -c release first")
    with tempfile.TemporaryDirectory() as work:
        run(work, "data", "prepare", "--raw", os.path.join(ROOT, "data", "sample"), "--out", "data", "--tokenizer", "train:600",
            "--threads", "2")
        gpt2(work)
        bert(work)
