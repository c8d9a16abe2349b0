#!/usr/bin/env python3
"""Builds the three fine-tuning tasks of docs/FINETUNE.md offline, from what
scripts/fetch-corpora.sh fetched (its unpacked Debian/PyPI packages and rendered text):

  biomedical-go     Gene Ontology namespace of a term from its definition
                    (GO.db's GO.sqlite, go_term.definition -> go_term.ontology: BP, MF, CC)
  legal-license     license category of a license text (ScanCode licensedcode-data,
                    the `category:` field of each .LICENSE file's front matter)
  technical-man     man-page section of a page from its rendered text
                    (sections 2, 3, 4, 5, 7 of the Debian manpages/manpages-dev pages)

Each task is a folder with train.jsonl, dev.jsonl, test.jsonl: one {"text", "label"} object a
line. Splits are stratified by label and deterministic (seed 0). The input text never contains
its label: for licenses, texts holding the category name are dropped; for man pages the header
and footer lines (they name the section) and every section reference such as "open(2)" are
removed.

usage: make_finetune_tasks.py [--corpora /work/main/corpora] [--out runs/tasks]
"""
import argparse, glob, json, os, random, re, sqlite3, sys

def stratified(examples, fractions, seed=0, cap=None):
    """Splits (text, label) pairs per label into len(fractions) parts; at most `cap` per label."""
    rng = random.Random(seed)
    by_label = {}
    for text, label in examples:
        by_label.setdefault(label, []).append(text)
    parts = [[] for _ in fractions]
    for label in sorted(by_label):
        texts = sorted(by_label[label])
        rng.shuffle(texts)
        if cap: texts = texts[:cap]
        start = 0
        for k, f in enumerate(fractions):
            end = len(texts) if k == len(fractions) - 1 else start + round(f * len(texts))
            parts[k] += [(t, label) for t in texts[start:end]]
            start = end
    for p in parts: rng.shuffle(p)
    return parts

def write(folder, name, parts):
    path = os.path.join(folder, name)
    os.makedirs(path, exist_ok=True)
    summary = []
    for split, rows in zip(("train", "dev", "test"), parts):
        with open(os.path.join(path, f"{split}.jsonl"), "w", encoding="utf-8") as f:
            for text, label in rows:
                assert label.lower() not in text.lower(), (name, label)
                f.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
        counts = {}
        for _, l in rows: counts[l] = counts.get(l, 0) + 1
        summary.append(f"{split} {len(rows)} {dict(sorted(counts.items()))}")
    print(f"{name}: " + "; ".join(summary))

def squeeze(text, limit):
    text = re.sub(r"\s+", " ", text).strip()
    return text[:limit]

def biomedical(unpacked, limit):
    db = glob.glob(os.path.join(unpacked, "r-bioc-go.db/usr/lib/R/site-library/GO.db/extdata/GO.sqlite"))
    if not db: sys.exit(f"no GO.sqlite under {unpacked}/r-bioc-go.db: run scripts/fetch-corpora.sh")
    names = {"BP": "biological process", "MF": "molecular function", "CC": "cellular component"}
    rows = sqlite3.connect(db[0]).execute("select definition, ontology from go_term where ontology in ('BP','MF','CC')").fetchall()
    examples = []
    for definition, ontology in rows:
        if not definition: continue
        text = squeeze(definition, limit)
        label = names[ontology]
        # The namespace's name or code must not be in the input.
        if label in text.lower() or re.search(rf"\b{ontology}\b", text): continue
        examples.append((text, label))
    return stratified(examples, (0.6, 0.15, 0.25), cap=500)

def legal(unpacked, limit):
    files = sorted(glob.glob(os.path.join(unpacked, "licensedcode_data-*/licensedcode/data/licenses/*.LICENSE")))
    if not files: sys.exit(f"no licensedcode/data/licenses/*.LICENSE under {unpacked}: run scripts/fetch-corpora.sh")
    keep = {"Permissive", "Proprietary Free", "Copyleft Limited", "Copyleft", "Commercial", "Free Restricted"}
    examples = []
    for path in files:
        raw = open(path, encoding="utf-8", errors="replace").read()
        m = re.match(r"---\n(.*?)\n---\n(.*)", raw, re.S)
        if not m: continue
        category = re.search(r"^category:\s*(.+)$", m.group(1), re.M)
        if not category: continue
        label = category.group(1).strip().strip("'\"")
        text = squeeze(m.group(2), limit)
        if label not in keep or len(text) < 100 or label.lower() in text.lower(): continue
        examples.append((text, label))
    return stratified(examples, (0.6, 0.15, 0.25), cap=400)

def technical(text_root, limit):
    examples = []
    for section in ("2", "3", "4", "5", "7"):
        for path in sorted(glob.glob(os.path.join(text_root, f"technical/man/man{section}/*.txt"))):
            lines = open(path, encoding="utf-8", errors="replace").read().strip("\n").split("\n")
            # The first and last lines name the section ("open(2)  System Calls Manual  open(2)").
            body = "\n".join(lines[1:-1])
            body = re.sub(r"\(\d[a-zA-Z]*\)", "", body)          # section references: open(2) -> open
            body = re.sub(r"\bSEE ALSO\b.*", "", body, flags=re.S)
            body = re.sub(r"\bsection\s+\d[a-zA-Z]*\b", "section", body, flags=re.I)  # "see section 7"
            text = squeeze(body, limit)
            if len(text) < 100: continue
            examples.append((text, f"section {section}"))
    if not examples: sys.exit(f"no rendered man pages under {text_root}/technical/man: run scripts/fetch-corpora.sh")
    return stratified(examples, (0.6, 0.15, 0.25), cap=300)

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpora", default="corpora", help="folder holding text/ and downloads/unpacked/ from fetch-corpora.sh")
    p.add_argument("--out", default="runs/tasks")
    p.add_argument("--chars", type=int, default=2000, help="characters of input text kept (the model reads its first tokens)")
    a = p.parse_args()
    unpacked = os.path.join(a.corpora, "downloads/unpacked")
    write(a.out, "biomedical-go", biomedical(unpacked, a.chars))
    write(a.out, "legal-license", legal(unpacked, a.chars))
    write(a.out, "technical-man", technical(os.path.join(a.corpora, "text"), a.chars))

if __name__ == "__main__":
    main()
