#!/usr/bin/env bash
# `make bench`: elbo against PyTorch on the benchmark models of bench-models.md, side by
# side in one run, with the same thread count and OPENBLAS_CORETYPE on both sides.
# Environment: THREADS (default 2), OPENBLAS_CORETYPE (default Haswell), REPEAT (rounds,
# default 3), ELBO (the elbo binary, default build/elbo), PYTHON (default /usr/bin/python3:
# Debian's python3-torch).
# PyTorch runs its convolutions through oneDNN, not OpenBLAS, in this Debian build.
set -euo pipefail
cd "$(dirname "$0")/.."

export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS
ELBO=${ELBO:-build/elbo}
PYTHON=${PYTHON:-/usr/bin/python3}

# field NAME JSON -> the number after "NAME":
field() { sed -n "s/.*\"$1\": *\([0-9.eE+-]*\).*/\1/p" <<<"$2"; }

# REPEAT rounds (default 3), elbo and PyTorch alternating, so that both sides see the same
# drift of a shared machine; each figure in the table is the median over the rounds.
REPEAT=${REPEAT:-3}
declare -A E T
for model in vae-mlp unet-s; do
    for r in $(seq "$REPEAT"); do
        echo "running $model, round $r of $REPEAT (elbo, then PyTorch) ..." >&2
        e=$("$ELBO" bench "$model" --threads "$THREADS")
        t=$("$PYTHON" bench/bench_torch.py "$model" --threads "$THREADS")
        echo "  elbo:    $e" >&2
        echo "  PyTorch: $t" >&2
        E[$model]+="$e"$'\n'
        T[$model]+="$t"$'\n'
    done
done

# med FIELD LINES -> the median of FIELD over the JSON lines
med() {
    field "$1" "$2" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

row() { # label model field unit
    local e t
    e=$(med "$3" "${E[$2]}")
    t=$(med "$3" "${T[$2]}")
    awk -v l="$1" -v u="$4" -v e="$e" -v t="$t" \
        'BEGIN { printf "| %-28s | %10.2f %-2s | %10.2f %-2s | %12.2f |\n", l, e, u, t, u, (t > 0 ? e / t : 0) }'
}

echo
echo "threads $THREADS, OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE (PyTorch convolutions: oneDNN), medians of $REPEAT rounds"
echo "| measure                      |          elbo |       PyTorch | elbo/PyTorch |"
echo "|------------------------------|---------------|---------------|--------------|"
row "vae-mlp step (batch 128)" vae-mlp step_ms ms
row "vae-mlp forward, no grad" vae-mlp forward_ms ms
row "vae-mlp peak RSS" vae-mlp peak_rss_mb MB
row "unet-s step (batch 64)" unet-s step_ms ms
row "unet-s forward, no grad" unet-s forward_ms ms
row "unet-s peak RSS" unet-s peak_rss_mb MB
row "vae-mlp GFLOP/s (step)" vae-mlp gflops ""
row "unet-s GFLOP/s (step)" unet-s gflops ""
echo "(peak RSS of the Python side includes the interpreter and libtorch, about 230 MB before"
echo " any model; each ratio is of the two medians, on a shared machine: compare ratios only)"
