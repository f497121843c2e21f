/* libFuzzer target: elbo_plot_loss_csv, the CSV and its PNG (a small plot, so each run is
 * quick) both in the temporary directory. */
#include "elbo/plot.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char csv[1024], png[1024];
    fuzz_write("log.csv", data, size, csv, sizeof csv);
    fuzz_path("loss.png", png, sizeof png);
    elbo_plot_opts o;
    elbo_plot_opts_default(&o);
    o.width = o.height = 40;
    o.pad = 4;
    elbo_plot_loss_csv(csv, png, NULL, &o);
    unlink(png);
    return 0;
}
