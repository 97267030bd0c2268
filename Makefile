# Holdfast: the two commands a user needs are `make demo` and `make test`.
# Both install their dependencies (apt, idempotent) and build first.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: deps build test unit e2e demo bench clean format fuzz fuzz-build sanitize-build

deps:
	bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# The end-to-end files mostly wait (on timeouts, restarts, back-off): one
# uses a fifth of a core. Three at a time on two cores; the sanitizer files
# (the longest) start first. Each running file holds a slot of
# test/ctest_resources.json's "ports", which gives it a port range of its
# own (test/e2e/harness.py).
TEST_JOBS ?= 3
test: deps build fuzz-build sanitize-build
	cd $(BUILD) && ctest --output-on-failure -j $(TEST_JOBS) --resource-spec-file $(CURDIR)/test/ctest_resources.json --timeout 900

unit: build
	cd $(BUILD) && ctest --output-on-failure -LE 'e2e|fuzz'

# libFuzzer targets (fuzz/): FUZZ_SECONDS per target, all targets unless
# FUZZ_TARGETS names some. `make test` replays their corpora and runs them for
# a fixed number of runs instead.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
# Built in $(BUILD)/fuzz with clang (CTest's fuzz.build does the same when
# needed; building it here keeps `make test`'s own time for the tests).
fuzz-build:
	FUZZ_BUILD=$(abspath $(BUILD))/fuzz bash fuzz/fuzz.sh build

# The ASan + UBSan binary for the sanitizer run (README, Tests) in
# $(BUILD)/sanitize; CTest's sanitize.build does the same when needed.
sanitize-build:
	cmake -DSRC=$(CURDIR) -DOUT=$(abspath $(BUILD))/sanitize -P cmake/sanitize_build.cmake

fuzz: deps fuzz-build
	FUZZ_BUILD=$(abspath $(BUILD))/fuzz bash fuzz/fuzz.sh run $(FUZZ_SECONDS) $(FUZZ_TARGETS)

demo: deps build
	bash scripts/demo.sh

bench: deps build
	bash bench/run.sh

clean:
	rm -rf $(BUILD)

format:
	clang-format -i $$(git ls-files 'src/*.cc' 'src/*.h' 'test/*.cc' 'bench/*.cc')
