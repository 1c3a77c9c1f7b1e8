#!/usr/bin/env bash
# Rebuilds the embedded default corpus, src/data/corpus/kjv.txt.gz, from Debian's bible-kjv package:
# the King James Version (public domain), one verse per line, verse references removed.
# Needs: apt-get install bible-kjv
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
command -v bible >/dev/null || { echo "make-corpus: the 'bible' program is missing: apt-get install bible-kjv" >&2; exit 1; }
bible -f 'Gen1:1-Rev22:21' | sed -E 's/^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ //' | gzip -9n > "$here/src/data/corpus/kjv.txt.gz"
echo "wrote $here/src/data/corpus/kjv.txt.gz ($(zcat "$here/src/data/corpus/kjv.txt.gz" | wc -c) bytes of text)"
