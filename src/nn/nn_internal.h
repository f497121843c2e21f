/* Shared by the nn layer files. Not installed. */
#ifndef ELBO_NN_INTERNAL_H
#define ELBO_NN_INTERNAL_H

#include "internal.h"

/* Returns y; when y is NULL (an op inside a layer failed), prefixes the error message with
 * the layer's name taken from param ("down.0.conv1.weight" -> "down.0.conv1: ..."). Call it
 * only when the layer's inputs were non-NULL, so that an earlier error is kept as it is. */
elbo_tensor *elbo__in_layer(elbo_tensor *y, const elbo_tensor *param);

#endif
