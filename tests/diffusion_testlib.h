/* Shared by the diffusion model's tests: a small image configuration. */
#ifndef ELBO_DIFFUSION_TESTLIB_H
#define ELBO_DIFFUSION_TESTLIB_H

#include "elbo/train.h"

#include <string.h>

/* A small image config: (1, 8, 8), UNet 8-16 channels, attention at the second level,
 * groups 4, temb 16. */
static inline void tiny_image_config(elbo_diffusion_config *c) {
    elbo_diffusion_config_init(c);
    c->c = 1, c->h = 8, c->w = 8;
    c->unet.n_levels = 2;
    c->unet.channels[0] = 8, c->unet.channels[1] = 16;
    memset(c->unet.attn, 0, sizeof c->unet.attn);
    c->unet.attn[1] = 2;
    c->unet.groups = 4;
    c->unet.temb_dim = 16;
}

#endif
