/* 2-D convolution (cross-correlation, as torch.nn.functional.conv2d) by im2col + sgemm, nearest
 * upsampling and average pooling.
 *
 * conv2d: the batch is processed in chunks of nb images whose columns (C*KH*KW, nb*OH*OW)
 * stay a few MB, with one sgemm per chunk:
 *   forward   t (OC, nb*OH*OW) = W (OC, C*KH*KW) @ cols, then scattered to NCHW plus bias
 *   backward  dW += dY_cm (OC, nb*OH*OW) @ cols^T   (cols recomputed, not saved)
 *             dcols = W^T @ dY_cm, dX += col2im(dcols)
 *             db += sum of dY over images and pixels
 * where dY_cm is the chunk's dY in channel-major order. A chunk of one image needs no layout
 * change (the GEMM reads and writes NCHW planes directly), and a 1x1 stride-1 unpadded
 * convolution of one image needs no im2col either (cols = x_b). The chunk size depends only
 * on the shapes, so results are the same for any thread count. */
#include "internal.h"
#include "kernels/cpu/kernels.h"

/* Target size of a chunk's scratch (columns + channel-major output). Tunable for
 * benchmarks (bench/conv_micro.c); not part of the API. */
size_t elbo__conv_chunk_bytes = (size_t)4 << 20;

static int is_pointwise(const elbo_conv_geom *g) {
    return g->KH == 1 && g->KW == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

/* Images per chunk: as many as fit in elbo__conv_chunk_bytes, at least one. */
static int64_t chunk_images(const elbo_conv_geom *g, int64_t B) {
    size_t per = (size_t)(g->C * g->KH * g->KW + g->OC) * (size_t)(g->OH * g->OW) * sizeof(float);
    int64_t nb = per ? (int64_t)(elbo__conv_chunk_bytes / per) : B;
    if (nb < 1) nb = 1;
    return nb < B ? nb : B;
}

static size_t chunk_scratch_floats(const elbo_conv_geom *g, int64_t nb) {
    return (size_t)(g->C * g->KH * g->KW + g->OC) * (size_t)(nb * g->OH * g->OW);
}

static void conv2d_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0], *w = n->in[1], *bias = n->in[2], *y = n->out;
    elbo_conv_geom g = {.C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
                        .OC = w->shape[0], .KH = w->shape[2], .KW = w->shape[3],
                        .OH = y->shape[2], .OW = y->shape[3],
                        .sh = n->iarg[0], .sw = n->iarg[1], .ph = n->iarg[2], .pw = n->iarg[3]};
    int64_t B = x->shape[0], CKK = g.C * g.KH * g.KW, P = g.OH * g.OW, HW = g.H * g.W;
    float *gx = elbo__grad(ctx, x), *gw = elbo__grad(ctx, w), *gb = elbo__grad(ctx, bias);
    const float *dy = y->grad;
    if (gb) elbo__channel_sum_acc(gb, dy, B, g.OC, P);
    if (!gx && !gw) return;
    int64_t nb = chunk_images(&g, B);
    int direct = nb == 1 && is_pointwise(&g);
    float *buf = NULL;
    if (!direct) {
        buf = elbo_ctx_scratch(ctx, chunk_scratch_floats(&g, nb) * sizeof(float));
        if (!buf) return;
    }
    for (int64_t b0 = 0; b0 < B; b0 += nb) {
        int64_t m = B - b0 < nb ? B - b0 : nb, cols_n = m * P;
        const float *xb = x->data + b0 * g.C * HW, *dyb = dy + b0 * g.OC * P;
        float *cols = buf, *dy_cm = buf ? buf + CKK * cols_n : NULL;
        const float *dyc = dyb;
        if (m > 1) {
            elbo__nchw_to_cm(dyb, m, g.OC, P, dy_cm);
            dyc = dy_cm;
        }
        if (gw) {
            const float *c = xb;
            if (!direct) {
                elbo__im2col(&g, xb, m, cols);
                c = cols;
            }
            elbo__sgemm(0, 1, g.OC, CKK, cols_n, 1.0f, dyc, cols_n, c, cols_n, 1.0f, gw, CKK);
        }
        if (gx) {
            float *gxb = gx + b0 * g.C * HW;
            if (direct) {
                elbo__sgemm(1, 0, CKK, cols_n, g.OC, 1.0f, w->data, CKK, dyc, cols_n, 1.0f, gxb,
                            cols_n);
            } else {
                elbo__sgemm(1, 0, CKK, cols_n, g.OC, 1.0f, w->data, CKK, dyc, cols_n, 0.0f, cols,
                            cols_n);
                elbo__col2im_acc(&g, cols, m, gxb);
            }
        }
    }
}

elbo_tensor *elbo_conv2d_ex(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *w, elbo_tensor *b,
                            int stride_h, int stride_w, int pad_h, int pad_w) {
    if (!x || !w) return NULL;
    if (x->ndim != 4 || w->ndim != 4) {
        elbo__shape_error("conv2d", x, w, "x must be (B, C, H, W) and w (OC, C, KH, KW)");
        return NULL;
    }
    if (w->shape[1] != x->shape[1]) {
        elbo__shape_error("conv2d", x, w, "input channels of x (axis 1) and w (axis 1) differ");
        return NULL;
    }
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) {
        elbo__shape_error("conv2d", w, b, "bias must be (OC) for w (OC, C, KH, KW)");
        return NULL;
    }
    if (stride_h < 1 || stride_w < 1 || pad_h < 0 || pad_w < 0) {
        elbo_error(ELBO_ERR_ARG, "conv2d: stride (%d, %d) must be >= 1 and padding (%d, %d) >= 0",
                   stride_h, stride_w, pad_h, pad_w);
        return NULL;
    }
    elbo_conv_geom g = {.C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
                        .OC = w->shape[0], .KH = w->shape[2], .KW = w->shape[3],
                        .sh = stride_h, .sw = stride_w, .ph = pad_h, .pw = pad_w};
    if (g.H + 2 * g.ph < g.KH || g.W + 2 * g.pw < g.KW) {
        elbo__shape_error("conv2d", x, w, "the kernel is larger than the padded input");
        return NULL;
    }
    g.OH = (g.H + 2 * g.ph - g.KH) / g.sh + 1;
    g.OW = (g.W + 2 * g.pw - g.KW) / g.sw + 1;
    int64_t B = x->shape[0], CKK = g.C * g.KH * g.KW, P = g.OH * g.OW, HW = g.H * g.W;
    elbo_tensor *y = elbo_tensor_new4(ctx, B, g.OC, g.OH, g.OW);
    if (!y) return NULL;
    int64_t nb = chunk_images(&g, B);
    int direct = nb == 1 && is_pointwise(&g);
    float *buf = NULL;
    if (!direct && B > 0) {
        buf = elbo_ctx_scratch(ctx, chunk_scratch_floats(&g, nb) * sizeof(float));
        if (!buf) return NULL;
    }
    for (int64_t b0 = 0; b0 < B; b0 += nb) {
        int64_t m = B - b0 < nb ? B - b0 : nb, cols_n = m * P;
        const float *xb = x->data + b0 * g.C * HW, *cols = xb;
        float *yb = y->data + b0 * g.OC * P;
        if (!direct) {
            elbo__im2col(&g, xb, m, buf);
            cols = buf;
        }
        if (m == 1) { /* the GEMM writes the image's NCHW planes directly */
            elbo__sgemm(0, 0, g.OC, P, CKK, 1.0f, w->data, CKK, cols, P, 0.0f, yb, P);
            if (b) elbo__add_channel_bias(yb, b->data, 1, g.OC, P);
        } else {
            float *t = buf + CKK * cols_n;
            elbo__sgemm(0, 0, g.OC, cols_n, CKK, 1.0f, w->data, CKK, cols, cols_n, 0.0f, t, cols_n);
            elbo__cm_to_nchw(t, b ? b->data : NULL, m, g.OC, P, yb);
        }
    }
    int ok;
    elbo_node *n = elbo__record(ctx, "conv2d", y, conv2d_backward, &ok, 3, x, w, b);
    if (!ok) return NULL;
    if (n) {
        n->iarg[0] = g.sh;
        n->iarg[1] = g.sw;
        n->iarg[2] = g.ph;
        n->iarg[3] = g.pw;
    }
    return y;
}

elbo_tensor *elbo_conv2d(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *w, elbo_tensor *b,
                         int stride, int pad) {
    return elbo_conv2d_ex(ctx, x, w, b, stride, stride, pad, pad);
}

/* ---- nearest upsampling by 2: (B,C,H,W) -> (B,C,2H,2W) --------------------------------- */
static void upsample_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0];
    float *gx = elbo__grad(ctx, x);
    if (!gx) return;
    elbo__upsample2x_backward_acc(n->out->grad, x->shape[0] * x->shape[1], x->shape[2],
                                  x->shape[3], gx);
}

elbo_tensor *elbo_upsample_nearest2x(elbo_ctx *ctx, elbo_tensor *x) {
    if (!x) return NULL;
    if (x->ndim != 4) {
        char s[96];
        elbo_error(ELBO_ERR_SHAPE, "upsample_nearest2x: x has shape %s, expected (B, C, H, W)",
                   elbo_shape_str(x, s, sizeof s));
        return NULL;
    }
    elbo_tensor *y = elbo_tensor_new4(ctx, x->shape[0], x->shape[1], 2 * x->shape[2],
                                      2 * x->shape[3]);
    if (!y) return NULL;
    elbo__upsample2x(x->data, x->shape[0] * x->shape[1], x->shape[2], x->shape[3], y->data);
    int ok;
    elbo__record(ctx, "upsample_nearest2x", y, upsample_backward, &ok, 1, x);
    return ok ? y : NULL;
}

/* ---- average pooling, k x k window, stride s, no padding ------------------------------ */
static void avg_pool_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0];
    float *gx = elbo__grad(ctx, x);
    if (!gx) return;
    elbo__avg_pool2d_backward_acc(n->out->grad, x->shape[0] * x->shape[1], x->shape[2],
                                  x->shape[3], n->iarg[0], n->iarg[1], gx);
}

elbo_tensor *elbo_avg_pool2d(elbo_ctx *ctx, elbo_tensor *x, int k, int stride) {
    if (!x) return NULL;
    char s[96];
    if (x->ndim != 4) {
        elbo_error(ELBO_ERR_SHAPE, "avg_pool2d: x has shape %s, expected (B, C, H, W)",
                   elbo_shape_str(x, s, sizeof s));
        return NULL;
    }
    if (k < 1 || stride < 1) {
        elbo_error(ELBO_ERR_ARG, "avg_pool2d: window %d and stride %d must be >= 1", k, stride);
        return NULL;
    }
    if (x->shape[2] < k || x->shape[3] < k) {
        elbo_error(ELBO_ERR_SHAPE, "avg_pool2d: window %d x %d larger than x of shape %s", k, k,
                   elbo_shape_str(x, s, sizeof s));
        return NULL;
    }
    int64_t OH = (x->shape[2] - k) / stride + 1, OW = (x->shape[3] - k) / stride + 1;
    elbo_tensor *y = elbo_tensor_new4(ctx, x->shape[0], x->shape[1], OH, OW);
    if (!y) return NULL;
    elbo__avg_pool2d(x->data, x->shape[0] * x->shape[1], x->shape[2], x->shape[3], k, stride,
                     y->data);
    int ok;
    elbo_node *n = elbo__record(ctx, "avg_pool2d", y, avg_pool_backward, &ok, 1, x);
    if (!ok) return NULL;
    if (n) {
        n->iarg[0] = k;
        n->iarg[1] = stride;
    }
    return y;
}
