/* The smallest use of libelbo: fit y = 3x - 1 with one Linear layer, autodiff and Adam.
 *   cc hello.c $(pkg-config --cflags --libs --static elbo) */
#include <elbo.h>
#include <stdio.h>

int main(void) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_linear lin;
    if (elbo_nn_linear_init(&lin, ps, "lin", 1, 1, 1) != ELBO_OK ||
        elbo_paramset_finalize(ps, 0) != ELBO_OK) {
        fprintf(stderr, "hello: %s\n", elbo_last_error());
        return 1;
    }
    elbo_optim_params op;
    elbo_optim_params_init(&op, ELBO_OPT_ADAM);
    elbo_optim *opt = elbo_optim_new(ps, &op);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    float loss_value = 0;
    for (int step = 0; step < 2000; step++) {
        elbo_ctx_reset(ctx);
        elbo_paramset_zero_grad(ps);
        elbo_tensor *x = elbo_tensor_new2(ctx, 16, 1), *y = elbo_tensor_new2(ctx, 16, 1);
        for (int i = 0; i < 16; i++) {
            x->data[i] = (float)i / 8 - 1;
            y->data[i] = 3 * x->data[i] - 1;
        }
        elbo_tensor *loss =
            elbo_mse_loss(ctx, elbo_nn_linear_forward(ctx, &lin, x), y, ELBO_REDUCE_MEAN);
        if (!loss || elbo_backward(ctx, loss) != ELBO_OK ||
            elbo_optim_step(opt, 0.05f) != ELBO_OK) {
            fprintf(stderr, "hello: %s\n", elbo_last_error());
            return 1;
        }
        loss_value = loss->data[0];
    }
    printf("w = %.4f, b = %.4f, mse = %.2g\n", lin.weight->data[0], lin.bias->data[0], loss_value);
    int ok = loss_value < 1e-4f;
    elbo_ctx_free(ctx);
    elbo_optim_free(opt);
    elbo_paramset_free(ps);
    return ok ? 0 : 1;
}
