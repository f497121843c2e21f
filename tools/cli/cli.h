/* The commands of `elbo`; each returns the process exit status (0, 1 runtime, 2 usage). */
#ifndef ELBO_CLI_H
#define ELBO_CLI_H

int cmd_bench(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);
int cmd_interpolate(int argc, char **argv);
int cmd_traverse(int argc, char **argv);

#include "elbo/core.h"
/* Images x (n, c, h, w) in [0, 1] to path: a PNG grid of nrow per row (2 px padding) or,
 * for a .npy path, uint8 (n, c, h, w) = round(255 x). Atomic. */
elbo_status cli_write_images(const char *path, const float *x, int64_t n, int64_t c, int64_t h,
                             int64_t w, int nrow);
/* 0 when path (NULL allowed) ends in .png or .npy (.npy only with npy_only), else prints
 * the usage error naming flag and returns ARGS_USAGE. */
int cli_check_image_out(const char *flag, const char *path, int npy_only);
/* 1 when s ends with suf. */
int cli_ends_with(const char *s, const char *suf);

#endif
