# SPDX-License-Identifier: MIT
#
# qtap: one non-recursive GNU Makefile.  Everything it builds goes under
# $(BUILD) (default build/); binaries land in $(BUILD)/bin.
#
# Each source directory is one static library (lib, drivers, tapdisk,
# control, tools) made of every .c file under it except the program entry
# points that a module.mk lists in <prog>_MAIN.  Programs link their main
# file against the libraries; unit tests (tests/unit/test-*.c) are one
# binary each.  `make V=1` prints full command lines.

BUILD ?= build
CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
AR ?= ar
PKG_CONFIG ?= pkg-config
SANITIZE ?=

V ?= 0
ifeq ($(V),0)
Q := @
quiet = @printf '  %-7s %s\n' '$(1)' '$(2)';
else
Q :=
quiet =
endif

WARN := -Wall -Wextra -Werror -Wshadow -Wvla -Wformat=2 -Wmissing-prototypes \
	-Wstrict-prototypes -Wno-unused-parameter -Wno-missing-field-initializers
CPPFLAGS_BASE := -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -I. -Ilib -Idrivers
OPT ?= -O2 -g
PKGS := liburing jansson zlib libzstd fuse3
PKGS += xengnttab xenevtchn
PKGS += xenstore
PKGS += libnbd
PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
CFLAGS_ALL = -std=gnu11 $(OPT) $(WARN) $(CPPFLAGS_BASE) $(PKG_CFLAGS) -MMD -MP $(CFLAGS)
LDLIBS_ALL = -Wl,--as-needed $(PKG_LIBS) -laio -lpthread $(LDLIBS)
ifneq ($(SANITIZE),)
CFLAGS_ALL += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDLIBS_ALL += -fsanitize=$(SANITIZE)
endif

# The crash harness's rule-breaking switch (drivers/qcow2/meta.c) is for
# its own tree only: `make crash-faults` builds it there.
ifneq ($(findstring CRASH_FAULTS,$(CFLAGS) $(CPPFLAGS)),)
ifneq ($(BUILD),build-crash)
$(error CRASH_FAULTS breaks the write-ordering contract: only BUILD=build-crash may have it)
endif
endif

LIBDIRS := tools tapdisk control drivers lib
PROGRAMS :=
TEST_LIBS_EXTRA :=

-include $(wildcard */module.mk tests/*/module.mk)

MAIN_SRCS := $(foreach p,$(PROGRAMS),$($(p)_MAIN))
lib_srcs = $(filter-out $(MAIN_SRCS),$(shell find $(1) -name '*.c' 2>/dev/null | sort))
ARCHIVES := $(foreach d,$(LIBDIRS),$(if $(call lib_srcs,$(d)),$(BUILD)/$(d)/lib$(d).a))
UNIT_SRCS := $(sort $(wildcard tests/unit/test-*.c))
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))
BINS := $(addprefix $(BUILD)/bin/,$(PROGRAMS))
# Helper programs that tests run, never installed: tests/tools/NAME.c.
TEST_TOOLS := $(patsubst tests/tools/%.c,$(BUILD)/tests/bin/%,$(sort $(wildcard tests/tools/*.c)))
# The crash-state harness's programs (tests/crash/NAME.c), built the same way.
TEST_TOOLS += $(patsubst tests/crash/%.c,$(BUILD)/tests/bin/%,$(sort $(wildcard tests/crash/*.c)))

all: $(ARCHIVES) $(BINS) $(UNIT_BINS) $(TEST_TOOLS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(call quiet,CC,$<)$(CC) $(CFLAGS_ALL) -c -o $@ $<

define archive_rule
$(BUILD)/$(1)/lib$(1).a: $(patsubst %.c,$(BUILD)/%.o,$(call lib_srcs,$(1)))
	@mkdir -p $$(@D)
	$$(call quiet,AR,$$@)rm -f $$@ && $(AR) rcs $$@ $$^
endef
$(foreach d,$(LIBDIRS),$(if $(call lib_srcs,$(d)),$(eval $(call archive_rule,$(d)))))

define program_rule
$(BUILD)/bin/$(1): $(patsubst %.c,$(BUILD)/%.o,$($(1)_MAIN)) $(ARCHIVES)
	@mkdir -p $$(@D)
	$$(call quiet,LD,$$@)$$(CC) $$(CFLAGS_ALL) -o $$@ $$(filter %.o,$$^) $(ARCHIVES) $($(1)_LIBS) $$(LDLIBS_ALL)
endef
$(foreach p,$(PROGRAMS),$(eval $(call program_rule,$(p))))

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(ARCHIVES)
	@mkdir -p $(@D)
	$(call quiet,LD,$@)$(CC) $(CFLAGS_ALL) -o $@ $< $(ARCHIVES) $(TEST_LIBS_EXTRA) -lcmocka $(LDLIBS_ALL)

$(BUILD)/tests/bin/%: $(BUILD)/tests/tools/%.o $(ARCHIVES)
	@mkdir -p $(@D)
	$(call quiet,LD,$@)$(CC) $(CFLAGS_ALL) -o $@ $< $(ARCHIVES) $(LDLIBS_ALL)

$(BUILD)/tests/bin/%: $(BUILD)/tests/crash/%.o $(ARCHIVES)
	@mkdir -p $(@D)
	$(call quiet,LD,$@)$(CC) $(CFLAGS_ALL) -o $@ $< $(ARCHIVES) $(LDLIBS_ALL)

# ---- set-up, tests ------------------------------------------------------

deps:
	$(Q)sh mk/deps.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)sh tests/demo.sh $(BUILD)

check: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BUILD=$(BUILD) bash tests/run-tests.sh unit integration

check-unit: all
	$(Q)BUILD=$(BUILD) bash tests/run-tests.sh unit

check-integration: all
	$(Q)BUILD=$(BUILD) bash tests/run-tests.sh integration

check-asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan CC=clang SANITIZE=address,undefined \
		OPT='-O1 -g' all
	$(Q)BUILD=build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 bash tests/run-tests.sh unit integration

# The tests whose point is threads, under ThreadSanitizer.
TSAN_TESTS ?= threads
check-tsan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-tsan CC=clang SANITIZE=thread OPT='-O1 -g' all
	$(Q)BUILD=build-tsan TESTS=$(TSAN_TESTS) TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
		bash tests/run-tests.sh unit

check-valgrind: all
	$(Q)BUILD=$(BUILD) QTAP_VALGRIND=1 bash tests/run-tests.sh unit integration

# The crash-state harness in full: >= 10,000 post-crash states over every
# workload, each also through qemu-img check and convert, and a table
# (tests/crash/run.sh; about 16 minutes). CRASH_QEMU_EVERY=25 samples.
CRASH_STATES ?= 1000
CRASH_QEMU_EVERY ?= 1
crash: all
	$(Q)BUILD=$(BUILD) sh tests/crash/run.sh -n $(CRASH_STATES) -q $(CRASH_QEMU_EVERY)

# ... and the proof that it fails: each ordering rule broken in turn, in a
# separate tree (tests/crash/faults.sh).
crash-faults:
	$(Q)$(MAKE) --no-print-directory BUILD=build-crash CFLAGS=-DCRASH_FAULTS all
	$(Q)BUILD=build-crash sh tests/crash/faults.sh

bench: all
	$(Q)BUILD=$(BUILD) sh tests/bench/run.sh

fuzz:
	$(Q)sh tests/fuzz/run.sh

format:
	$(Q)clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	$(Q)sh mk/format-check.sh

lint:
	$(Q)sh mk/lint.sh

PREFIX ?= /usr/local
install: all
	$(Q)mkdir -p $(DESTDIR)$(PREFIX)/bin
	$(Q)for p in $(PROGRAMS); do install -m 0755 $(BUILD)/bin/$$p $(DESTDIR)$(PREFIX)/bin/; done
	$(Q)sh mk/install-extra.sh $(DESTDIR) $(PREFIX) $(BUILD)

clean:
	$(Q)rm -rf build build-asan build-tsan build-clang build-fuzz build-crash

.PHONY: all deps demo check check-unit check-integration check-asan check-tsan check-valgrind bench fuzz \
	crash crash-faults \
	format format-check lint install clean
.DELETE_ON_ERROR:
.SECONDARY:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
