#!/usr/bin/env python3
"""Writes the Hugging Face interop fixtures under Tests/Fixtures/ (read by Tests/InteropTests).

Run by hand (needs torch, transformers and safetensors; GPT-2's vocab.json + merges.txt in
corpora/gpt2, which scripts/fetch-gpt2.sh fetches):
    .venv/bin/python scripts/make_interop_fixture.py [dtypes] [gpt2] [bert]

1. safetensors-dtypes.safetensors, written by safetensors.torch.save_file: F32, F16 (subnormal,
   signed zero, infinities, the largest half), BF16 and I64 tensors plus __metadata__;
   safetensors-dtypes.json gives each float tensor's shape and expected float32 values as bit
   patterns (what torch's .float() gives), so infinities and -0 compare exactly.
2. hf-gpt2-tiny/: a small random GPT2LMHeadModel (2 layers, width 16, 4 heads, 24 positions)
   saved with save_pretrained, and its tokenizer saved with save_pretrained (tokenizer.json) and
   as GPT-2's vocab.json + merges.txt: GPT-2's first 256 byte tokens and first 100 merges,
   <|endoftext|> = 356. Weights are drawn at a larger scale
   than a real initialization so every tensor visibly shapes the logits.
   hf-gpt2-tiny-reference.safetensors holds a text's token ids from the Hugging Face tokenizer
   (I64 [N]), the first 24 of them as a batch (I64 [1, T]) and the model's float32 logits on
   them (F32 [1, T, V]); the text is in
   hf-gpt2-tiny-reference.txt.
3. hf-bert-tiny/: a small random BertForMaskedLM (2 layers, width 16, 4 heads, FFN 40, 24
   positions, two token types with a nonzero embedding, LayerNorm epsilon 1e-12 as BERT's)
   saved with save_pretrained, with a byte-level BPE tokenizer.json in elle's id layout: the
   same 356 ordinary tokens, then <|endoftext|>, <|pad|>, <|mask|>, <|bos|> (356-359).
   hf-bert-tiny-reference.safetensors holds three sequences (I64 [3, 24]): <|bos|> and the
   tokenized text, the same with <|mask|> at some positions and padding at the end, random ids;
   and transformers' float32 logits at every position (F32 [3, 24, 360]) with token_type_ids 0
   and attention_mask = (token != <|pad|>), elle's padding mask.

With arguments, only the named parts are written (dtypes, gpt2, bert).
"""
import json, os, shutil, struct
import torch
from safetensors.torch import save_file
import sys
from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "Tests", "Fixtures")
GPT2 = os.path.join(ROOT, "corpora", "gpt2")
MERGES = 100


def bits(t):
    return [struct.unpack("<I", struct.pack("<f", v))[0] for v in t.float().reshape(-1).tolist()]


def dtypes_fixture():
    f32 = torch.tensor([[1.0, -2.5, 3.25], [0.0, 1e-30, -7e20]], dtype=torch.float32)
    f16 = torch.tensor([1.0, -0.0, 2.0 ** -24, 2.0 ** -14, 65504.0, float("inf"), float("-inf"), 1 / 3, -1.5e-5],
                       dtype=torch.float16)
    bf16 = torch.tensor([[1.0, -2.5], [1e30, 3.14159]], dtype=torch.bfloat16)
    i64 = torch.tensor([1, -2, 3], dtype=torch.int64)
    tensors = {"f32": f32, "f16": f16, "bf16": bf16, "i64": i64}
    path = os.path.join(OUT, "safetensors-dtypes.safetensors")
    save_file(tensors, path, metadata={"format": "pt", "made_by": "scripts/make_interop_fixture.py"})
    expected = {name: {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "bits": bits(t)}
                for name, t in tensors.items() if t.is_floating_point()}
    with open(os.path.join(OUT, "safetensors-dtypes.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"wrote {path}")


def small_gpt2_vocab():
    """GPT-2's first 256 + MERGES tokens and MERGES merges, <|endoftext|> = 256 + MERGES."""
    vocab_all = json.load(open(os.path.join(GPT2, "vocab.json"), encoding="utf-8"))
    lines = open(os.path.join(GPT2, "merges.txt"), encoding="utf-8").read().split("\n")
    merges = [tuple(l.split(" ")) for l in lines if l and not l.startswith("#version")][:MERGES]
    n = 256 + MERGES
    vocab = {t: i for t, i in vocab_all.items() if i < n}
    assert len(vocab) == n
    vocab["<|endoftext|>"] = n
    return vocab, merges, n


def tiny_gpt2_fixture():
    vocab, merges, n = small_gpt2_vocab()
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges)

    torch.manual_seed(3)
    cfg = GPT2Config(n_layer=2, n_embd=16, n_head=4, vocab_size=n + 1, n_positions=24,
                     bos_token_id=n, eos_token_id=n, activation_function="gelu_new")
    model = GPT2LMHeadModel(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    folder = os.path.join(OUT, "hf-gpt2-tiny")
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # transformers 5 writes only tokenizer.json; older versions (and openai-community/gpt2) also
    # ship GPT-2's own files, which elle reads when tokenizer.json is absent.
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))

    text = "The quick brown fox, isn't it? Thé 42 cats\n\tran  away."
    ids = tokenizer(text)["input_ids"]
    tokens = torch.tensor([ids[:cfg.n_positions]])
    with torch.no_grad():
        logits = model(input_ids=tokens).logits.float().contiguous()
    save_file({"ids": torch.tensor(ids, dtype=torch.int64), "tokens": tokens.to(torch.int64), "logits": logits},
              os.path.join(OUT, "hf-gpt2-tiny-reference.safetensors"))
    with open(os.path.join(OUT, "hf-gpt2-tiny-reference.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {folder}: {sorted(os.listdir(folder))}; {len(ids)} tokens ({tokens.shape[1]} run), vocab {n + 1}")


def randomize_bert(model, scale=0.2):
    """Weights of a visible size (transformers initializes LayerNorm to 1/0 and biases to 0):
    LayerNorm gains 1 + scale N(0, 1), biases scale/2 N(0, 1), the rest scale N(0, 1)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.copy_(1 + scale * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(scale / 2 * torch.randn_like(p))
            else:
                p.copy_(scale * torch.randn_like(p))


def tiny_bert_fixture():
    vocab, merges, n = small_gpt2_vocab()
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges)
    tokenizer.add_tokens(["<|pad|>", "<|mask|>", "<|bos|>"], special_tokens=True)
    tokenizer.pad_token, tokenizer.mask_token, tokenizer.bos_token = "<|pad|>", "<|mask|>", "<|bos|>"
    pad, mask, bos = (tokenizer.convert_tokens_to_ids(t) for t in ["<|pad|>", "<|mask|>", "<|bos|>"])
    assert (pad, mask, bos) == (n + 1, n + 2, n + 3), (pad, mask, bos)
    vocab_size = n + 4

    torch.manual_seed(4)
    t = 24
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=40, max_position_embeddings=t, type_vocab_size=2, hidden_act="gelu",
                     layer_norm_eps=1e-12, pad_token_id=pad, tie_word_embeddings=True)
    model = BertForMaskedLM(cfg).float().eval()
    randomize_bert(model)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    folder = os.path.join(OUT, "hf-bert-tiny")
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for extra in ["vocab.json", "merges.txt"]:  # transformers 5 writes tokenizer.json only; keep it that way
        if os.path.exists(os.path.join(folder, extra)):
            os.remove(os.path.join(folder, extra))

    text = open(os.path.join(OUT, "hf-gpt2-tiny-reference.txt"), encoding="utf-8").read()
    ids = [bos] + tokenizer(text)["input_ids"]
    first = ids[:t]
    masked = list(first)
    for k in [2, 5, 9, 13]:
        masked[k] = mask
    masked[t - 4:] = [pad] * 4
    g = torch.Generator().manual_seed(5)
    random_ids = [bos] + torch.randint(0, vocab_size, (t - 1,), generator=g).tolist()
    tokens = torch.tensor([first, masked, random_ids])
    with torch.no_grad():
        logits = model(input_ids=tokens, attention_mask=(tokens != pad).long()).logits.float().contiguous()
    save_file({"tokens": tokens.to(torch.int64), "logits": logits}, os.path.join(OUT, "hf-bert-tiny-reference.safetensors"))
    print(f"wrote {folder}: {sorted(os.listdir(folder))}; tokens {list(tokens.shape)}, vocab {vocab_size}")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    parts = sys.argv[1:] or ["dtypes", "gpt2", "bert"]
    if "dtypes" in parts:
        dtypes_fixture()
    if "gpt2" in parts:
        tiny_gpt2_fixture()
    if "bert" in parts:
        tiny_bert_fixture()
