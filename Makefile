# Thin front end to CMake.
#   make          build build/grok
#   make run      install what is missing (Debian/Ubuntu), build, chat with grok-nano
#   make test     unit + end-to-end tests (ctest)
#   make asan     the same tests built with AddressSanitizer + UBSan
#   make fuzz     build the libFuzzer targets and run each briefly
#   make check    all of the above (what CI runs)
BUILD ?= build
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 30

.PHONY: all run test asan fuzz check clean
all:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The first command after cloning: the Debian/Ubuntu packages for building and
# for the tests (apt, only when one is missing, so that `make check` works
# next), the build, then `grok chat` with the bundled model. ARGS="..." passes
# options to grok chat; by default a low temperature, since the small bundled
# model answers much better near-greedy than at grok chat's default 0.8.
ARGS ?= --temp 0.2
run:
	@bash scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	./$(BUILD)/grok chat $(ARGS)

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan:
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DGROK_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

fuzz:
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DGROK_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzzers
	bash scripts/fuzz-smoke.sh build-fuzz $(FUZZ_SECONDS)

check: test asan fuzz

clean:
	rm -rf $(BUILD) build-asan build-fuzz
