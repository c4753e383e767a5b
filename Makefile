# guardian: build, test, demo and benchmarks. See README.md.

BUILD   ?= build
CC      ?= cc
SAN     ?=
WARN    = -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wcast-qual -Wstrict-prototypes \
          -Wmissing-prototypes -Wformat=2
CFLAGS  ?= -O2 -g
# override: a CFLAGS given on the command line (make check) still gets these.
override CFLAGS += -std=c11 -D_GNU_SOURCE $(WARN) -MMD -MP $(shell pkg-config --cflags libmodbus libcjson 2>/dev/null) -I/usr/include/postgresql
ifeq ($(SAN),1)
override CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(TSAN),1)
override CFLAGS += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS += -fsanitize=thread
endif
LIBS    = -lzstd -lpaho-mqtt3as -lcrypto -lmbedtls -lmbedx509 -lmbedcrypto -lcjson -lmodbus -lserialport -lseccomp -lpthread -lm
# The TPM 2.0 (tpm/): tpm2-tss's ESAPI, marshalling, error texts and TCTI loader.
TSS_LIBS = $(shell pkg-config --libs tss2-esys tss2-mu tss2-rc tss2-tctildr 2>/dev/null)
LIBS    += $(TSS_LIBS)
# guardian-service's store (service/store_*.c): SQLite and libpq; the device links neither.
SERVICE_LIBS = -lsqlite3 -lpq

# Quiet: one line per file made ("  CC    guardian/main.c"); V=1 shows every command as it runs.
V ?= 0
ifeq ($(V),1)
Q :=
quiet =
else
Q := @
quiet = printf '  %-5s %s\n' '$(1)' '$(2)';
endif

# Hardening: stack protector, fortified libc calls, position-independent executables, read-only
# relocations bound at start.
HARDEN  = -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE
override CFLAGS += $(HARDEN)
LDFLAGS += -pie -Wl,-z,relro,-z,now

# One archive per folder. A folder may use only what LAYER_<folder> names, and its archive is
# checked against that (tools/layering.sh, run before anything links): a wrong dependency fails
# the build. `make layering` prints the graph.
LAYERS          = base proto tpm adapters policy uplink guardian launch service tools
LAYER_base      =
LAYER_proto     = base
LAYER_tpm       = proto base
LAYER_adapters  = base
LAYER_policy    = base
LAYER_uplink    = proto base
LAYER_guardian  = uplink adapters policy tpm proto base
LAYER_launch    = tpm proto base
LAYER_service   = proto base
LAYER_tools     = base
# Where each folder's sources are; main.c files are programs, not part of an archive.
SRC_tools       = tools/lib
layer_src       = $(filter-out %/main.c,$(wildcard $(or $(SRC_$(1)),$(1))/*.c))
layer_lib       = $(BUILD)/lib$(1).a
# An archive and what it may use, in link order.
link_libs       = $(foreach l,$(1) $(LAYER_$(1)),$(call layer_lib,$(l)))

HARN_SRC  = $(wildcard tests/harness/*.c)
HARN_OBJ  = $(HARN_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC  = $(wildcard tests/unit/*.c)
INTEG_SRC = $(wildcard tests/integration/*.c)
BENCH_SRC = $(wildcard bench/*.c)
TOOLS     = $(patsubst tools/%.c,$(BUILD)/%,$(wildcard tools/*.c))
BENCHES   = $(patsubst bench/%.c,$(BUILD)/%,$(BENCH_SRC))

all: $(BUILD)/guardian $(BUILD)/guardian-service $(BUILD)/guardian-launch $(TOOLS)
tests: $(BUILD)/test-unit $(BUILD)/test-integration $(BUILD)/launch-probe $(BUILD)/guardian-liar \
	$(BUILD)/fleetsim $(BUILD)/guardian-probe
.PHONY: all tests deps test test-run check tsan demo bench fuzz fuzz-replay clean format \
	format-check layering hardening-check lint

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(Q)$(call quiet,CC,$<)$(CC) $(CFLAGS) -c $< -o $@

define layer_rule
$(call layer_lib,$(1)): $(patsubst %.c,$(BUILD)/obj/%.o,$(call layer_src,$(1)))
	@mkdir -p $(BUILD)
	@rm -f $$@
	$$(Q)$$(call quiet,AR,$$@)ar rcs $$@ $$^
endef
$(foreach l,$(LAYERS),$(eval $(call layer_rule,$(l))))

ALL_LIBS = $(foreach l,$(LAYERS),$(call layer_lib,$(l)))
LAYER_GRAPH = $(foreach l,$(LAYERS),$(l):$(subst $(eval) ,$(comma),$(strip $(LAYER_$(l)))))
comma := ,

# The check every link waits for: no archive uses a symbol or a header of a folder it may not.
$(BUILD)/layering.ok: $(ALL_LIBS) tools/layering.sh Makefile
	@sh tools/layering.sh $(BUILD) $(LAYER_GRAPH)
	@touch $@

layering: $(ALL_LIBS)
	@sh tools/layering.sh --print $(BUILD) $(LAYER_GRAPH)

# The static checks CI runs: format, layering (and that its check refuses what it should), hardening.
lint: format-check layering hardening-check
	@sh tests/scripts/layering-selftest.sh
	@sh tests/scripts/systemd-security.sh

# The programs a box runs carry the hardening flags (tools/hardening-check.sh says which is missing).
hardening-check: $(BUILD)/guardian $(BUILD)/guardian-service $(BUILD)/guardian-launch
	@sh tools/hardening-check.sh $^

$(BUILD)/guardian: $(BUILD)/obj/guardian/main.o $(call link_libs,guardian) | $(BUILD)/layering.ok
	$(Q)$(call quiet,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The measured launch and TPM broker (launch/): guardian's parent when attestation.tpm is set.
$(BUILD)/guardian-launch: $(BUILD)/obj/launch/main.o $(call link_libs,launch) | $(BUILD)/layering.ok
	$(Q)$(call quiet,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ $(TSS_LIBS) -lseccomp -lmbedx509 -lmbedcrypto -lcjson -lpthread -lm

# The reference attestation service: its own files, the protocol and the base.
$(BUILD)/guardian-service: $(BUILD)/obj/service/main.o $(call link_libs,service) | $(BUILD)/layering.ok
	$(Q)$(call quiet,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ -lpaho-mqtt3as -lcrypto -lmbedtls -lmbedx509 -lmbedcrypto -lcjson $(SERVICE_LIBS) -lpthread -lm

# The simulators and tools: what they share (tools/lib/) and the base, never the device.
$(BUILD)/%: $(BUILD)/obj/tools/%.o $(call link_libs,tools) | $(BUILD)/layering.ok
	$(Q)$(call quiet,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# Unit tests reach every folder's code.
EVERY_LIB = $(call layer_lib,service) $(call layer_lib,launch) $(call link_libs,guardian) \
	$(call layer_lib,tools)

# Unit tests may start a part (swtpm) through the harness.
$(BUILD)/test-unit: $(UNIT_SRC:%.c=$(BUILD)/obj/%.o) $(HARN_OBJ) $(EVERY_LIB)
	$(Q)$(call quiet,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ -lcriterion $(LIBS) $(SERVICE_LIBS)

# Integration tests drive real processes; they link only the harness.
$(BUILD)/test-integration: $(INTEG_SRC:%.c=$(BUILD)/obj/%.o) $(HARN_OBJ)
	$(Q)$(call quiet,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ -lcriterion -lcjson -lpthread -lm

# What tests/integration/test_launch.c starts under guardian-launch instead of guardian.
$(BUILD)/launch-probe: $(BUILD)/obj/tests/helpers/launch_probe.o $(call link_libs,tpm)
	$(Q)$(call quiet,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The fleet load generator: simulated devices attesting over MQTT against real guardian-service
# instances (tests/integration/test_fleet.c, bench/bench_fleet.c). Never installed.
# What their simulated devices' evidence holds (tests/helpers/sim_evidence.c): fleetsim and the
# attestation benchmarks share it.
SIM_OBJ = $(BUILD)/obj/tests/helpers/sim_evidence.o
$(BUILD)/fleetsim: $(BUILD)/obj/tests/helpers/fleetsim.o $(SIM_OBJ) $(call link_libs,proto)
	$(Q)$(call quiet,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ -lpaho-mqtt3as -lcrypto -lmbedtls -lmbedx509 -lmbedcrypto -lcjson -lpthread -lm

# A guardian that reports the digest of another binary as its own (GUARDIAN_TEST_LIAR in
# guardian/attest_tpm.c): the attack the TPM stops, for tests/integration/test_attest_tpm.c only.
# Never installed.
$(BUILD)/obj/guardian/attest_tpm_liar.o: guardian/attest_tpm.c
	@mkdir -p $(dir $@)
	$(Q)$(call quiet,CC,$<)$(CC) $(CFLAGS) -DGUARDIAN_TEST_LIAR -c $< -o $@

$(BUILD)/guardian-liar: $(BUILD)/obj/guardian/main.o $(BUILD)/obj/guardian/attest_tpm_liar.o \
		$(call link_libs,guardian) | $(BUILD)/layering.ok
	$(Q)$(call quiet,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# A guardian whose adapter children try, right after entering their sandbox, what a compromised
# adapter would (GUARDIAN_TEST_PROBE in guardian/adapter_child.c): for
# tests/integration/test_compartments.c only. Never installed.
$(BUILD)/obj/guardian/adapter_child_probe.o: guardian/adapter_child.c
	@mkdir -p $(dir $@)
	$(Q)$(call quiet,CC,$<)$(CC) $(CFLAGS) -DGUARDIAN_TEST_PROBE -c $< -o $@

# The uplink's child probes too (guardian/uplink_child.c; tests/integration/test_compartments_uplink.c).
$(BUILD)/obj/guardian/uplink_child_probe.o: guardian/uplink_child.c
	@mkdir -p $(dir $@)
	$(Q)$(call quiet,CC,$<)$(CC) $(CFLAGS) -DGUARDIAN_TEST_PROBE -c $< -o $@

$(BUILD)/guardian-probe: $(BUILD)/obj/guardian/main.o $(BUILD)/obj/guardian/adapter_child_probe.o \
		$(BUILD)/obj/guardian/uplink_child_probe.o \
		$(call link_libs,guardian) | $(BUILD)/layering.ok
	$(Q)$(call quiet,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# bench_attest makes TPM evidence as tests/unit/fake_quote.h does (the service's cost is the same).
$(BUILD)/bench_attest: $(BUILD)/obj/tests/unit/fake_quote.o $(SIM_OBJ)
$(BUILD)/bench_store_attest: $(SIM_OBJ)
# bench_fleet runs build/fleetsim's simulated devices against real guardian-service instances.
$(BUILD)/bench_fleet: | $(BUILD)/fleetsim

# The objects first, then the archives: a bench's own extra objects (above) use them too.
$(BUILD)/bench_%: $(BUILD)/obj/bench/bench_%.o $(HARN_OBJ) $(EVERY_LIB)
	$(Q)$(call quiet,LD,$@)$(CC) $(LDFLAGS) -o $@ $(filter-out %.a,$^) $(filter %.a,$^) $(LIBS) $(SERVICE_LIBS)

# Installs the Debian packages that are missing (needs root or sudo).
deps:
	@sh tools/install-deps.sh

# Runs every test; non-zero exit on any failure.
test: deps
	@$(MAKE) --no-print-directory test-run

test-run: all tests
	$(BUILD)/test-unit --jobs 2
	GUARDIAN_BUILD=$(abspath $(BUILD)) $(BUILD)/test-integration --jobs 1

# The tests built with AddressSanitizer and UndefinedBehaviorSanitizer.
# tests/lsan.supp names the one library whose leaks at exit are not reported, and why.
check: deps
	@LSAN_OPTIONS="suppressions=$(abspath tests/lsan.supp) print_suppressions=0" \
		$(MAKE) --no-print-directory BUILD=build/san SAN=1 CFLAGS="-O1 -g" test-run

# The threads under ThreadSanitizer: the integration suites that reload the policy (SIGHUP) while
# the console, telemetry and commands use it, and that send commands and writes. A report in any
# child's log fails the test (h_cleanup). tests/tsan.supp names what is suppressed, and why: only
# libraries that are not instrumented, never guardian's own code.
TSAN_SUITES = reload order commands writes compartments compartments_uplink
# The test runner itself is built without: Criterion cannot map its arena under ThreadSanitizer.
tsan: deps
	@$(MAKE) --no-print-directory BUILD=build/tsan TSAN=1 CFLAGS="-O1 -g" all
	@$(MAKE) --no-print-directory BUILD=build/tsan/runner build/tsan/runner/test-integration
	@for s in $(TSAN_SUITES); do \
		echo "== $$s/* under ThreadSanitizer"; \
		TSAN_OPTIONS="suppressions=$(abspath tests/tsan.supp) second_deadlock_stack=1" \
		GUARDIAN_BUILD=$(abspath build/tsan) build/tsan/runner/test-integration --jobs 1 \
			--filter "$$s/*" || exit 1; \
	done

# exec: the demo is make's child itself, so its own Ctrl-C handling (a clean stop, exit 0) is
# what make sees; a shell between them would die of the SIGINT and make would say "Interrupt".
demo: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(abspath $(BUILD)) exec sh tools/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all $(BENCHES)
	@BUILD=$(abspath $(BUILD)) sh bench/run.sh

# libFuzzer targets (clang), each run for FUZZ_SECONDS on its committed corpus; new
# inputs go to build/fuzz-corpus, crashes to build/ (crash-*), which fails the target.
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS = -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
              $(shell pkg-config --cflags libcjson)
FUZZ_CORE = $(filter-out base/serial.c base/sandbox.c,$(call layer_src,base))

$(BUILD)/fuzz_policy: fuzz/fuzz_policy.c policy/policy.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lm

$(BUILD)/fuzz_framer: fuzz/fuzz_framer.c adapters/framer.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lm

$(BUILD)/fuzz_slcan: fuzz/fuzz_slcan.c adapters/canbus.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lm

$(BUILD)/fuzz_console: fuzz/fuzz_console.c guardian/console.c guardian/console_commands.c \
		guardian/console_output.c guardian/console_pin.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lmbedcrypto -lm

$(BUILD)/fuzz_evidence: fuzz/fuzz_evidence.c $(filter-out proto/mqtt_tls.c,$(call layer_src,proto)) \
		$(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lmbedx509 -lmbedcrypto -lm

$(BUILD)/fuzz_attest_result: fuzz/fuzz_attest_result.c $(filter-out proto/mqtt_tls.c,$(call layer_src,proto)) \
		$(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lmbedx509 -lmbedcrypto -lm

$(BUILD)/fuzz_command: fuzz/fuzz_command.c guardian/command_doc.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lm

$(BUILD)/fuzz_modbus_response: fuzz/fuzz_modbus_response.c adapters/modbus_wire.c adapters/framer.c \
		$(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lm

$(BUILD)/fuzz_bundle: fuzz/fuzz_bundle.c $(filter-out proto/mqtt_tls.c,$(call layer_src,proto)) \
		$(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lmbedx509 -lmbedcrypto -lm

$(BUILD)/fuzz_tpm_quote: fuzz/fuzz_tpm_quote.c proto/tpm_quote.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lmbedcrypto -lm

FUZZERS = policy framer slcan console evidence attest_result command modbus_response bundle \
	tpm_quote

fuzz: deps
	@sh tools/install-deps.sh clang libclang-rt-14-dev
	@$(MAKE) --no-print-directory $(FUZZERS:%=$(BUILD)/fuzz_%)
	@for f in $(FUZZERS); do \
		mkdir -p $(BUILD)/fuzz-corpus/$$f fuzz/corpus/$$f; \
		echo "== fuzz_$$f for $(FUZZ_SECONDS) s"; \
		$(BUILD)/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -detect_leaks=1 \
			-artifact_prefix=$(BUILD)/ $(BUILD)/fuzz-corpus/$$f fuzz/corpus/$$f || exit 1; \
	done

# Every committed corpus through its target once, no new fuzzing: what fuzzing found stays fixed.
fuzz-replay: deps
	@sh tools/install-deps.sh clang libclang-rt-14-dev
	@$(MAKE) --no-print-directory $(FUZZERS:%=$(BUILD)/fuzz_%)
	@for f in $(FUZZERS); do \
		echo "== fuzz_$$f: replaying $$(ls fuzz/corpus/$$f | wc -l) inputs"; \
		$(BUILD)/fuzz_$$f -runs=0 -detect_leaks=1 -artifact_prefix=$(BUILD)/ fuzz/corpus/$$f \
			>$(BUILD)/fuzz_$$f.replay.log 2>&1 || { tail -40 $(BUILD)/fuzz_$$f.replay.log; exit 1; }; \
	done

# Installing (README "Deploying on a real box"). The device's side and the service's side apart,
# as the two Debian packages hold them; DESTDIR for staging, no chown (works as any user). The
# units name the installed programs: /usr/bin/ and /usr/share/ in deploy/*.service become $(bindir)/
# and $(datarootdir)/. The config and state stay /etc/guardian and /var/lib/guardian whatever
# the prefix: the units and the programs' defaults name them.
PREFIX         ?= /usr/local
bindir         ?= $(PREFIX)/bin
datarootdir    ?= $(PREFIX)/share
mandir         ?= $(datarootdir)/man
sysconfdir     ?= /etc
systemdunitdir ?= $(PREFIX)/lib/systemd/system
INSTALL        ?= install
install_unit = sed -e 's|/usr/bin/|$(bindir)/|g' -e 's|/usr/share/|$(datarootdir)/|g' $(1) \
	>$(DESTDIR)$(systemdunitdir)/$(notdir $(1)).tmp && \
	chmod 0644 $(DESTDIR)$(systemdunitdir)/$(notdir $(1)).tmp && \
	mv -f $(DESTDIR)$(systemdunitdir)/$(notdir $(1)).tmp $(DESTDIR)$(systemdunitdir)/$(notdir $(1))
EXAMPLES = $(shell find configs/examples -type f 2>/dev/null | sort)
.PHONY: install install-guardian install-service uninstall deb deb-test

install: install-guardian install-service

# guardian, guardian-launch when it is built, the unit, guardian(8), the examples, the README.
install-guardian: all
	$(INSTALL) -d $(DESTDIR)$(bindir) $(DESTDIR)$(systemdunitdir) $(DESTDIR)$(mandir)/man8 \
		$(DESTDIR)$(sysconfdir)/guardian/examples $(DESTDIR)$(datarootdir)/doc/guardian
	$(INSTALL) -m 0755 $(BUILD)/guardian $(DESTDIR)$(bindir)/guardian
	if [ -f $(BUILD)/guardian-launch ]; then \
		$(INSTALL) -m 0755 $(BUILD)/guardian-launch $(DESTDIR)$(bindir)/guardian-launch && \
		$(INSTALL) -m 0644 docs/man/guardian-launch.8 $(DESTDIR)$(mandir)/man8/guardian-launch.8; fi
	$(call install_unit,deploy/guardian.service)
	$(INSTALL) -d $(DESTDIR)$(datarootdir)/doc/guardian/examples/guardian.service.d
	sed -e 's|/usr/bin/guardian|$(bindir)/guardian|g' -e 's|/usr/share/|$(datarootdir)/|g' \
		deploy/guardian-tpm.conf >$(DESTDIR)$(datarootdir)/doc/guardian/examples/guardian.service.d/tpm.conf
	chmod 0644 $(DESTDIR)$(datarootdir)/doc/guardian/examples/guardian.service.d/tpm.conf
	$(INSTALL) -m 0644 deploy/guardian-users.conf \
		$(DESTDIR)$(datarootdir)/doc/guardian/examples/guardian.service.d/users.conf
	$(INSTALL) -m 0644 docs/man/guardian.8 $(DESTDIR)$(mandir)/man8/guardian.8
	$(INSTALL) -m 0644 README.md $(DESTDIR)$(datarootdir)/doc/guardian/README.md
	@for f in $(EXAMPLES); do \
		rel=$${f#configs/examples/}; \
		echo "$(INSTALL) -D -m 0644 $$f $(DESTDIR)$(sysconfdir)/guardian/examples/$$rel"; \
		$(INSTALL) -D -m 0644 $$f $(DESTDIR)$(sysconfdir)/guardian/examples/$$rel || exit 1; \
	done

# guardian-service, gd-view (telemetry as readable lines), the unit, their man pages, PROTOCOL.md.
install-service: all
	$(INSTALL) -d $(DESTDIR)$(bindir) $(DESTDIR)$(systemdunitdir) $(DESTDIR)$(mandir)/man8 \
		$(DESTDIR)$(mandir)/man1 $(DESTDIR)$(datarootdir)/doc/guardian-service
	$(INSTALL) -m 0755 $(BUILD)/guardian-service $(DESTDIR)$(bindir)/guardian-service
	$(INSTALL) -m 0755 $(BUILD)/gd-view $(DESTDIR)$(bindir)/gd-view
	$(call install_unit,deploy/guardian-service.service)
	$(INSTALL) -m 0644 docs/man/guardian-service.8 $(DESTDIR)$(mandir)/man8/guardian-service.8
	$(INSTALL) -m 0644 docs/man/gd-view.1 $(DESTDIR)$(mandir)/man1/gd-view.1
	$(INSTALL) -m 0644 service/PROTOCOL.md \
		$(DESTDIR)$(datarootdir)/doc/guardian-service/PROTOCOL.md

# What install put there, with the same variables. /etc/guardian keeps what is not ours (site.json).
uninstall:
	rm -f $(DESTDIR)$(bindir)/guardian $(DESTDIR)$(bindir)/guardian-launch \
		$(DESTDIR)$(bindir)/guardian-service $(DESTDIR)$(bindir)/gd-view \
		$(DESTDIR)$(systemdunitdir)/guardian.service \
		$(DESTDIR)$(systemdunitdir)/guardian-service.service \
		$(DESTDIR)$(mandir)/man8/guardian.8 $(DESTDIR)$(mandir)/man8/guardian-service.8 \
		$(DESTDIR)$(mandir)/man8/guardian-launch.8 $(DESTDIR)$(mandir)/man1/gd-view.1
	rm -rf $(DESTDIR)$(sysconfdir)/guardian/examples $(DESTDIR)$(datarootdir)/doc/guardian \
		$(DESTDIR)$(datarootdir)/doc/guardian-service
	rmdir $(DESTDIR)$(sysconfdir)/guardian 2>/dev/null || true

# The Debian packages guardian and guardian-service (tools/deb.sh), in $(BUILD)/deb/.
deb: all
	@rm -rf $(BUILD)/deb
	@$(MAKE) --no-print-directory -s install-guardian PREFIX=/usr systemdunitdir=/lib/systemd/system \
		DESTDIR=$(abspath $(BUILD))/deb/guardian >/dev/null
	@$(MAKE) --no-print-directory -s install-service PREFIX=/usr systemdunitdir=/lib/systemd/system \
		DESTDIR=$(abspath $(BUILD))/deb/guardian-service >/dev/null
	@sh tools/deb.sh $(BUILD)/deb

# Installs the packages on this machine, checks them, purges them (root or sudo; skips without).
deb-test: deb
	@sh tests/scripts/deb-test.sh $(BUILD)/deb

FORMAT_SRC = $(wildcard */*.c */*.h tools/lib/*.c tools/lib/*.h tests/*/*.c tests/*/*.h)
format:
	clang-format -i $(FORMAT_SRC)

# Fails, naming the files, when any source is not as clang-format (.clang-format) would write it.
format-check:
	@sh tools/install-deps.sh clang-format
	@clang-format --dry-run -Werror $(FORMAT_SRC)

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' -type f 2>/dev/null)
