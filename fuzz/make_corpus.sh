#!/usr/bin/env bash
# Regenerates the seed corpus fuzz/corpus/<target>/ (committed; a few tiny valid files per
# target) with the library's own writers, through fuzz/make_corpus.c linked against the
# normal build (make). Inputs that once crashed a parser are kept by hand next to them
# (names starting "crash-") and are left alone here.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build/libelbo.a
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
${CC:-cc} -std=c11 -D_GNU_SOURCE -Iinclude -o "$tmp/make_corpus" fuzz/make_corpus.c build/libelbo.a \
  -fopenmp -lopenblas -lpng -lz -lm
for t in idx npy png cifar safetensors checkpoint json csv dataspec; do
  mkdir -p "fuzz/corpus/$t"
  find "fuzz/corpus/$t" -type f ! -name 'crash-*' -delete
done
"$tmp/make_corpus" fuzz/corpus
gzip -9 -n -c fuzz/corpus/idx/images.idx3 >fuzz/corpus/idx/images.idx3.gz
echo "make_corpus: $(find fuzz/corpus -type f | wc -l) files, $(cat fuzz/corpus/*/* | wc -c) bytes"
