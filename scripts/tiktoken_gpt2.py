"""tiktoken's `gpt2` encoding, offline: points TIKTOKEN_CACHE_DIR at a folder holding GPT-2's
files under the names tiktoken looks for (see ../shared/spec/CORPORA.md). Needs
scripts/fetch-gpt2.sh to have run. Shared by the fixture maker and the corpus checker."""
import os, shutil, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gpt2_encoding():
    gpt2 = os.environ.get("ELLE_GPT2_DIR", os.path.join(ROOT, "corpora", "gpt2"))
    cache = tempfile.mkdtemp(prefix="tiktoken-cache-")
    shutil.copy(os.path.join(gpt2, "merges.txt"), os.path.join(cache, "6d1cbeee0f20b3d9449abfede4726ed8212e3aee"))
    shutil.copy(os.path.join(gpt2, "vocab.json"), os.path.join(cache, "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6"))
    os.environ["TIKTOKEN_CACHE_DIR"] = cache
    import tiktoken
    enc = tiktoken.get_encoding("gpt2")
    assert enc.encode("Hello world") == [15496, 995]
    return enc
