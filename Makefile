# A thin layer over CMake: the two commands of the README.
#   make run   set up, build (release) and the editor (frontend/dist), write the demo
#              checkpoint once and start `weft serve` on 127.0.0.1:8188
#   make test  set up, build with AddressSanitizer + UBSan and run every test (C unit tests,
#              the end-to-end tests of `weft serve` in tests/e2e with node --test, then the
#              editor's unit tests and its browser tests in headless Chromium)
BUILD      ?= build
TEST_BUILD ?= build-asan
BASE_DIR   ?= weft-data
JOBS       ?= $(shell nproc)
# -Werror where CI runs (CI=true); warnings stay warnings on a developer's machine.
WERROR     := $(if $(CI),-DWEFT_WERROR=ON,)

.PHONY: run test build setup clean frontend

setup:
	@scripts/bootstrap

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)
	@$(MAKE) --no-print-directory frontend

# The editor: npm packages from the committed lockfile, bundled by esbuild into frontend/dist.
frontend:
	@cd frontend && npm ci --no-audit --no-fund --silent && npm run --silent build

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
	@$(MAKE) --no-print-directory frontend
	cd frontend && npm run --silent test:unit
	cd frontend && WEFT_BIN=$(CURDIR)/$(TEST_BUILD)/weft npm run --silent test:browser

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
