# SPDX-License-Identifier: GPL-2.0
#
# make            build the three BPF objects and the C programs of the tests
#                 and the benchmark
# make check      prove the objects pass the verifier (root)
# make test       the end-to-end suite (root)
# make demo       iperf3 with and without the bypass, side by side (root)
# make bench      the benchmark: TCP, bypass, Unix sockets (root; QUICK=1)
# make deps       install what is missing (root), else list it
# make vmtest     the suite inside Debian's kernels under qemu (root):
#                 KERNELS="linux-image-amd64 ..." TESTS="core faults"
# make install    objects, scripts and sockops.service under PREFIX
# make uninstall  remove exactly what make install put there
#
# OUTPUT=dir puts the BPF objects elsewhere (make bpf OUTPUT=/tmp/x, then
# load.sh with SOCKOPS_OBJ_DIR=/tmp/x); V=1 shows the commands.  The
# sockhash's capacity is set when loading: load.sh --max-entries N.

CLANG ?= clang
CC ?= cc
# <asm/types.h> lives in the multiarch include directory on Debian/Ubuntu;
# clang -target bpf does not look there by itself.
MULTIARCH = $(shell $(CC) -print-multiarch 2>/dev/null)
BPF_CFLAGS = -g -O2 -Wall -Werror -target bpf \
	$(if $(MULTIARCH),-I/usr/include/$(MULTIARCH))
CFLAGS ?= -O2 -g -Wall -Wextra -Werror
CFLAGS += -D_GNU_SOURCE -I.
LDLIBS += -pthread

OUTPUT ?= .
BPF_OBJS := $(OUTPUT)/bpf_sockops.o $(OUTPUT)/bpf_redir.o \
	$(OUTPUT)/bpf_sockopt.o

# sockprobe: the framework, then one file per family of probes.
SOCKPROBE_OBJS := $(addprefix tests/probes/, sockprobe.o sockprobe_eof.o \
	sockprobe_read.o sockprobe_poll.o sockprobe_send.o sockprobe_close.o \
	sockprobe_map.o sockprobe_flow.o sockprobe_opts.o)
XFER_OBJS := tests/probes/xfer.o
NOREAD_OBJS := tests/probes/noread.o
FLOW_OBJS := tests/probes/flow.o
REPAIR_OBJS := tests/probes/repair.o
CLAIM_OBJS := tests/probes/claim.o
SOCKBENCH_OBJS := bench/sockbench.o
CONNHOLD_OBJS := bench/connhold.o
OBJS := $(SOCKPROBE_OBJS) $(XFER_OBJS) $(NOREAD_OBJS) $(FLOW_OBJS) \
	$(REPAIR_OBJS) $(CLAIM_OBJS) $(SOCKBENCH_OBJS) $(CONNHOLD_OBJS)
PROGS := tests/probes/sockprobe tests/probes/xfer tests/probes/noread \
	tests/probes/flow tests/probes/repair tests/probes/claim bench/sockbench \
	bench/connhold

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-6s %s\n' '$(1)' '$(2)';
endif

.DELETE_ON_ERROR:
all: bpf sockops_stat $(PROGS)

.PHONY: all bpf clean check test vmtest demo bench deps FORCE

bpf: $(BPF_OBJS)

# Rebuild the objects when the flags change.
$(OUTPUT)/.bpf-cflags: FORCE
	@mkdir -p $(OUTPUT)
	@echo '$(BPF_CFLAGS)' | cmp -s - $@ || echo '$(BPF_CFLAGS)' > $@

$(BPF_OBJS): $(OUTPUT)/%.o: %.c bpf_sockops.h bpf_maps.h sock_key.h $(OUTPUT)/.bpf-cflags
	$(call msg,CLANG,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# status.sh's reader: installed with the scripts, linked with libbpf.
sockops_stat: sockops_stat.c
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< -o $@ -lbpf

# Every C program uses lib/util.h; what else each object includes is named.
$(OBJS): %.o: %.c lib/util.h
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(SOCKPROBE_OBJS): tests/probes/sockprobe.h
tests/probes/sockprobe_map.o: bpf_sockops.h sock_key.h

tests/probes/sockprobe: $(SOCKPROBE_OBJS)
tests/probes/xfer: $(XFER_OBJS)
tests/probes/noread: $(NOREAD_OBJS)
tests/probes/flow: $(FLOW_OBJS)
tests/probes/repair: $(REPAIR_OBJS)
tests/probes/claim: $(CLAIM_OBJS)
tests/probes/claim.o: bpf_sockops.h
bench/sockbench: $(SOCKBENCH_OBJS)
bench/connhold: $(CONNHOLD_OBJS)

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
	$(Q)rm -f $(BPF_OBJS) $(OUTPUT)/.bpf-cflags $(OBJS) $(PROGS) sockops_stat
	$(Q)rm -rf bench/out

# make install [PREFIX=/usr/local] [DESTDIR=staging dir]
#
# Everything load.sh needs sits in one directory, $(LIBEXEC): the scripts
# find common.sh and the objects beside themselves.  The commands in
# $(SBINDIR) are two-line wrappers, not symlinks, because a symlink would
# make the scripts look for those files in $(SBINDIR).  The environment file
# is an administrator's file: an existing one is kept, and uninstall removes
# it only if it is still the one installed.
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
LIBEXEC ?= $(PREFIX)/lib/sockops
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
ENVFILE := $(SYSCONFDIR)/default/sockops
INSTALL_OBJS := bpf_sockops.o bpf_redir.o bpf_sockopt.o
INSTALL_SCRIPTS := load.sh unload.sh status.sh trace_bpf_output.sh \
	trace_lo_traffic.sh
COMMANDS := load unload status

.PHONY: install uninstall
install: $(BPF_OBJS) sockops_stat
	$(call msg,INSTALL,$(DESTDIR)$(LIBEXEC))
	$(Q)install -d $(DESTDIR)$(LIBEXEC) $(DESTDIR)$(SBINDIR) \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/default
	$(Q)install -m 0644 $(addprefix $(OUTPUT)/,$(INSTALL_OBJS)) common.sh \
		$(DESTDIR)$(LIBEXEC)/
	$(Q)install -m 0755 $(INSTALL_SCRIPTS) sockops_stat $(DESTDIR)$(LIBEXEC)/
	$(Q)for c in $(COMMANDS); do \
		printf '#!/bin/sh\nexec %s/%s.sh "$$@"\n' '$(LIBEXEC)' $$c \
			> $(DESTDIR)$(SBINDIR)/sockops-$$c && \
		chmod 0755 $(DESTDIR)$(SBINDIR)/sockops-$$c || exit; \
	done
	$(Q)sed 's|@LIBEXEC@|$(LIBEXEC)|g; s|@ENVFILE@|$(ENVFILE)|g' \
		service/sockops.service.in > $(DESTDIR)$(UNITDIR)/sockops.service
	$(Q)chmod 0644 $(DESTDIR)$(UNITDIR)/sockops.service
	$(Q)if [ -e $(DESTDIR)$(ENVFILE) ]; then \
		cmp -s service/sockops.default $(DESTDIR)$(ENVFILE) || \
			echo "  kept   $(DESTDIR)$(ENVFILE) (changed locally)"; \
	else \
		install -m 0644 service/sockops.default $(DESTDIR)$(ENVFILE); \
	fi

uninstall:
	$(call msg,RM,$(DESTDIR)$(LIBEXEC))
	$(Q)rm -f $(addprefix $(DESTDIR)$(LIBEXEC)/,$(INSTALL_OBJS) common.sh \
		$(INSTALL_SCRIPTS) sockops_stat)
	$(Q)rmdir $(DESTDIR)$(LIBEXEC) 2>/dev/null || true
	$(Q)rm -f $(addprefix $(DESTDIR)$(SBINDIR)/sockops-,$(COMMANDS)) \
		$(DESTDIR)$(UNITDIR)/sockops.service
	$(Q)if cmp -s service/sockops.default $(DESTDIR)$(ENVFILE); then \
		rm -f $(DESTDIR)$(ENVFILE); \
	elif [ -e $(DESTDIR)$(ENVFILE) ]; then \
		echo "  kept   $(DESTDIR)$(ENVFILE) (changed locally)"; \
	fi
