# elbo: `make` builds build/libelbo.a, build/libelbo.so and build/elbo;
# `make test` runs every test; `make bench` compares with PyTorch; `make sanitize` runs the
# tests under ASan+UBSan; `make install PREFIX=...` installs headers, libraries, elbo.pc;
# `make fuzz` builds the libFuzzer targets of fuzz/ and `make fuzz-run` runs each briefly.
CC      ?= gcc
BUILD   ?= build
PREFIX  ?= /usr/local
ARCH    ?= -march=native
OPT     ?= -O3
CFLAGS  ?= $(OPT) $(ARCH) -g
WARN    := -Wall -Wextra -Wshadow -Wno-unused-parameter
CPPFLAGS_ALL := -Iinclude -Isrc -Isrc/core -DELBO_HAVE_OPENBLAS_THREADS
ALLCFLAGS := -std=c11 -D_GNU_SOURCE -fPIC -fopenmp -fno-math-errno $(WARN) $(CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := -lopenblas -lpng -lz -lm
LDFLAGS_ALL := -fopenmp $(LDFLAGS) $(EXTRA_LDFLAGS)

LIB_SRC  := $(shell find src -name '*.c' | sort)
CLI_SRC  := $(wildcard tools/cli/*.c)
TEST_SRC := $(wildcard tests/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
HEADERS  := $(wildcard include/*.h include/elbo/*.h tools/cli/*.h tests/*.h) $(shell find src -name '*.h')

.PHONY: all test bench sanitize install clean fixtures fuzz fuzz-run

all: $(BUILD)/libelbo.a $(BUILD)/libelbo.so $(BUILD)/elbo

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(ALLCFLAGS) -c $< -o $@

$(BUILD)/libelbo.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libelbo.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDFLAGS_ALL) $(LDLIBS)

$(BUILD)/elbo: $(CLI_OBJ) $(BUILD)/libelbo.a
	$(CC) -o $@ $(CLI_OBJ) $(BUILD)/libelbo.a $(LDFLAGS_ALL) $(LDLIBS)

$(BUILD)/elbo_tests: $(TEST_OBJ) $(BUILD)/libelbo.a
	$(CC) -o $@ $(TEST_OBJ) $(BUILD)/libelbo.a $(LDFLAGS_ALL) $(LDLIBS)

# Every test (the C tests, then the command-line checks of tests/cli_test.sh); the last line
# is the total "N passed, N failed". TESTS=substring runs a subset (TESTS=cli: the CLI checks).
test: $(BUILD)/elbo_tests $(BUILD)/elbo
	bash tests/run.sh $(BUILD) $(TESTS)

# ASan + UBSan build of the same tests, in its own build directory.
sanitize:
	$(MAKE) BUILD=build-san OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" test

# Side-by-side benchmark against PyTorch (Debian's python3-torch), same thread count and
# the same OPENBLAS_CORETYPE on both sides.
bench: all
	bash bench/run.sh

# Regenerates the committed PyTorch fixtures (needs python3-torch; the tests do not).
fixtures:
	/usr/bin/python3 tools/gen_fixtures.py tests/fixtures
	/usr/bin/python3 tools/gen_fixtures_prob.py tests/fixtures
	/usr/bin/python3 tools/gen_fixtures_inverse.py tests/fixtures

install: all
	install -d $(DESTDIR)$(PREFIX)/include/elbo $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/elbo.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/elbo/*.h $(DESTDIR)$(PREFIX)/include/elbo/
	install -m 644 $(BUILD)/libelbo.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libelbo.so $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/elbo $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/.*ELBO_VERSION "\(.*\)"/\1/p' include/elbo/core.h)|' \
	  elbo.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/elbo.pc

# libFuzzer targets (fuzz/fuzz_<name>.c), one per parser: clang with libFuzzer + ASan +
# UBSan, the library compiled again with the same flags into build-fuzz/ (not the normal
# build). `make fuzz-run FUZZ_SECONDS=N` runs each for N seconds on a copy of its corpus
# (fuzz/corpus/<name>/) and ends with "N passed, N failed". Needs install-deps.sh --fuzz.
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := idx npy png cifar safetensors checkpoint json csv dataspec
FUZZ_FLAGS   := -fsanitize=fuzzer,address,undefined -g -O1 -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -fopenmp -fno-math-errno $(WARN) $(ARCH) $(FUZZ_FLAGS)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/obj/%.o: %.c $(HEADERS) fuzz/fuzz_common.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS_ALL) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/libelbo.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/fuzz/fuzz_%.o $(FUZZ_BUILD)/libelbo.a
	$(FUZZ_CC) $(FUZZ_FLAGS) -fopenmp -o $@ $< $(FUZZ_BUILD)/libelbo.a $(LDLIBS)

.SECONDARY: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/obj/fuzz/fuzz_%.o)

fuzz: $(FUZZ_BINS)

fuzz-run: $(FUZZ_BINS)
	bash fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf build build-san build-fuzz
