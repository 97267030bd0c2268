# Holdfast: the two commands a user needs are `make demo` and `make test`.
# Both install their dependencies (apt, idempotent) and build first.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: deps build test unit e2e demo bench clean format

deps:
	bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

test: deps build
	cd $(BUILD) && ctest --output-on-failure -j 1 --timeout 900

unit: build
	cd $(BUILD) && ctest --output-on-failure -LE e2e

demo: deps build
	bash scripts/demo.sh

bench: deps build
	bash bench/run.sh

clean:
	rm -rf $(BUILD)

format:
	clang-format -i $$(git ls-files 'src/*.cc' 'src/*.h' 'test/*.cc' 'bench/*.cc')
