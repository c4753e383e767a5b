# guardian: build, test, demo and benchmarks. See README.md.

BUILD   ?= build
CC      ?= cc
SAN     ?=
WARN    = -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wcast-qual -Wstrict-prototypes \
          -Wmissing-prototypes -Wformat=2
CFLAGS  ?= -O2 -g
# override: a CFLAGS given on the command line (make check) still gets these.
override CFLAGS += -std=c11 -D_GNU_SOURCE $(WARN) -MMD -MP $(shell pkg-config --cflags libmodbus libcjson 2>/dev/null)
ifeq ($(SAN),1)
override CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(TSAN),1)
override CFLAGS += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS += -fsanitize=thread
endif
LIBS    = -lzstd -lpaho-mqtt3as -lcrypto -lmbedtls -lmbedx509 -lmbedcrypto -lcjson -lmodbus -lserialport -lpthread -lm

# Hardening: stack protector, fortified libc calls, position-independent executables, read-only
# relocations bound at start.
HARDEN  = -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE
override CFLAGS += $(HARDEN)
LDFLAGS += -pie -Wl,-z,relro,-z,now

# One archive per folder. A folder may use only what LAYER_<folder> names, and its archive is
# checked against that (tools/layering.sh, run before anything links): a wrong dependency fails
# the build. `make layering` prints the graph.
LAYERS          = base proto adapters policy uplink guardian service tools
LAYER_base      =
LAYER_proto     = base
LAYER_adapters  = base
LAYER_policy    = base
LAYER_uplink    = proto base
LAYER_guardian  = uplink adapters policy proto base
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

all: $(BUILD)/guardian $(BUILD)/guardian-service $(TOOLS)
tests: $(BUILD)/test-unit $(BUILD)/test-integration
.PHONY: all tests deps test test-run check tsan demo bench fuzz fuzz-replay clean format \
	format-check layering hardening-check lint

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

define layer_rule
$(call layer_lib,$(1)): $(patsubst %.c,$(BUILD)/obj/%.o,$(call layer_src,$(1)))
	@mkdir -p $(BUILD)
	@rm -f $$@
	ar rcs $$@ $$^
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
hardening-check: $(BUILD)/guardian $(BUILD)/guardian-service
	@sh tools/hardening-check.sh $^

$(BUILD)/guardian: $(BUILD)/obj/guardian/main.o $(call link_libs,guardian) | $(BUILD)/layering.ok
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The reference attestation service: its own files, the protocol and the base.
$(BUILD)/guardian-service: $(BUILD)/obj/service/main.o $(call link_libs,service) | $(BUILD)/layering.ok
	$(CC) $(LDFLAGS) -o $@ $^ -lpaho-mqtt3as -lcrypto -lmbedtls -lmbedx509 -lmbedcrypto -lcjson -lpthread -lm

# The simulators and tools: what they share (tools/lib/) and the base, never the device.
$(BUILD)/%: $(BUILD)/obj/tools/%.o $(call link_libs,tools) | $(BUILD)/layering.ok
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# Unit tests reach every folder's code.
EVERY_LIB = $(call layer_lib,service) $(call link_libs,guardian) $(call layer_lib,tools)

$(BUILD)/test-unit: $(UNIT_SRC:%.c=$(BUILD)/obj/%.o) $(EVERY_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ -lcriterion $(LIBS)

# Integration tests drive real processes; they link only the harness.
$(BUILD)/test-integration: $(INTEG_SRC:%.c=$(BUILD)/obj/%.o) $(HARN_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ -lcriterion -lcjson -lpthread -lm

$(BUILD)/bench_%: $(BUILD)/obj/bench/bench_%.o $(HARN_OBJ) $(EVERY_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

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
TSAN_SUITES = reload order commands writes
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

demo: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(abspath $(BUILD)) sh tools/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all $(BENCHES)
	@BUILD=$(abspath $(BUILD)) sh bench/run.sh

# libFuzzer targets (clang), each run for FUZZ_SECONDS on its committed corpus; new
# inputs go to build/fuzz-corpus, crashes to build/ (crash-*), which fails the target.
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS = -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
              $(shell pkg-config --cflags libcjson)
FUZZ_CORE = $(filter-out base/serial.c,$(call layer_src,base))

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

FUZZERS = policy framer slcan console evidence attest_result command modbus_response bundle

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

FORMAT_SRC = $(wildcard */*.c */*.h tools/lib/*.c tools/lib/*.h tests/*/*.c tests/*/*.h)
format:
	clang-format -i $(FORMAT_SRC)

# Fails, naming the files, when any source is not as clang-format (.clang-format) would write it.
format-check:
	@sh tools/install-deps.sh clang-format
	@clang-format --dry-run -Werror $(FORMAT_SRC)

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
