# mcpwarden build.
#
# Pattern chain (libbpf-bootstrap style):
#   bpf/NAME.bpf.c -> build/bpf/NAME.bpf.o -> build/mcpwarden.bpf.o (static
#   link) -> build/mcpwarden.skel.h -> build/mcpwarden (one binary).
# Userspace sources are collected by wildcard, tests register themselves
# (scripts/gen-tests-h), fuzz targets live in tests/fuzz/fuzz_*.c.
#
# Quiet unless V=1.

BUILD      ?= build
CC         ?= gcc
CLANG      ?= clang
BPFTOOL    ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
PREFIX     ?= /usr/local
VMLINUX_H  ?= $(BUILD)/vmlinux.h
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
VERSION    := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV    := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/' \
	-e 's/ppc64le/powerpc/' -e 's/s390x/s390/')

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

.DELETE_ON_ERROR:
.SUFFIXES:
.SECONDARY:

# snprintf truncation is always deliberate here (bounded messages).
WARN     := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wformat=2 -Wno-format-truncation
CFLAGS   ?= -O2 -g
CFLAGS   += $(WARN) -std=gnu11 -D_GNU_SOURCE -Iinclude -Iuserspace -I$(BUILD) \
	    -DMCPWARDEN_VERSION='"$(VERSION)"' -DMCPWARDEN_GIT='"$(GIT_REV)"'
LIBS     := $(shell pkg-config --libs libbpf jansson libcrypto zlib 2>/dev/null || \
	      echo -lbpf -lelf -lz -ljansson -lcrypto) -lpthread
# libcurl (Kubernetes API) and libnats (fleet mode) are opened when first
# needed (userspace/dynlib.h), by the soname the build machine has.
soname    = $(or $(shell objdump -p $$(pkg-config --variable=libdir $(1) 2>/dev/null || \
	      echo /usr/lib/$$(gcc -print-multiarch))/$(1).so 2>/dev/null | \
	      awk '$$1 == "SONAME" { print $$2 }'),$(2))
CFLAGS   += -DMCPW_CURL_SONAME='"$(call soname,libcurl,libcurl.so.4)"' \
	    -DMCPW_NATS_SONAME='"$(call soname,libnats,libnats.so.3.4)"'
# The tests set up NATS streams of their own.
TEST_LIBS := $(LIBS) $(shell pkg-config --libs libnats 2>/dev/null || echo -lnats)
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
	      -Wno-unused-function -Iinclude -I$(BUILD) -mcpu=v3

BPF_SRCS  := $(wildcard bpf/*.bpf.c)
BPF_OBJS  := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.bpf.o,$(BPF_SRCS))
BPF_HDRS  := $(wildcard bpf/*.bpf.h) $(wildcard include/mcpwarden/*.h)

USER_SRCS := $(filter-out userspace/main.c,$(wildcard userspace/*.c))
USER_OBJS := $(patsubst userspace/%.c,$(BUILD)/obj/%.o,$(USER_SRCS))
USER_HDRS := $(wildcard userspace/*.h) $(wildcard include/mcpwarden/*.h)

# Client library for the attestation API (no dependency beyond libc).
ATTEST_SRCS := $(wildcard lib/attest/*.c)
ATTEST_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(ATTEST_SRCS))

TEST_SRCS := $(wildcard tests/test_*.c) $(wildcard tests/e2e/test_*.c)
TEST_LIB  := $(wildcard tests/lib/*.c)
TEST_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(TEST_SRCS) $(TEST_LIB) tests/runner.c)

HELPER_SRCS := $(wildcard tests/helpers/*.c)
HELPER_BINS := $(patsubst tests/helpers/%.c,$(BUILD)/tests/%,$(HELPER_SRCS))

FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))

.PHONY: all clean install run test check fuzz bench demo setup unit e2e

all: $(BUILD)/mcpwarden $(BUILD)/libmcpwarden-attest.a $(BUILD)/libmcpwarden-attest.so

# ---- kernel side -----------------------------------------------------------

$(BUILD) $(BUILD)/bpf $(BUILD)/obj $(BUILD)/fuzz:
	$(Q)mkdir -p $@

ifeq ($(VMLINUX_H),$(BUILD)/vmlinux.h)
$(BUILD)/vmlinux.h: | $(BUILD)
	$(Q)if [ ! -r "$(VMLINUX_BTF)" ]; then \
		echo "error: no kernel BTF at $(VMLINUX_BTF); this kernel lacks CONFIG_DEBUG_INFO_BTF." >&2; \
		echo "       Build on a kernel with BTF, or pass VMLINUX_H=/path/to/vmlinux.h" >&2; \
		exit 1; fi
	$(call msg,GEN,$@)
	$(Q)$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c > $@
endif

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) $(VMLINUX_H) | $(BUILD)/bpf
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -include $(VMLINUX_H) -c $< -o $@

$(BUILD)/mcpwarden.bpf.o: $(BPF_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(BPFTOOL) gen object $@ $^

$(BUILD)/mcpwarden.skel.h: $(BUILD)/mcpwarden.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name mcpwarden_bpf > $@

# ---- userspace -------------------------------------------------------------

$(BUILD)/obj/%.o: userspace/%.c $(USER_HDRS) $(BUILD)/mcpwarden.skel.h | $(BUILD)/obj
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libmcpwarden.a: $(USER_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/mcpwarden: $(BUILD)/obj/main.o $(BUILD)/libmcpwarden.a $(BUILD)/libmcpwarden-attest.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LIBS) -o $@

# ---- tests -----------------------------------------------------------------

$(BUILD)/tests.h: $(TEST_SRCS) scripts/gen-tests-h | $(BUILD)
	$(call msg,GEN,$@)
	$(Q)scripts/gen-tests-h $(TEST_SRCS) > $@.tmp && \
		(cmp -s $@.tmp $@ || mv $@.tmp $@); rm -f $@.tmp

$(BUILD)/obj/tests/%.o: tests/%.c $(USER_HDRS) $(wildcard tests/lib/*.h) tests/harness.h $(BUILD)/tests.h $(BUILD)/mcpwarden.skel.h
	@mkdir -p $(dir $@)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -Itests -Itests/lib -Ilib/attest -c $< -o $@

# Helpers may use the agent's modules (the archive only adds what they call).
$(BUILD)/tests/%: tests/helpers/%.c $(BUILD)/libmcpwarden.a $(BUILD)/libmcpwarden-attest.a
	@mkdir -p $(dir $@)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -Ilib/attest -I$(BUILD)/tests $< $(BUILD)/libmcpwarden.a $(BUILD)/libmcpwarden-attest.a $(LIBS) -o $@

# A helper's own BPF program (not the agent's): tests/helpers/bpf/NAME.bpf.c
# -> build/tests/NAME.skel.h, included by tests/helpers/NAME.c.
$(BUILD)/tests/bpf/%.bpf.o: tests/helpers/bpf/%.bpf.c $(VMLINUX_H)
	@mkdir -p $(dir $@)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -include $(VMLINUX_H) -c $< -o $@

$(BUILD)/tests/%.skel.h: $(BUILD)/tests/bpf/%.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $*_bpf > $@

$(BUILD)/tests/sockmap_floor: $(BUILD)/tests/sockmap_floor.skel.h

$(BUILD)/obj/lib/%.o: lib/%.c $(wildcard lib/attest/*.h)
	@mkdir -p $(dir $@)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -fPIC -Ilib/attest -c $< -o $@

$(BUILD)/libmcpwarden-attest.a: $(ATTEST_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libmcpwarden-attest.so: $(ATTEST_OBJS)
	$(call msg,LD,$@)
	$(Q)$(CC) -shared $^ -o $@

$(BUILD)/test_runner: $(TEST_OBJS) $(BUILD)/libmcpwarden.a $(BUILD)/libmcpwarden-attest.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(TEST_LIBS) -o $@

# Fuzz builds: every userspace object again with ASan/UBSan and coverage, in
# an archive so each target links only the modules it calls.
FUZZ_CFLAGS := -g -O1 -std=gnu11 -D_GNU_SOURCE -Iinclude -Iuserspace -Itests/lib -I$(BUILD) \
	-DMCPWARDEN_VERSION='"$(VERSION)"' -DMCPWARDEN_GIT='"$(GIT_REV)"' \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJS := $(patsubst userspace/%.c,$(BUILD)/fuzz/obj/%.o,$(USER_SRCS))

$(BUILD)/fuzz/obj/%.o: userspace/%.c $(USER_HDRS) $(BUILD)/mcpwarden.skel.h
	@mkdir -p $(dir $@)
	$(call msg,CC-FUZZ,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(BUILD)/fuzz/libmcpwarden.a: $(FUZZ_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/fuzz/libmcpwarden.a
	$(call msg,FUZZ,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer $^ $(LIBS) -o $@

fuzz: $(FUZZ_BINS)

# `make test`: the one command that sets up and runs every test.
test: setup
	$(Q)scripts/test

# Runs only what is already built (no setup); used by scripts/test.
tests-build: $(BUILD)/mcpwarden $(BUILD)/test_runner $(HELPER_BINS) $(FUZZ_BINS)

setup:
	$(Q)scripts/setup

# `make run`: set up, build and run the agent on its embedded default policy.
run: setup
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(BUILD)/mcpwarden run --mode monitor

install: $(BUILD)/mcpwarden $(BUILD)/libmcpwarden-attest.a $(BUILD)/libmcpwarden-attest.so
	install -D -m 0755 $(BUILD)/mcpwarden $(DESTDIR)$(PREFIX)/bin/mcpwarden

bench: setup
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/bench

demo: setup
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/demo

check: $(BUILD)/mcpwarden
	$(Q)scripts/check

clean:
	$(Q)rm -rf $(BUILD)
