/* Helpers shared by the files of src/prob. Not installed. */
#ifndef ELBO_PROB_INTERNAL_H
#define ELBO_PROB_INTERNAL_H

#include "elbo.h"

/* t broadcast up to d's batch shape (t itself when it already has it). */
elbo_tensor *elbo__prob_expand(elbo_ctx *ctx, const elbo_dist *d, elbo_tensor *t);
/* log B(alpha) = sum_i lgamma(alpha_i) - lgamma(sum_i alpha_i), over the last axis. */
elbo_tensor *elbo__prob_log_beta(elbo_ctx *ctx, elbo_tensor *alpha);

#endif
