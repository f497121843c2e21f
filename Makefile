# elbo: `make` builds build/libelbo.a, build/libelbo.so and build/elbo;
# `make test` runs every test; `make bench` compares with PyTorch; `make sanitize` runs the
# tests under ASan+UBSan; `make install PREFIX=...` installs headers, libraries, elbo.pc.
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
HEADERS  := $(wildcard include/*.h include/elbo/*.h tools/cli/*.h) $(shell find src -name '*.h')

.PHONY: all test bench sanitize install clean fixtures

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

install: all
	install -d $(DESTDIR)$(PREFIX)/include/elbo $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/elbo.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/elbo/*.h $(DESTDIR)$(PREFIX)/include/elbo/
	install -m 644 $(BUILD)/libelbo.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libelbo.so $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/elbo $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/.*ELBO_VERSION "\(.*\)"/\1/p' include/elbo/core.h)|' \
	  elbo.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/elbo.pc

clean:
	rm -rf build build-san
