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
LIBS    = -lpaho-mqtt3as -lmbedtls -lmbedx509 -lmbedcrypto -lcjson -lmodbus -lserialport -lpthread -lm

CORE_SRC  = $(wildcard base/*.c) $(filter-out guardian/main.c,$(wildcard guardian/*.c)) $(wildcard adapters/*.c) \
            $(wildcard policy/*.c) $(wildcard uplink/*.c)
CORE_OBJ  = $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
HARN_SRC  = $(wildcard tests/harness/*.c)
HARN_OBJ  = $(HARN_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC  = $(wildcard tests/unit/*.c)
INTEG_SRC = $(wildcard tests/integration/*.c)
BENCH_SRC = $(wildcard bench/*.c)
TOOLS     = $(patsubst tools/%.c,$(BUILD)/%,$(wildcard tools/*.c))
BENCHES   = $(patsubst bench/%.c,$(BUILD)/%,$(BENCH_SRC))

SERVICE_SRC = $(wildcard service/*.c)

all: $(BUILD)/guardian $(BUILD)/guardian-service $(TOOLS)
tests: $(BUILD)/test-unit $(BUILD)/test-integration
.PHONY: all tests deps test test-run check tsan demo bench fuzz fuzz-replay clean format

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libguardian.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/guardian: $(BUILD)/obj/guardian/main.o $(BUILD)/libguardian.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The reference attestation service: its own files, and the shared evidence code.
$(BUILD)/guardian-service: $(SERVICE_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/libguardian.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# What the simulators share (tools/lib/), linked into each tool.
TOOLS_LIB = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tools/lib/*.c))

$(BUILD)/%: $(BUILD)/obj/tools/%.o $(TOOLS_LIB) $(BUILD)/libguardian.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# Unit tests also reach the service's code (all of service/ but its main.c).
SERVICE_LIB = $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out service/main.c,$(SERVICE_SRC)))

$(BUILD)/test-unit: $(UNIT_SRC:%.c=$(BUILD)/obj/%.o) $(SERVICE_LIB) $(BUILD)/libguardian.a
	$(CC) $(LDFLAGS) -o $@ $^ -lcriterion $(LIBS)

# Integration tests drive real processes; they link only the harness.
$(BUILD)/test-integration: $(INTEG_SRC:%.c=$(BUILD)/obj/%.o) $(HARN_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ -lcriterion -lcjson -lpthread -lm

$(BUILD)/bench_%: $(BUILD)/obj/bench/bench_%.o $(HARN_OBJ) $(SERVICE_LIB) $(BUILD)/libguardian.a
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
check: deps
	@$(MAKE) --no-print-directory BUILD=build/san SAN=1 CFLAGS="-O1 -g" test-run

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
FUZZ_CORE = base/json.c guardian/conf.c guardian/log.c guardian/errors.c guardian/file.c guardian/clock.c \
            guardian/text.c

$(BUILD)/fuzz_policy: fuzz/fuzz_policy.c policy/policy.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lm

$(BUILD)/fuzz_framer: fuzz/fuzz_framer.c adapters/framer.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lm

$(BUILD)/fuzz_slcan: fuzz/fuzz_slcan.c adapters/canbus.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lm

$(BUILD)/fuzz_console: fuzz/fuzz_console.c guardian/console.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lmbedcrypto -lm

$(BUILD)/fuzz_evidence: fuzz/fuzz_evidence.c uplink/evidence.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lmbedx509 -lmbedcrypto -lm

$(BUILD)/fuzz_attest_result: fuzz/fuzz_attest_result.c uplink/evidence.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lmbedx509 -lmbedcrypto -lm

$(BUILD)/fuzz_command: fuzz/fuzz_command.c guardian/command_doc.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcjson -lm

$(BUILD)/fuzz_modbus_response: fuzz/fuzz_modbus_response.c adapters/modbus_wire.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^

FUZZERS = policy framer slcan console evidence attest_result command modbus_response

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

format:
	clang-format -i $(wildcard */*.c */*.h tests/*/*.c tests/*/*.h)

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
