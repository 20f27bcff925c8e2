# A thin layer over CMake: the two commands of the README.
#   make run   set up, build (release), write the demo checkpoint once and start `weft serve`
#              on 127.0.0.1:8188
#   make test  set up, build with AddressSanitizer + UBSan and run every test (C unit tests,
#              then the end-to-end tests of `weft serve` in tests/e2e with node --test)
BUILD      ?= build
TEST_BUILD ?= build-asan
BASE_DIR   ?= weft-data
JOBS       ?= $(shell nproc)
# -Werror where CI runs (CI=true); warnings stay warnings on a developer's machine.
WERROR     := $(if $(CI),-DWEFT_WERROR=ON,)

.PHONY: run test build setup clean

setup:
	@scripts/bootstrap

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# The first run writes the random tiny demo checkpoint (it draws noise; real checkpoints go in
# $(BASE_DIR)/models/checkpoints/), so the standard txt2img workflow runs out of the box.
run: build
	@$(BUILD)/weft demo-model --base-dir $(BASE_DIR) >/dev/null
	$(BUILD)/weft serve --base-dir $(BASE_DIR)

test: setup
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DWEFT_ASAN=ON $(WERROR) >/dev/null
	@cmake --build $(TEST_BUILD) -j$(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure -j$(JOBS)
	@# One test file at a time where node supports it (older node runs files in parallel).
	cd tests/e2e && npm ci --no-audit --no-fund --silent && \
		flags=$$(node --test-concurrency=1 -e 0 >/dev/null 2>&1 && echo --test-concurrency=1); \
		WEFT_BIN=$(CURDIR)/$(TEST_BUILD)/weft node --test $$flags

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
