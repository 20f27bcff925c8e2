# A thin layer over CMake: the two commands of the README.
#   make run   set up, build (release) and run the demo workflow with `weft run`
#   make test  set up, build with AddressSanitizer + UBSan and run every test
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

run: build
	$(BUILD)/weft run --base-dir $(BASE_DIR) workflows/invert.ui.json

test: setup
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DWEFT_ASAN=ON $(WERROR) >/dev/null
	@cmake --build $(TEST_BUILD) -j$(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure -j$(JOBS)

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
