/* elbo: deep generative models in C. The public API: include this one header.
 *   core.h   status codes, threads, RNG, tensors, step context, autodiff
 *   ops.h    differentiable ops
 *   nn.h     named parameters, layers, initialisation
 *   optim.h  optimisers, gradient clipping, EMA, learning-rate schedules
 *   models.h the benchmark models (vae-mlp, unet-s) and their losses
 *   data.h   IDX datasets (Fashion-MNIST), dataset specs, shuffling, pixel transforms, toy 2-D
 *   io.h     .npy and PNG files, atomic writes
 *   safetensors.h  safetensors files, saving and loading a paramset
 *   plot.h   scatter, density, vector-field and loss-curve plots to PNG (own rasteriser)
 *   checkpoint.h   training checkpoints (weights, optimiser, EMA, step, RNG) in safetensors
 *   progress.h     training progress: a terminal bar or log lines, and a CSV loss log
 *   prob.h   distributions: rsample, log_prob, entropy, KL (closed form or Monte Carlo)
 *   train.h  the model interface, the trainer (resumable, bit-exact), evaluation
 *   vae.h    the VAE family (SGVB A/B, beta, warm-up, free bits, IWAE), included by train.h
 *   diffusion.h  noise processes (VP, VE, sub-VP; schedules), q(x_s|x_t,x), parameterisations,
 *                the terms of the variational bound
 *   sample.h the diffusion and score samplers (ancestral, DDIM, Heun, Euler-Maruyama,
 *            predictor-corrector, annealed Langevin, probability-flow ODE) over a denoiser
 *   ode.h    adaptive Dormand-Prince 5(4) for dy/dt = F(t, y)
 *   likelihood.h  log p(x) through the probability-flow ODE (Hutchinson-Skilling trace)
 *   gmm.h    Gaussian mixtures with closed-form noised scores, densities and denoisers
 *   guidance.h  classifier guidance as a wrapping denoiser, the classifier-free mix
 *   inverse.h   inverse problems with a diffusion prior: measurement operators, masks,
 *               energies, PnP / DPS / RePaint solvers, PSNR / SSIM, simple baselines
 */
#ifndef ELBO_H
#define ELBO_H
#include "elbo/checkpoint.h"
#include "elbo/core.h"
#include "elbo/data.h"
#include "elbo/diffusion.h"
#include "elbo/gmm.h"
#include "elbo/guidance.h"
#include "elbo/inverse.h"
#include "elbo/likelihood.h"
#include "elbo/ode.h"
#include "elbo/sample.h"
#include "elbo/io.h"
#include "elbo/models.h"
#include "elbo/nn.h"
#include "elbo/ops.h"
#include "elbo/optim.h"
#include "elbo/plot.h"
#include "elbo/prob.h"
#include "elbo/progress.h"
#include "elbo/train.h"
#include "elbo/safetensors.h"
#endif
