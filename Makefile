# The two entry points: `make demo` runs the lab and shows two nodes talking by
# name, `make test` runs every check. Both install what they need first.
SHELL := /bin/bash
.DEFAULT_GOAL := build

.PHONY: deps build typecheck lint test demo bench clean

deps:
	@scripts/install-deps.sh

build: deps
	@npm run -s build

typecheck: deps
	@npm run -s typecheck

lint: deps
	@npm run -s lint

test: build typecheck lint
	@scripts/run-tests.sh

demo: build
	@scripts/demo.sh

# Not part of `make test`. As root, an estimated 20 minutes on an idle 2-core
# machine (BENCH_QUICK=1: a few minutes). Writes docs/benchmarks.md and its plot.
bench: build
	@BENCH_QUICK="$(BENCH_QUICK)" scripts/bench/run.sh

clean:
	rm -rf dist

# The SD-card image (docs/image.md): pi-gen with image/config and the stage in
# image/stage-cyphonic. Needs the Raspberry Pi package archive.
.PHONY: image image-test
image: build
	@scripts/image/pi-gen.sh

# Builds the stage into a Debian arm64 disk image and boots it in QEMU in a lab.
image-test: build
	@scripts/image/image-test.sh
