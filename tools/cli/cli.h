/* The commands of `elbo`; each returns the process exit status (0, 1 runtime, 2 usage). */
#ifndef ELBO_CLI_H
#define ELBO_CLI_H

int cmd_bench(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_eval(int argc, char **argv);

#endif
