# livelog: `make deploy-local` deploys onto a local systemd container; `make test` is what CI runs.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0

.PHONY: help run bootstrap image deploy-local test lint docs lock pytest fuzz molecule bench clean

help:
	@echo "make deploy-local  set up this machine and deploy livelog into a local podman systemd container"
	@echo "make test          lint (ansible-lint, yamllint, ruff, mypy, role docs, the viewer's vendored client) + backend tests + API fuzzing + every molecule scenario, two lanes at once (what CI runs)"
	@echo "make run           the backend alone, no containers: Socket.IO on :7000, API on :8000 (Ctrl-C stops)"
	@echo "make lint | docs | lock | pytest | fuzz | molecule | bench | clean"

# The backend alone: a venv with just the app (no Ansible, no podman), then both services in this terminal.
run:
	scripts/run-backend.sh

bootstrap:
	scripts/bootstrap.sh

image: bootstrap
	scripts/build-test-image.sh

deploy-local: bootstrap image
	scripts/deploy-local.sh

test: bootstrap image lint pytest fuzz molecule

lint:
	ansible-lint
	yamllint .
	ruff check .
	cd app && mypy
	python scripts/role_docs.py --check
	scripts/lock.sh --check
	scripts/vendor-viewer.sh --check

# app/requirements.lock from app/pyproject.toml: every dependency pinned, with hashes (what hosts install)
lock:
	scripts/lock.sh

# the role README's variable table, from roles/livelog/meta/argument_specs.yml
docs:
	python scripts/role_docs.py

pytest:
	@if [ -d app/tests ]; then pytest app/tests; else echo "pytest: app/tests does not exist yet, nothing to run"; fi

# Schemathesis from both services' own OpenAPI: bounded, seeded; fails on any 5xx or schema violation
fuzz:
	scripts/fuzz.sh

# every scenario, two lanes side by side; each scenario's log is printed whole when it ends
molecule:
	scripts/molecule-all.sh

# performance figures as ratios against baselines measured in the same run; JSON and a chart in bench/results/
bench:
	python bench/log_call.py
	python bench/throughput.py
	python bench/end_to_end.py
	python bench/chart.py

clean:
	-scripts/deploy-local.sh --destroy
	-molecule destroy --all
	rm -rf .local livelog-data
