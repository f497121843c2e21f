/* Benchmarks: placeholder until the benchmark models land (issue 2, point 7). */
#include "internal.h"

void elbo_bench_params_init(elbo_bench_params *p) { memset(p, 0, sizeof *p); }

elbo_status elbo_bench_run(const elbo_bench_params *p, elbo_bench_result *r) {
    return elbo_error(ELBO_ERR_STATE, "bench: %s is not available yet", p->model);
}
