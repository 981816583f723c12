# mirai for C: libmirai and its tools.
#
#   make                    build the library, tools and examples in build/
#   make check              every test layer (unit, integration, CLI, fuzz
#                           smoke, sanitizers, valgrind)
#   make fuzz               every fuzz target for FUZZ_SECONDS (default 60)
#   make bench              the mirai-bench workloads w1-w4
#   make install PREFIX=/usr/local DESTDIR=   (also LIBDIR, INCDIR, ...)
#   make uninstall          with the same variables as the install
#   make SANITIZE=address,undefined   a sanitizer build in build-san/
#
# CI=true (or WERROR=1) turns warnings into errors.

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
MANDIR  ?= $(PREFIX)/share/man
DESTDIR ?=

CC      ?= cc
AR      ?= ar

VERSION := $(shell sed -n 's/^\#define MIRAI_VERSION_STRING "\(.*\)"/\1/p' include/mirai.h)
MAJOR   := $(shell sed -n 's/^\#define MIRAI_VERSION_MAJOR \([0-9]*\)/\1/p' include/mirai.h)

ifneq ($(SANITIZE),)
BUILD   ?= build-san
SANFLAGS = -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
else
BUILD   ?= build
SANFLAGS =
endif

# Debian ships no nng.pc: fall back to plain -lnng.
NNG_LIBS := $(shell pkg-config --libs nng 2>/dev/null || echo -lnng)
# mbedcrypto (NNG's TLS library) hashes host names for known_hosts, and
# with mbedx509 makes the per-launch CA and certificates (tls.c).
DEP_LIBS := $(NNG_LIBS) -lssh -lmbedx509 -lmbedcrypto -lhwloc -lpthread -ldl

WARN    = -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes \
          -Wmissing-prototypes -Wno-unused-parameter
ifneq ($(filter true 1 yes,$(CI) $(WERROR)),)
WARN   += -Werror
endif
OPT    ?= -O2 -g
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(SANFLAGS) -MMD -MP \
          -Iinclude $(CFLAGS)
LDFLAGS_ALL = $(SANFLAGS) $(LDFLAGS)

LIB_SRC := $(sort $(wildcard lib/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
SONAME  := libmirai.so.$(MAJOR)
SO      := $(BUILD)/lib/libmirai.so.$(VERSION)
AR_LIB  := $(BUILD)/lib/libmirai.a

TOOLS   := mirai mirai-server mirai-dispatcher mirai-launch mirai-bench
CMDS    := mirai mirai-server mirai-dispatcher mirai-launch
TOOL_BIN := $(TOOLS:%=$(BUILD)/bin/%)
CLI_OBJ := $(BUILD)/obj/cmd/cli.o

EXAMPLES := $(patsubst examples/%.c,%,$(wildcard examples/*.c))
EXAMPLE_BIN := $(EXAMPLES:%=$(BUILD)/examples/%)
EXAMPLE_PLUGIN_SRC := $(wildcard examples/plugins/*.c)
EXAMPLE_PLUGIN_SO := $(EXAMPLE_PLUGIN_SRC:examples/plugins/%.c=$(BUILD)/examples/plugins/%.so)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
INTEG_SRC := $(wildcard tests/integration/it_*.c)
INTEG_BIN := $(INTEG_SRC:tests/integration/%.c=$(BUILD)/tests/%)
PLUGIN_SRC := $(wildcard tests/plugins/*.c)
PLUGIN_SO := $(PLUGIN_SRC:tests/plugins/%.c=$(BUILD)/tests/%.so)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/%)

RPATH   = -Wl,-rpath,'$$ORIGIN/../lib'

.PHONY: all lib tools examples tests check check-fast check-san check-valgrind soak \
        bench install uninstall clean fuzz demo

all: lib tools examples $(BUILD)/lib/pkgconfig/mirai-uninstalled.pc

lib: $(SO) $(AR_LIB)
tools: $(TOOL_BIN)
examples: $(EXAMPLE_BIN) $(EXAMPLE_PLUGIN_SO)
tests: all $(UNIT_BIN) $(INTEG_BIN) $(PLUGIN_SO) $(FUZZ_BIN) $(BUILD)/tests/soak

$(BUILD)/obj/lib/%.o: lib/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -fPIC -fvisibility=hidden -DMIRAI_BUILDING -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -fPIC -c $< -o $@

$(SO): $(LIB_OBJ)
	@mkdir -p $(@D)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(LDFLAGS_ALL) \
	    -o $@ $(LIB_OBJ) $(DEP_LIBS)
	ln -sf libmirai.so.$(VERSION) $(BUILD)/lib/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/lib/libmirai.so

$(AR_LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $(LIB_OBJ)

# pc_gen PREFIX,LIBDIR,INCDIR,EXTRA_LIBS: mirai.pc.in filled in, on stdout.
# libdir and includedir are written as ${prefix}/... when under the prefix,
# which keeps `pkg-config --define-prefix` working.
comma  := ,
pc_rel  = $(patsubst $(2)/%,$${prefix}/%,$(1))
pc_gen  = sed -e 's|@PREFIX@|$(1)|' -e 's|@LIBDIR@|$(call pc_rel,$(2),$(1))|' \
    -e 's|@INCDIR@|$(call pc_rel,$(3),$(1))|' -e 's|@VERSION@|$(VERSION)|' \
    -e 's|@EXTRA_LIBS@|$(4)|' -e 's|@LIBS_PRIVATE@|$(DEP_LIBS)|' mirai.pc.in

# The build tree as a package: PKG_CONFIG_PATH=$(BUILD)/lib/pkgconfig makes
# `pkg-config mirai` use it (pkg-config prefers NAME-uninstalled.pc).  The
# installed mirai.pc is written by `make install`, for the prefix given
# there.
$(BUILD)/lib/pkgconfig/mirai-uninstalled.pc: mirai.pc.in include/mirai.h
	@mkdir -p $(@D)
	$(call pc_gen,$(abspath $(BUILD)),$(abspath $(BUILD))/lib,$(CURDIR)/include, -Wl$(comma)-rpath$(comma)$${libdir}) > $@

# The tools use only the public API; mirai-bench also links NNG for its
# raw floors.
$(CMDS:%=$(BUILD)/bin/%): $(BUILD)/bin/%: $(BUILD)/obj/cmd/%.o $(CLI_OBJ) $(SO)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(CLI_OBJ) -L$(BUILD)/lib -lmirai \
	    -lpthread -lm $(RPATH)

$(BUILD)/bin/mirai-bench: $(BUILD)/obj/bench/mirai-bench.o $(CLI_OBJ) $(SO)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(CLI_OBJ) -L$(BUILD)/lib -lmirai \
	    $(NNG_LIBS) -lpthread -lm $(RPATH)

$(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(SO)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $(filter %.o,$^) -L$(BUILD)/lib -lmirai \
	    -lpthread $(RPATH)

# A server program of its own, with the task functions of the plugin.
$(BUILD)/examples/sum_server: $(BUILD)/obj/examples/plugins/sum.o

# Example plugins: loaded by mirai-server, which already holds libmirai.
$(BUILD)/examples/plugins/%.so: $(BUILD)/obj/examples/plugins/%.o $(SO)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -shared -o $@ $< -L$(BUILD)/lib -lmirai

# Unit tests see the library's internals: they link its objects directly.
$(BUILD)/tests/test_%: $(BUILD)/obj/tests/unit/test_%.o $(LIB_OBJ)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ -lcmocka $(DEP_LIBS)

# The option parser's test links the tools' cli.o instead.
$(BUILD)/tests/test_cli: $(BUILD)/obj/tests/unit/test_cli.o $(CLI_OBJ)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ -lcmocka

# Integration tests use only the public API, like any client.
$(BUILD)/tests/it_%: $(BUILD)/obj/tests/integration/it_%.o \
    $(BUILD)/obj/tests/integration/harness.o $(SO)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/obj/tests/integration/harness.o \
	    -L$(BUILD)/lib -lmirai -lcmocka -lpthread $(RPATH)

# Hidden by default, as careful plugin builds are: mirai.h's MIRAI_API must
# still export mirai_plugin_init.
# The chaos soak: real servers killed, stopped and restarted, and the
# network cut, under load.
$(BUILD)/tests/soak: $(BUILD)/obj/tests/soak/soak.o \
    $(BUILD)/obj/tests/integration/harness.o $(SO)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/obj/tests/integration/harness.o \
	    -L$(BUILD)/lib -lmirai -lcmocka -lpthread $(RPATH)

$(BUILD)/tests/%.so: tests/plugins/%.c $(SO)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -fPIC -fvisibility=hidden -shared -o $@ $< -L$(BUILD)/lib -lmirai $(RPATH)

# Fuzz targets: built with the standalone driver here (make check runs
# each for a few seconds); `make fuzz` uses libFuzzer when clang is there.
$(BUILD)/tests/fuzz_%: $(BUILD)/obj/tests/fuzz/fuzz_%.o \
    $(BUILD)/obj/tests/fuzz/driver.o $(LIB_OBJ)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(DEP_LIBS)

# make soak SECONDS=N: the chaos soak alone, N s in each mode: the thread
# dispatcher, no dispatcher, the dispatcher process (make check runs the
# first for 20 s).
SECONDS ?= 60
soak: tests
	for mode in "" --direct --process; do \
	    MIRAI_SERVER=$(BUILD)/bin/mirai-server MIRAI_TEST_BUILD=$(BUILD) \
	    $(BUILD)/tests/soak $(SECONDS) $$mode || exit 1; done

check: tests
	BUILD=$(BUILD) tests/run-tests.sh all

# make fuzz FUZZ_SECONDS=N: every fuzz target for N s (default 60) under
# ASan+UBSan in build-fuzz/, coverage guided with clang's libFuzzer (else
# the standalone driver); see scripts/fuzz.
fuzz:
	FUZZ_SECONDS=$(or $(FUZZ_SECONDS),60) scripts/fuzz

# The quick layers only (unit, integration, CLI, fuzz smoke).
check-fast: tests
	BUILD=$(BUILD) tests/run-tests.sh fast

# Every workload, with and without the dispatcher (w6 needs it); w1 direct
# at 2 and 32 servers; w2 and w4 over TLS beside plain; w5 against mpirun.
bench: all
	$(BUILD)/bin/mirai-bench w1 --no-dispatcher
	$(BUILD)/bin/mirai-bench w1 --no-dispatcher --servers 32
	$(BUILD)/bin/mirai-bench w1
	$(BUILD)/bin/mirai-bench w2 --no-dispatcher
	$(BUILD)/bin/mirai-bench w2
	$(BUILD)/bin/mirai-bench w2 --tls
	$(BUILD)/bin/mirai-bench w3
	$(BUILD)/bin/mirai-bench w4 --no-dispatcher
	$(BUILD)/bin/mirai-bench w4
	$(BUILD)/bin/mirai-bench w4 --tls
	BUILD=$(BUILD) scripts/bench-launch
	$(BUILD)/bin/mirai-bench w6

# The main job: servers on the hosts of hosts.example (localhost), the
# example client run by the launcher.
demo: all
	$(BUILD)/bin/mirai-launch --hostfile hosts.example -- $(BUILD)/examples/hello

# Directories the dynamic linker searches by itself: glibc's built-in ones
# and those of /etc/ld.so.conf, as ldconfig lists them.  Only the install
# targets expand these.
LDCONFIG ?= /sbin/ldconfig
MULTIARCH = $(shell $(CC) -print-multiarch 2>/dev/null)
LD_DIRS   = /lib /usr/lib $(if $(MULTIARCH),/lib/$(MULTIARCH) /usr/lib/$(MULTIARCH)) \
    $(shell $(LDCONFIG) -v -N -X 2>/dev/null | sed -n 's|^\(/[^:]*\):.*|\1|p')
LD_SEARCHED = $(filter $(patsubst %/,%,$(LIBDIR)),$(LD_DIRS))
# Outside those directories the installed mirai.pc adds an rpath, so that
# programs built with `pkg-config --libs mirai` find libmirai as they are.
PC_RPATH = $(if $(LD_SEARCHED),, -Wl$(comma)-rpath$(comma)$${libdir})
# The dynamic linker's cache is refreshed only for a real install as root.
LD_REFRESH = [ -n "$(LD_SEARCHED)" ] && [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
	    $(DESTDIR)$(INCDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 755 $(TOOL_BIN) $(DESTDIR)$(BINDIR)/
	install -m 755 $(SO) $(DESTDIR)$(LIBDIR)/
	ln -sf libmirai.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libmirai.so
	install -m 644 $(AR_LIB) $(DESTDIR)$(LIBDIR)/
	install -m 644 include/mirai.h $(DESTDIR)$(INCDIR)/
	$(call pc_gen,$(PREFIX),$(LIBDIR),$(INCDIR),$(PC_RPATH)) \
	    > $(DESTDIR)$(LIBDIR)/pkgconfig/mirai.pc
	chmod 644 $(DESTDIR)$(LIBDIR)/pkgconfig/mirai.pc
	install -m 644 $(wildcard man/*.1) $(DESTDIR)$(MANDIR)/man1/
	@if $(LD_REFRESH); then \
	    echo $(LDCONFIG); $(LDCONFIG); \
	elif [ -z "$(LD_SEARCHED)" ]; then \
	    echo "mirai: $(LIBDIR) is not searched by the dynamic linker:" \
	        "link with -Wl,-rpath,$(LIBDIR) (pkg-config --libs mirai does)" \
	        "or set LD_LIBRARY_PATH=$(LIBDIR)"; \
	elif [ -n "$(DESTDIR)" ]; then \
	    echo "mirai: run $(LDCONFIG) once the files are in $(LIBDIR)"; \
	else \
	    echo "mirai: run $(LDCONFIG) as root, so that programs find libmirai"; \
	fi

uninstall:
	rm -f $(TOOLS:%=$(DESTDIR)$(BINDIR)/%)
	rm -f $(DESTDIR)$(LIBDIR)/libmirai.so* $(DESTDIR)$(LIBDIR)/libmirai.a
	rm -f $(DESTDIR)$(LIBDIR)/pkgconfig/mirai.pc $(DESTDIR)$(INCDIR)/mirai.h
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(wildcard man/*.1)))
	@if $(LD_REFRESH); then echo $(LDCONFIG); $(LDCONFIG); fi

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
