# sandboxd: `make run` serves on port 8000 with ./sandbox-root as the root; `make test` runs every test.
# Both install what they need (apt and pip packages) when it is missing.

SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTHON ?= python3
PORT ?= 8000
ROOT ?= $(CURDIR)/sandbox-root
APT_BUILD := libmicrohttpd-dev
APT_TEST := shellcheck wrk curl procps

.PHONY: run build release deps deps-test test test-swift test-e2e test-container lint format protos symbol-order bench bench-smoke clean

run: deps release
	.build/release/sandboxd --port $(PORT) --root $(ROOT)

build: deps
	swift build

release: deps
	swift build -c release

deps:
	@dpkg -s $(APT_BUILD) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_BUILD); }

deps-test: deps
	@dpkg -s $(APT_TEST) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_TEST); }
	@$(PYTHON) -m pip install -q --disable-pip-version-check -r Tests/e2e/requirements.txt

test: deps-test lint test-swift test-e2e test-container bench-smoke

test-swift: deps
	swift build --build-tests
	swift test

test-e2e: deps-test
	swift build
	SANDBOXD_BIN=$(CURDIR)/.build/debug/sandboxd $(PYTHON) -m pytest -q Tests/e2e

test-container: deps-test
	bash docker/prepare-base-images.sh
	bash docker/run-test-docker.sh

lint:
	swift format lint --strict -r Sources Tests

format:
	swift format -i -r Sources Tests

# Regenerates Sources/SandboxGRPC/Generated from Protos/ (after editing a .proto; CI never runs it). The first run
# builds the Swift protoc plugins into .build-protoc (several minutes).
protos:
	@dpkg -s protobuf-compiler libprotobuf-dev >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq protobuf-compiler libprotobuf-dev; }
	bash scripts/generate-protos.sh

# Regenerates Sources/sandboxd/symbol-order.txt, the order in which the linker places the functions sandboxd runs at
# start, idle and in one request of each kind (scripts/symbol-order.py, under valgrind). Run it after changes that move
# much code; a stale list costs idle memory, never correctness. CI never runs it.
symbol-order: deps
	@command -v valgrind >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq valgrind; }
	@$(PYTHON) -c 'import grpc, k8s_agent_sandbox.commands._process_stubs.process_pb2' 2>/dev/null || \
		$(PYTHON) -m pip install -q --disable-pip-version-check -r Tests/e2e/requirements.txt
	swift build -c release --static-swift-stdlib --product sandboxd --scratch-path .build-release
	$(PYTHON) scripts/symbol-order.py .build-release/release/sandboxd Sources/sandboxd/symbol-order.txt
	@# The order file is no input SwiftPM tracks: removing the linked binaries makes the next build link again.
	rm -f .build/*/sandboxd .build-release/*/sandboxd

clean:
	rm -rf .build .build-release docker/dist

# Benchmarks (issue 6): sandboxd against this machine's limits in one run. `make bench` rewrites bench/RESULTS.md;
# `make bench-smoke` is the same script with tiny sizes, checking only that every step produced a number.
# The gRPC steps drive h2load (nghttp2-client) and grpcio with the SDK's process.v1 stubs (Tests/e2e/requirements.txt);
# `python3 bench/bench.py --only grpc` runs just them.
BENCH_APT := wrk nginx-light gcc nghttp2-client
BENCH_PREP = @{ command -v wrk && command -v nginx && command -v gcc && command -v dd && command -v h2load; } \
		>/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(BENCH_APT); }; \
	$(PYTHON) -c 'import matplotlib' 2>/dev/null || \
		$(PYTHON) -m pip install -q --disable-pip-version-check matplotlib; \
	$(PYTHON) -c 'import grpc, k8s_agent_sandbox.commands._process_stubs.process_pb2' 2>/dev/null || \
		$(PYTHON) -m pip install -q --disable-pip-version-check -r Tests/e2e/requirements.txt; \
	swift build -c release --static-swift-stdlib --scratch-path .build-release

bench: deps
	$(BENCH_PREP)
	$(PYTHON) bench/bench.py --bin .build-release/release/sandboxd

bench-smoke: deps
	$(BENCH_PREP)
	$(PYTHON) bench/bench.py --bin .build-release/release/sandboxd --smoke
