/* Micro-benchmark of elbo's serial GEMM (elbo__sgemm_serial: the packed AVX-512 kernel of
 * sgemm_packed.c in AVX-512 builds, else gemm.c's dispatch) against cblas_sgemm (OpenBLAS,
 * single thread, whatever core OPENBLAS_CORETYPE selects) on the product shapes of vae-mlp's
 * Linear layers and of unet-s's convolutions and attention. Not built by default:
 *   gcc -O3 -march=native -fopenmp -Iinclude -Isrc -Isrc/core bench/gemm_micro.c \
 *       build/libelbo.a -lopenblas -lm -o build/gemm_micro
 *   build/gemm_micro [min_seconds per measurement]
 * GFLOP/s counts 2 flops per multiply-add; best of 5 timed batches. In AVX-512 builds a second
 * table times the packed kernel's unpacked entries against the packed kernel on the products
 * of the channel-last Winograd convolutions: elbo__sgemm_rowa_pb (A row-major in place, B
 * prepacked once; the forward's M^T = V^T U^T) and elbo__sgemm_tn_inplace (A^T B, both in
 * place; dW's dU = dM^T V). */
#include "elbo.h"
#include "kernels/cpu/kernels.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void openblas_set_num_threads(int);
char *openblas_get_corename(void);
extern double elbo__sgemm_small_mnk_override;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef struct {
    const char *what;
    int ta, tb, M, N, K;
} shape;

static const shape shapes[] = {
    {"vae fwd 128x512x784 nt", 0, 1, 128, 512, 784},
    {"vae dX 128x784x512 nn", 0, 0, 128, 784, 512},
    {"vae dW 512x784x128 tn", 1, 0, 512, 784, 128},
    {"wino 32x800x32 nn", 0, 0, 32, 800, 32},
    {"wino 64x400x128 nn", 0, 0, 64, 400, 128},
    {"wino dU 64x64x800 nt", 0, 1, 64, 64, 800},
    {"shift fwd 32x840x32 nn", 0, 0, 32, 840, 32},
    {"shift dW 32x32x840 nt", 0, 1, 32, 32, 840},
    {"shift dX 32x840x32 nn", 0, 0, 32, 840, 32},
    {"im2col 64x49x576 nn", 0, 0, 64, 49, 576},
    {"dcols 576x49x64 tn", 1, 0, 576, 49, 64},
    {"dW 576x64x49 nt", 0, 1, 576, 64, 49},
    {"attn 49x49x64 nt", 0, 1, 49, 49, 64},
    {"attn 64x49x49 nn", 0, 0, 64, 49, 49},
    {"attn 49x64x49 nt", 0, 1, 49, 64, 49},
    {"attn 49x49x64 tn", 1, 0, 49, 49, 64},
    {"64x196x64 nn", 0, 0, 64, 196, 64},
    {"tt 33x65x17", 1, 1, 33, 65, 17},
    {"tt 64x64x64", 1, 1, 64, 64, 64},
};

/* Seconds per call of one of the two implementations, best of 5 batches. */
static double time_one(int ours, const shape *s, const float *A, const float *B, float *C,
                       double min_s) {
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    double best = 1e9;
    long reps = 1;
    for (int batch = 0; batch < 6; batch++) {
        double t0 = now();
        for (long r = 0; r < reps; r++) {
            if (ours)
                elbo__sgemm_serial(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C,
                                   s->N);
            else
                cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                            s->tb ? CblasTrans : CblasNoTrans, s->M, s->N, s->K, 1.0f, A, lda, B,
                            ldb, 0.0f, C, s->N);
        }
        double t = (now() - t0) / reps;
        if (batch == 0) { /* calibrate */
            reps = (long)(min_s / (t > 1e-9 ? t : 1e-9)) + 1;
            continue;
        }
        if (t < best) best = t;
    }
    return best;
}

#ifdef __AVX512F__
/* Seconds per call, best of 5 batches: way 0 the packed kernel, 1 the unpacked entry (rowa_pb
 * for ta = 0, tn_inplace for ta = 1; tb = 0). */
static double time_unpacked(int way, int ta, int M, int N, int K, const float *A,
                            const float *B, const float *Bp, float *C, double min_s) {
    int lda = ta ? M : K;
    double best = 1e9;
    long reps = 1;
    for (int batch = 0; batch < 6; batch++) {
        double t0 = now();
        for (long r = 0; r < reps; r++) {
            if (way == 0)
                elbo__sgemm_packed(ta, 0, M, N, K, 1.0f, A, lda, B, N, 0.0f, C, N);
            else if (ta)
                elbo__sgemm_tn_inplace(M, N, K, 1.0f, A, lda, B, N, 0.0f, C, N);
            else
                elbo__sgemm_rowa_pb(M, N, K, 1.0f, A, lda, Bp, 0.0f, C, N);
        }
        double t = (now() - t0) / reps;
        if (batch == 0) {
            reps = (long)(min_s / (t > 1e-9 ? t : 1e-9)) + 1;
            continue;
        }
        if (t < best) best = t;
    }
    return best;
}

static void unpacked_table(const float *A, const float *B, float *C, double min_s) {
    static const int sh[][4] = { /* ta, M, N, K */
        {0, 49, 32, 32},  {0, 98, 32, 32},  {0, 196, 32, 32},  {0, 98, 64, 64},
        {0, 49, 64, 128}, {0, 98, 32, 64},  {1, 32, 32, 196},  {1, 32, 32, 784},
        {1, 64, 64, 196}, {1, 32, 64, 196}, {1, 64, 32, 196},  {1, 48, 32, 200}};
    float *Bp = aligned_alloc(64, (size_t)(1 << 18) * sizeof(float));
    printf("\n%-26s %9s %9s %6s\n", "unpacked (M x N x K)", "entry", "packed", "ratio");
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        int ta = sh[i][0], M = sh[i][1], N = sh[i][2], K = sh[i][3];
        if (!ta) elbo__sgemm_pack_b(0, K, N, B, N, Bp);
        double f = 2.0 * M * N * K * 1e-9;
        double t_p = time_unpacked(0, ta, M, N, K, A, B, Bp, C, min_s);
        double t_u = time_unpacked(1, ta, M, N, K, A, B, Bp, C, min_s);
        char what[64];
        snprintf(what, sizeof what, "%s %dx%dx%d", ta ? "tn_inplace" : "rowa_pb", M, N, K);
        printf("%-26s %9.1f %9.1f %6.2f\n", what, f / t_u, f / t_p, t_p / t_u);
    }
    free(Bp);
}
#endif

int main(int argc, char **argv) {
    double min_s = argc > 1 ? atof(argv[1]) : 0.02;
    openblas_set_num_threads(1);
    printf("OpenBLAS core %s\n", openblas_get_corename());
    printf("%-26s %9s %9s %6s\n", "shape (M x N x K, ta tb)", "ours GF/s", "BLAS GF/s", "ratio");
    elbo_rng rng;
    elbo_rng_init(&rng, 1);
    size_t big = 1 << 20;
    float *A = malloc(big * 4), *B = malloc(big * 4), *C = malloc(big * 4);
    elbo_rng_normal(&rng, A, big, 0, 1);
    elbo_rng_normal(&rng, B, big, 0, 1);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        double f = 2.0 * s->M * s->N * s->K * 1e-9;
        elbo__sgemm_small_mnk_override = 0; /* the default dispatch */
        double t_ours = time_one(1, s, A, B, C, min_s);
        double t_blas = time_one(0, s, A, B, C, min_s);
        printf("%-26s %9.1f %9.1f %6.2f\n", s->what, f / t_ours, f / t_blas, t_blas / t_ours);
    }
#ifdef __AVX512F__
    unpacked_table(A, B, C, min_s);
#endif
    free(A);
    free(B);
    free(C);
    return 0;
}
