#!/usr/bin/env bash
# PSNR / SSIM of the inverse-problem solvers against the simple baselines on the first N
# Fashion-MNIST test images, with a diffusion checkpoint as the prior (elbo inverse --eval):
#   bash tools/inverse_eval.sh ELBO DIFFUSION_CKPT OUT_DIR
# Tasks: inpaint (the centred 14 x 14 box missing), superres (x4: 7 x 7 -> 28 x 28), deblur
# (Gaussian, std 2 px) at sigma_y = 0.05, denoise at sigma_y = 0.2 ([0, 1] pixel units).
# Solvers: pnp (1000 Adam steps, t annealed 1 -> 0.02, x from A^+ y), dps (1000 steps, the norm
# step with ZETA, default 0.5, and ZETA_DENOISE, default 0.05, for denoising), repaint (inpaint only: 250 steps, jump 10, resample 10).
# Prints the markdown rows (task | method | PSNR | SSIM) and writes OUT_DIR/TASK_SOLVER.png
# grids (rows: truth, measurement, reconstruction) of the first 8 images. N (default 32).
set -eu
ELBO=$1 CKPT=$2 OUT=$3
N=${N:-32}
ZETA=${ZETA:-0.5}
ZETA_DENOISE=${ZETA_DENOISE:-0.05}
mkdir -p "$OUT"
row() { grep '^| [a-z]' | grep -v '^| task'; }
for task in inpaint superres denoise deblur; do
    sy=0.05
    [ "$task" = denoise ] && sy=0.2
    common=(--task "$task" --data fashion-mnist --n "$N" --sigma-y "$sy" --eval --seed 0)
    first=1
    for solver in pnp dps repaint; do
        [ "$solver" = repaint ] && [ "$task" != inpaint ] && continue
        extra=()
        z=$ZETA
        [ "$task" = denoise ] && z=$ZETA_DENOISE
        [ "$solver" = dps ] && extra=(--zeta "$z")
        out=$("$ELBO" inverse "$CKPT" "${common[@]}" --solver "$solver" "${extra[@]}" \
            --out "$OUT/${task}_${solver}.png")
        if [ $first = 1 ]; then printf '%s\n' "$out" | row; first=0
        else printf '%s\n' "$out" | row | head -n 1; fi
    done
done
