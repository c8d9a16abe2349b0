#!/usr/bin/env python3
"""Checks elle's Hugging Face export and import against transformers itself (docs/INTEROP.md).

Run by hand after a release build (needs torch, transformers, safetensors; GPT-2's vocab.json +
merges.txt in corpora/gpt2, from scripts/fetch-gpt2.sh):
    swift build -c release
    .venv/bin/python scripts/check_hf_interop.py [--work runs/interop] [--steps 200]

Export: a small GPT is trained on data/sample prepared with a learned BPE (and a byte-level one on
raw text), exported with `elle export --format hf`, and loaded with GPT2LMHeadModel.from_pretrained
and AutoTokenizer.from_pretrained (no elle code). The tokenizers must give elle's ids on held-out
text; the logits of transformers and of `elle eval --logits` on the same tokens (the text, a
domain prompt before it, random ids over the whole vocabulary) must agree to 1e-4 relative
(max |elle - hf| / max |hf|, TESTING.md).

Import: a random GPT2LMHeadModel with GPT-2's tokenizer is saved with save_pretrained (float32,
and again in bfloat16), imported with `elle import`, and compared the same way on GPT-2's vocabulary
(elle adds rows for its own specials). The imported model is then sampled, grown and trained on
data prepared with the GPT-2 tokenizer (`elle import --tokenizer`).

BERT, the same both ways with BertForMaskedLM: a small BERT is trained (`elle train --model
bert`) on the same prepared data, exported and loaded with BertForMaskedLM.from_pretrained; its
logits at every position (`elle eval` gives a BERT's logits without targets) are compared on
<|bos|>-first sequences: text, text with <|mask|> at 15% of the positions and padding at the end
(attention_mask = token != <|pad|>, elle's padding mask), a domain prompt after <|bos|>, random ids.
A random BertForMaskedLM with two token types over the same tokenizer is saved with
save_pretrained, imported (type 0's embedding folds into the positions) and compared the same way
(token_type_ids 0), then trained 4 updates on the legal domain with `--init-from`.

Prints one line per comparison and exits non-zero when any exceeds the tolerance.
"""
import argparse, json, os, random, shutil, subprocess, sys
import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_interop_fixture import randomize_bert  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
TOLERANCE = 1e-4
results = []


def run(*args):
    print("$ " + " ".join(args), flush=True)
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def elle_logits(elle, checkpoint, sequences, work, name):
    """elle eval's logits ([N, T, V]) on equal-length token sequences."""
    tokens = os.path.join(work, name + ".tokens.txt")
    with open(tokens, "w") as f:
        f.write("".join(" ".join(map(str, s)) + "\n" for s in sequences))
    out = os.path.join(work, name + ".logits.safetensors")
    run(elle, "eval", "--checkpoint", checkpoint, "--tokens", tokens, "--logits", out, "--threads", "2")
    saved = load_file(out)
    assert (saved["tokens"] == np.array(sequences, dtype=np.int32)).all()
    return saved["logits"]


def hf_logits(model, sequences, pad=None):
    """Logits at every position; with `pad`, attention ignores keys holding it (elle's BERT mask)."""
    tokens = torch.tensor(sequences)
    mask = None if pad is None else (tokens != pad).long()
    with torch.no_grad():
        return model(input_ids=tokens, attention_mask=mask).logits.float().numpy()


def compare(what, elle, hf):
    elle = elle[..., :hf.shape[-1]]  # elle's extra special-token rows, if any
    rel = float(np.abs(elle - hf).max() / np.abs(hf).max())
    ok = rel <= TOLERANCE
    results.append((what, rel, ok))
    print(f"  {what}: max |elle - hf| / max |hf| = {rel:.2e} over {hf.size} logits {'ok' if ok else 'FAILED'}", flush=True)


def held_out_text(length=20000):
    """The end of the legal texts (the exported BPE model trains on literature only)."""
    folder = os.path.join(ROOT, "data/sample/legal")
    text = "".join(open(os.path.join(folder, f), encoding="utf-8").read() for f in sorted(os.listdir(folder))[-12:])
    return text[-length:]


def text_pieces(count=12):
    """Short pieces of every sample domain, for comparing tokenizers."""
    pieces = []
    for domain in ["legal", "biomedical", "literature"]:
        folder = os.path.join(ROOT, "data/sample", domain)
        text = open(os.path.join(folder, sorted(os.listdir(folder))[-1]), encoding="utf-8").read()
        for k in range(count // 3):
            start = (k + 1) * len(text) // (count // 3 + 1)
            pieces.append(text[start:start + 200])
    return pieces


def check_export(elle, work, steps, data_args, name, prompt_domain=None):
    run_dir = os.path.join(work, name + "-run")
    hf_dir = os.path.join(work, name + "-hf")
    shutil.rmtree(run_dir, ignore_errors=True)
    run(elle, "train", *data_args, "--out", run_dir, "--layers", "2", "--width", "64", "--heads", "4", "--seq", "64",
        "--batch", "8", "--steps", str(steps), "--lr", "3e-3", "--eval-every", "0", "--log-every", str(steps), "--threads", "2")
    print(run(elle, "export", "--checkpoint", run_dir, "--format", "hf", "--out", hf_dir), end="")
    model = GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    vocab = model.config.vocab_size

    # elle's own encoding of the same texts (elle eval --text cuts each to the context).
    same, compared = 0, 0
    for k, piece in enumerate(text_pieces()):
        text_file = os.path.join(work, f"{name}.text-{k}.txt")
        with open(text_file, "w", encoding="utf-8") as f:
            f.write(piece)
        out = os.path.join(work, f"{name}.text-{k}.safetensors")
        run(elle, "eval", "--checkpoint", run_dir, "--text", text_file, "--logits", out)
        elle_ids = load_file(out)["tokens"][0].tolist()
        compared += len(elle_ids)
        same += elle_ids == tokenizer(piece)["input_ids"][:len(elle_ids)]
    ok = same == len(text_pieces())
    results.append((f"{name}: AutoTokenizer ids == elle's on {same}/{len(text_pieces())} texts ({compared} tokens)", 0.0, ok))
    print(f"  {results[-1][0]}")
    ids = tokenizer(held_out_text())["input_ids"]

    t = 64
    sequences = [ids[k:k + t] for k in range(0, 4 * t, t)]
    if prompt_domain:
        prompt = tokenizer.convert_tokens_to_ids(f"<|domain:{prompt_domain}|>")
        assert prompt is not None and prompt >= 0, prompt
        sequences.append([prompt] + ids[:t - 1])
    rng = random.Random(1)
    sequences.append([rng.randrange(vocab) for _ in range(t)])
    compare(f"{name}: export, {len(sequences)} x {t} tokens, vocab {vocab}",
            elle_logits(elle, run_dir, sequences, work, name), hf_logits(model, sequences))


def check_import(elle, work, dtype):
    name = f"import-{dtype}"
    hf_dir = os.path.join(work, name + "-hf")
    shutil.rmtree(hf_dir, ignore_errors=True)
    torch.manual_seed(7)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128, vocab_size=50257, activation_function="gelu_new")
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # a larger scale than GPT-2's initialization so the logits are not flat
        for pname, p in model.named_parameters():
            if pname.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif pname.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    model.to(getattr(torch, dtype)).save_pretrained(hf_dir)
    tokenizer = gpt2_tokenizer()
    tokenizer.save_pretrained(hf_dir)
    reference = GPT2LMHeadModel.from_pretrained(hf_dir, dtype=torch.float32).eval()  # bf16 values, float32 math

    checkpoint = os.path.join(work, name + ".ckpt")
    print(run(elle, "import", "--from", hf_dir, "--out", checkpoint), end="")
    text = held_out_text()
    ids = tokenizer(text)["input_ids"]
    t = 128
    rng = random.Random(2)
    sequences = [ids[:t], ids[t:2 * t], [rng.randrange(50257) for _ in range(t)]]
    compare(f"{name}: import, {len(sequences)} x {t} tokens, vocab 50257",
            elle_logits(elle, checkpoint, sequences, work, name), hf_logits(reference, sequences))
    return checkpoint, hf_dir


def bert_sequences(tokenizer, ids, t, vocab, prompt_domain, seed):
    """<|bos|>-first sequences of t tokens: text; text with 15% masks and 8 pads at the end; a
    domain prompt after <|bos|>; random ids (ordinary tokens)."""
    bos, mask, pad = (tokenizer.convert_tokens_to_ids(x) for x in ["<|bos|>", "<|mask|>", "<|pad|>"])
    rng = random.Random(seed)
    sequences = [[bos] + ids[k:k + t - 1] for k in range(0, 2 * (t - 1), t - 1)]
    masked = [bos] + ids[2 * t:3 * t - 1]
    for k in rng.sample(range(1, t - 8), (t * 15) // 100):
        masked[k] = mask
    masked[t - 8:] = [pad] * 8
    sequences.append(masked)
    prompt = tokenizer.convert_tokens_to_ids(f"<|domain:{prompt_domain}|>")
    sequences.append([bos, prompt] + ids[:t - 2])
    sequences.append([bos] + [rng.randrange(tokenizer.convert_tokens_to_ids("<|endoftext|>")) for _ in range(t - 1)])
    return sequences, pad


def check_bert(elle, work, steps, prepared):
    """Export of a trained BERT, import of a random BertForMaskedLM, training the import."""
    run_dir = os.path.join(work, "bert-run")
    hf_dir = os.path.join(work, "bert-hf")
    shutil.rmtree(run_dir, ignore_errors=True)
    run(elle, "train", "--model", "bert", "--data", prepared, "--domain", "literature", "--out", run_dir, "--layers", "2",
        "--width", "64", "--heads", "4", "--seq", "64", "--batch", "8", "--steps", str(steps), "--lr", "3e-3",
        "--eval-every", "0", "--log-every", str(steps), "--threads", "2")
    print(run(elle, "export", "--checkpoint", run_dir, "--format", "hf", "--out", hf_dir), end="")
    model = BertForMaskedLM.from_pretrained(hf_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    vocab = model.config.vocab_size

    # elle eval --text puts <|bos|> first, then the text as elle encodes it.
    same = 0
    bos = tokenizer.convert_tokens_to_ids("<|bos|>")
    for k, piece in enumerate(text_pieces()):
        text_file = os.path.join(work, f"bert.text-{k}.txt")
        with open(text_file, "w", encoding="utf-8") as f:
            f.write(piece)
        out = os.path.join(work, f"bert.text-{k}.safetensors")
        run(elle, "eval", "--checkpoint", run_dir, "--text", text_file, "--logits", out)
        elle_ids = load_file(out)["tokens"][0].tolist()
        same += elle_ids == ([bos] + tokenizer(piece)["input_ids"])[:len(elle_ids)]
    ok = same == len(text_pieces())
    results.append((f"bert: AutoTokenizer ids == elle's (after <|bos|>) on {same}/{len(text_pieces())} texts", 0.0, ok))
    print(f"  {results[-1][0]}")
    # The exported tokenizer names <|mask|>, so transformers' fill-mask pipeline runs as is.
    from transformers import pipeline
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer, device="cpu")
    best = fill("<|bos|>The court shall <|mask|> the appeal.", top_k=3)
    print("  fill-mask: " + ", ".join(f"{b['token_str']!r} {b['score']:.3f}" for b in best))

    t = 64
    ids = tokenizer(held_out_text())["input_ids"]
    sequences, pad = bert_sequences(tokenizer, ids, t, vocab, "literature", seed=3)
    compare(f"bert: export, {len(sequences)} x {t} tokens, vocab {vocab}",
            elle_logits(elle, run_dir, sequences, work, "bert"), hf_logits(model, sequences, pad))

    # Import: a random BertForMaskedLM (two token types, BERT's epsilon) over the same tokenizer.
    import_dir = os.path.join(work, "bert-import-hf")
    shutil.rmtree(import_dir, ignore_errors=True)
    torch.manual_seed(8)
    config = BertConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192,
                        max_position_embeddings=128, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12,
                        pad_token_id=pad)
    random_bert = BertForMaskedLM(config).eval()
    randomize_bert(random_bert, scale=0.1)
    random_bert.save_pretrained(import_dir)
    tokenizer.save_pretrained(import_dir)
    checkpoint = os.path.join(work, "bert-import.ckpt")
    print(run(elle, "import", "--from", import_dir, "--out", checkpoint), end="")
    t = 128
    sequences, _ = bert_sequences(tokenizer, ids, t, vocab, "legal", seed=4)
    compare(f"bert: import, {len(sequences)} x {t} tokens, vocab {vocab}",
            elle_logits(elle, checkpoint, sequences, work, "bert-import"), hf_logits(random_bert, sequences, pad))
    trained = run(elle, "train", "--init-from", checkpoint, "--data", prepared, "--domain", "legal", "--out",
                  os.path.join(work, "bert-import-trained"), "--seq", "64", "--batch", "4", "--steps", "4", "--log-every", "1",
                  "--eval-every", "0", "--threads", "2")
    print("\n".join(l for l in trained.split("\n") if l.startswith(("model", "step"))))


def gpt2_tokenizer():
    from transformers import GPT2Tokenizer
    vocab = json.load(open(os.path.join(ROOT, "corpora/gpt2/vocab.json"), encoding="utf-8"))
    lines = open(os.path.join(ROOT, "corpora/gpt2/merges.txt"), encoding="utf-8").read().split("\n")
    merges = [tuple(l.split(" ")) for l in lines if l and not l.startswith("#version")]
    return GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=128)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/interop")
    parser.add_argument("--steps", type=int, default=200, help="training updates of the exported models")
    parser.add_argument("--elle", default=".build/release/elle")
    parser.add_argument("--bert-only", action="store_true", help="skip the GPT checks (the prepared data is still made)")
    args = parser.parse_args()
    work = os.path.join(ROOT, args.work)
    os.makedirs(work, exist_ok=True)
    elle = os.path.join(ROOT, args.elle)
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, transformers {__import__('transformers').__version__}")

    prepared = os.path.join(work, "prepared-bpe")
    run(elle, "data", "prepare", "--raw", "data/sample", "--out", prepared, "--tokenizer", "train:4096", "--threads", "2")
    check_bert(elle, work, args.steps, prepared)
    if args.bert_only:
        return summary()
    check_export(elle, work, args.steps, ["--data", prepared, "--domain", "literature"], "bpe", prompt_domain="literature")
    check_export(elle, work, args.steps, ["--data", "data/sample/literature"], "bytes")

    for dtype in ["float32", "bfloat16"]:
        checkpoint, hf_dir = check_import(elle, work, dtype)
    # The imported GPT-2-vocabulary model in use: sample, grow, train on GPT-2-tokenized data.
    print(run(elle, "sample", "--checkpoint", checkpoint, "--prompt", "The license", "--tokens", "12", "--threads", "2"), end="")
    prepared_gpt2 = os.path.join(work, "prepared-gpt2")
    run(elle, "data", "prepare", "--raw", "data/sample", "--out", prepared_gpt2, "--tokenizer", "gpt2", "--threads", "2")
    for_data = os.path.join(work, "import-for-data.ckpt")
    print(run(elle, "import", "--from", hf_dir, "--out", for_data, "--tokenizer", os.path.join(prepared_gpt2, "tokenizer.json")), end="")
    grown = os.path.join(work, "import-grown.ckpt")
    run(elle, "grow", "--from", for_data, "--layers", "3", "--width", "96", "--out", grown)
    trained = run(elle, "train", "--init-from", grown, "--data", prepared_gpt2, "--domain", "legal", "--out",
                  os.path.join(work, "import-trained"), "--seq", "64", "--batch", "4", "--steps", "4", "--log-every", "1",
                  "--eval-every", "0", "--threads", "2")
    print("\n".join(l for l in trained.split("\n") if l.startswith(("model", "step"))))

    summary()


def summary():
    print("\nsummary")
    for what, rel, ok in results:
        print(f"  {'ok    ' if ok else 'FAILED'} {what}" + ("" if "ids ==" in what else f": {rel:.2e}"))
    sys.exit(0 if all(ok for _, _, ok in results) else 1)


if __name__ == "__main__":
    main()
