# The two commands of the README: `make up` starts the example stack, `make test` runs
# every test. Both install what they need (scripts/setup-tools.sh).

MUSL_TARGET := x86_64-unknown-linux-musl
SUPD_RELEASE := target/$(MUSL_TARGET)/release/supd
FUZZ_SECONDS ?= 10

.PHONY: all build release up up-own-jobs down test lint unit fuzz-smoke e2e k8s-check cluster swarm-up swarm-down bench clean

all: release

build:
	cargo build --locked

# The static binary that goes into the image.
release:
	scripts/setup-tools.sh
	cargo build --locked --release --target $(MUSL_TARGET)
	file $(SUPD_RELEASE) | grep -qE 'statically linked|static-pie linked'

# Start the example stack (base image built offline the first time).
up:
	scripts/stack-up.sh

# The same stack with each service running its own jobs (no scheduler container).
up-own-jobs:
	STACK_LAYOUT=own-jobs scripts/stack-up.sh

down:
	scripts/stack-down.sh

# The stack on a single-node swarm of this host (127.0.0.1 only; docker-stack.yaml).
swarm-up: release
	scripts/swarm-up.sh

swarm-down:
	scripts/swarm-down.sh

# Every test: lint, unit + integration tests (real processes, PID namespaces, sockets),
# a short fuzz run of each parser, the end-to-end test against real containers (under
# docker-compose v1 and docker compose v2), the Kubernetes manifests rendered and
# validated, and the stack on a three-node docker-in-docker swarm.
test: lint unit fuzz-smoke e2e k8s-check cluster

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings

# Four test threads on two cores: the schedule tests mostly sleep until real minute
# boundaries, which they then share (integration tests ~230 s -> ~130 s).
# Then the init tests and the callback-spawning ones again, against the static musl
# release (the binary that ships: musl handles the signal mask of threads and
# posix_spawn differently from the host's glibc).
unit: release
	scripts/setup-tools.sh
	cargo test --locked -- --test-threads=4
	SUPD_TEST_BIN=$(CURDIR)/$(SUPD_RELEASE) cargo test --locked --test integration -- \
		--test-threads=4 init:: control::clean_slate control::term_once control::volume \
		control::requests control::limits control::shutdown

fuzz-smoke:
	scripts/setup-tools.sh --fuzz
	scripts/fuzz-smoke.sh $(FUZZ_SECONDS)

e2e: release
	scripts/setup-tools.sh --compose-v2
	tests/e2e/stack-test.sh

# deploy/ (kustomize) rendered and schema-checked, offline.
k8s-check:
	scripts/setup-tools.sh --k8s
	scripts/k8s-check.sh

# Swarm on three docker-in-docker nodes: drain, restore elsewhere, slots, catch-up.
cluster: release
	scripts/setup-tools.sh --cluster
	tests/e2e/cluster-test.sh

# Side-by-side benchmarks against tini, dumb-init, catatonit (writes bench/RESULTS.md).
bench: release
	scripts/setup-tools.sh --bench
	bench/run-all.sh

clean:
	cargo clean
