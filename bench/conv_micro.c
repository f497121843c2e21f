/* Micro-benchmark of conv2d forward + backward on the convolutions of unet-s
 * (bench-models.md) at batch 64, against a 2048^3 SGEMM through OpenBLAS. Not built by
 * default:
 *   gcc -O3 -march=native -fopenmp -Iinclude -Isrc -Isrc/core bench/conv_micro.c \
 *       build/libelbo.a -lopenblas -lm -o build/conv_micro
 *   build/conv_micro [threads] [chunk_kib] [reps] [sgemm_reps] [layer index or -1]
 *       [shift_min_ow] [wino_kib] [wino_min_c] [wino_min_hw] [wino_dw_min_c] [wino_dw_kib]
 * (wino_kib: scratch budget of a Winograd chunk; wino_min_c: channels from which 3x3
 * stride-1 pad-1 convolutions use Winograd, forward and dX, a large value turns it off;
 * wino_min_hw: from how many pixels H W; wino_dw_min_c, wino_dw_kib: the same for dW by
 * Winograd)
 * GFLOP/s counts 2 MAC per multiply-add: forward 2 B OC C KH KW OH OW, the same again for
 * dW and for dX (dX only where the input requires a gradient). */
#include "elbo.h"
#include "kernels/cpu/kernels.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef struct {
    const char *name;
    int C, OC, H, k, s, p, count, dx; /* count: how many such convs in unet-s */
} layer;

static const layer layers[] = {
    {"in 1->32 3x3 @28", 1, 32, 28, 3, 1, 1, 1, 0},
    {"32->32 3x3 @28", 32, 32, 28, 3, 1, 1, 4, 1}, /* res0 conv1, conv2; up2 conv2 ... */
    {"32->32 3x3 s2 28->14", 32, 32, 28, 3, 2, 1, 1, 1},
    {"32->64 3x3 @14", 32, 64, 14, 3, 1, 1, 1, 1},
    {"64->64 3x3 @14", 64, 64, 14, 3, 1, 1, 1, 1},
    {"32->64 1x1 @14", 32, 64, 14, 1, 1, 0, 1, 1},
    {"64->64 3x3 s2 14->7", 64, 64, 14, 3, 2, 1, 1, 1},
    {"64->64 3x3 @7", 64, 64, 7, 3, 1, 1, 5, 1},
    {"64->192 1x1 @7", 64, 192, 7, 1, 1, 0, 1, 1},
    {"64->64 1x1 @7", 64, 64, 7, 1, 1, 0, 1, 1},
    {"128->64 3x3 @7", 128, 64, 7, 3, 1, 1, 1, 1},
    {"128->64 1x1 @7", 128, 64, 7, 1, 1, 0, 1, 1},
    {"128->32 3x3 @14", 128, 32, 14, 3, 1, 1, 1, 1},
    {"32->32 3x3 @14", 32, 32, 14, 3, 1, 1, 1, 1},
    {"128->32 1x1 @14", 128, 32, 14, 1, 1, 0, 1, 1},
    {"64->32 3x3 @28", 64, 32, 28, 3, 1, 1, 1, 1},
    {"64->32 1x1 @28", 64, 32, 28, 1, 1, 0, 1, 1},
    {"out 32->1 3x3 @28", 32, 1, 28, 3, 1, 1, 1, 1},
};

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 3 ? atoi(argv[3]) : 5;
    if (argc > 2 && atoi(argv[2]) > 0) elbo__conv_chunk_bytes = (size_t)atoi(argv[2]) << 10;
    if (argc > 6) elbo__conv_shift_min_ow = atoi(argv[6]);
    if (argc > 7 && atoi(argv[7]) > 0) elbo__conv_wino_bytes = (size_t)atoi(argv[7]) << 10;
    if (argc > 8) elbo__conv_wino_min_c = elbo__conv_wino_dx_min_c = atoi(argv[8]);
    if (argc > 9) elbo__conv_wino_min_hw = atoi(argv[9]);
    if (argc > 10) elbo__conv_wino_dw_min_c = atoi(argv[10]);
    if (argc > 11 && atoi(argv[11]) > 0) elbo__conv_wino_dw_bytes = (size_t)atoi(argv[11]) << 10;
    const int B = 64;
    elbo_rng rng;
    elbo_rng_init(&rng, 1);

    /* Reference: 2048^3 SGEMM, OpenBLAS threaded, and through elbo's tiled elbo__sgemm. */
    int n = 2048;
    float *A = malloc(sizeof(float) * n * n), *Bm = malloc(sizeof(float) * n * n),
          *Cm = malloc(sizeof(float) * n * n);
    elbo_rng_normal(&rng, A, (size_t)n * n, 0, 1);
    elbo_rng_normal(&rng, Bm, (size_t)n * n, 0, 1);
    double best_ob = 1e9, best_el = 1e9;
    int ref_reps = argc > 4 ? atoi(argv[4]) : 3;
    for (int r = 0; r < ref_reps; r++) {
        openblas_set_num_threads(threads);
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, A, n, Bm, n, 0, Cm, n);
        double t1 = now();
        if (t1 - t0 < best_ob) best_ob = t1 - t0;
        elbo_set_threads(threads);
        t0 = now();
        elbo__sgemm(0, 0, n, n, n, 1, A, n, Bm, n, 0, Cm, n);
        t1 = now();
        if (t1 - t0 < best_el) best_el = t1 - t0;
    }
    double gf = 2.0 * n * n * n * 1e-9;
    if (ref_reps < 1) best_ob = best_el = 1;
    printf("sgemm 2048^3, %d threads: OpenBLAS threaded %.1f GFLOP/s, elbo tiled %.1f GFLOP/s\n",
           threads, gf / best_ob, gf / best_el);
    free(A);
    free(Bm);
    free(Cm);

    elbo_set_threads(threads);
    elbo_ctx *ctx = elbo_ctx_new(0);
    double tot_t = 0, tot_f = 0, tot_ft = 0, tot_ff = 0;
    printf("%-24s %5s %9s %9s %9s %9s %9s %9s\n", "layer (batch 64)", "count", "fwd ms",
           "fwd GF/s", "f+b ms", "f+b GF/s", "dW ms", "dX ms");
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
        const layer *L = &layers[li];
        if (argc > 5 && atoi(argv[5]) >= 0 && (int)li != atoi(argv[5])) continue;
        int64_t OH = (L->H + 2 * L->p - L->k) / L->s + 1;
        int64_t nx = (int64_t)B * L->C * L->H * L->H, nw = (int64_t)L->OC * L->C * L->k * L->k;
        int64_t ny = (int64_t)B * L->OC * OH * OH;
        float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(L->OC * 4),
              *gy = malloc(ny * 4);
        elbo_rng_normal(&rng, x, nx, 0, 1);
        elbo_rng_normal(&rng, w, nw, 0, 0.1f);
        elbo_rng_normal(&rng, b, L->OC, 0, 1);
        elbo_rng_normal(&rng, gy, ny, 0, 1);
        double fwd = 1e9, both = 1e9, fdw = 1e9;
        for (int r = 0; r < reps + 1; r++) {
            for (int pass = 0; pass < 3; pass++) { /* forward; forward + backward; f + dW only */
                elbo_ctx_reset(ctx);
                elbo_tensor *tx = elbo_tensor_wrap(ctx, x, 4, (int64_t[]){B, L->C, L->H, L->H});
                elbo_tensor *tw = elbo_tensor_wrap(ctx, w, 4, (int64_t[]){L->OC, L->C, L->k, L->k});
                elbo_tensor *tb = elbo_tensor_wrap(ctx, b, 1, (int64_t[]){L->OC});
                elbo_tensor_requires_grad(tx, pass == 2 ? 0 : L->dx);
                elbo_tensor_requires_grad(tw, 1);
                elbo_tensor_requires_grad(tb, 1);
                elbo_ctx_set_grad(ctx, pass >= 1);
                double t0 = now();
                elbo_tensor *y = elbo_conv2d(ctx, tx, tw, tb, L->s, L->p);
                if (pass >= 1 && elbo_backward_with(ctx, y, gy) != ELBO_OK) {
                    fprintf(stderr, "%s\n", elbo_last_error());
                    return 1;
                }
                double t = now() - t0;
                if (r == 0) continue; /* warm-up */
                if (pass == 0 && t < fwd) fwd = t;
                if (pass == 1 && t < both) both = t;
                if (pass == 2 && t < fdw) fdw = t;
            }
        }
        double ff = 2.0 * B * L->OC * L->C * L->k * L->k * OH * OH;
        double fb = ff * (L->dx ? 3 : 2);
        /* dW (with the bias gradient): (f + dW) - f; dX: (f + b) - (f + dW) */
        printf("%-24s %5d %9.2f %9.1f %9.2f %9.1f %9.2f %9.2f\n", L->name, L->count, fwd * 1e3,
               ff / fwd * 1e-9, both * 1e3, fb / both * 1e-9, (fdw - fwd) * 1e3,
               L->dx ? (both - fdw) * 1e3 : 0.0);
        tot_t += L->count * both;
        tot_f += L->count * fb;
        tot_ft += L->count * fwd;
        tot_ff += L->count * ff;
        free(x);
        free(w);
        free(b);
        free(gy);
    }
    printf("unet-s convs, weighted by count: forward %.1f ms %.1f GFLOP/s; forward+backward "
           "%.1f ms %.1f GFLOP/s (%.0f%% of threaded 2048^3 SGEMM)\n",
           tot_ft * 1e3, tot_ff / tot_ft * 1e-9, tot_t * 1e3, tot_f / tot_t * 1e-9,
           100.0 * (tot_f / tot_t * 1e-9) / (gf / best_ob));
    elbo_ctx_free(ctx);
    return 0;
}
