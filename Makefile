# SPDX-License-Identifier: GPL-2.0
#
# make            build the two BPF objects and the C programs of the tests
#                 and the benchmark
# make check      prove both objects pass the verifier (root)
# make test       the end-to-end suite (root)
# make demo       iperf3 with and without the bypass, side by side (root)
# make bench      the benchmark: TCP, bypass, Unix sockets (root; QUICK=1)
# make deps       install what is missing (root), else list it
# make vmtest     the suite inside Debian's kernels under qemu (root):
#                 KERNELS="linux-image-amd64 ..." TESTS="core faults"
#
# MAX_ENTRIES=n sets the sockhash capacity; OUTPUT=dir puts the BPF objects
# elsewhere (make bpf OUTPUT=/tmp/x MAX_ENTRIES=4, then load.sh with
# SOCKOPS_OBJ_DIR=/tmp/x); V=1 shows the commands.

CLANG ?= clang
CC ?= cc
MAX_ENTRIES ?= 65536
# <asm/types.h> lives in the multiarch include directory on Debian/Ubuntu;
# clang -target bpf does not look there by itself.
MULTIARCH = $(shell $(CC) -print-multiarch 2>/dev/null)
BPF_CFLAGS = -g -O2 -Wall -Werror -target bpf -DMAX_ENTRIES=$(MAX_ENTRIES) \
	$(if $(MULTIARCH),-I/usr/include/$(MULTIARCH))
CFLAGS ?= -O2 -g -Wall -Wextra -Werror
CFLAGS += -D_GNU_SOURCE -I.
LDLIBS += -pthread

OUTPUT ?= .
BPF_OBJS := $(OUTPUT)/bpf_sockops.o $(OUTPUT)/bpf_redir.o

# sockprobe: the framework, then one file per family of probes.
SOCKPROBE_OBJS := $(addprefix tests/probes/, sockprobe.o sockprobe_eof.o \
	sockprobe_read.o sockprobe_poll.o sockprobe_send.o sockprobe_close.o \
	sockprobe_map.o)
XFER_OBJS := tests/probes/xfer.o
NOREAD_OBJS := tests/probes/noread.o
SOCKBENCH_OBJS := bench/sockbench.o
OBJS := $(SOCKPROBE_OBJS) $(XFER_OBJS) $(NOREAD_OBJS) $(SOCKBENCH_OBJS)
PROGS := tests/probes/sockprobe tests/probes/xfer tests/probes/noread \
	bench/sockbench

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-6s %s\n' '$(1)' '$(2)';
endif

.DELETE_ON_ERROR:
all: bpf $(PROGS)

.PHONY: all bpf clean check test vmtest demo bench deps FORCE

bpf: $(BPF_OBJS)

# Rebuild the objects when MAX_ENTRIES or the flags change.
$(OUTPUT)/.bpf-cflags: FORCE
	@mkdir -p $(OUTPUT)
	@echo '$(BPF_CFLAGS)' | cmp -s - $@ || echo '$(BPF_CFLAGS)' > $@

$(BPF_OBJS): $(OUTPUT)/%.o: %.c bpf_sockops.h bpf_maps.h $(OUTPUT)/.bpf-cflags
	$(call msg,CLANG,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# Every C program uses lib/util.h; what else each object includes is named.
$(OBJS): %.o: %.c lib/util.h
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(SOCKPROBE_OBJS): tests/probes/sockprobe.h
tests/probes/sockprobe_map.o: bpf_sockops.h

tests/probes/sockprobe: $(SOCKPROBE_OBJS)
tests/probes/xfer: $(XFER_OBJS)
tests/probes/noread: $(NOREAD_OBJS)
bench/sockbench: $(SOCKBENCH_OBJS)

$(PROGS):
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

check: $(BPF_OBJS)
	$(Q)scripts/check.sh

# Each job first installs what it needs (deps-*), then builds.
test: deps-test all
	$(Q)bats --timing tests

# The guest sees this tree read-only: everything is built here first.
KERNELS ?= linux-image-amd64 linux-image-6.12-amd64
vmtest: deps-vmtest all
	$(Q)./vmtest/vmtest.sh $(addprefix -k ,$(KERNELS)) $(TESTS)

demo: deps-demo all
	$(Q)scripts/demo.sh

bench: deps-bench all
	$(Q)bench/bench.sh $(if $(QUICK),--quick)

deps: deps-all

deps-%:
	@scripts/deps.sh $*

clean:
	$(call msg,CLEAN,)
	$(Q)rm -f $(BPF_OBJS) $(OUTPUT)/.bpf-cflags $(OBJS) $(PROGS)
	$(Q)rm -rf bench/out
