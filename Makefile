# livelog: `make deploy-local` deploys onto a local systemd container; `make test` is what CI runs.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0

.PHONY: help run bootstrap image deploy-local ec2 ec2-teardown test lint docs lock pytest ec2-test fuzz molecule bench bench-clients bench-edge bench-cluster clean

help:
	@echo "make deploy-local  set up this machine and deploy livelog into a local podman systemd container"
	@echo "make test          lint (ansible-lint, yamllint, ruff, mypy, role docs, the viewer's vendored client) + backend and browser tests + EC2 provisioning against moto + API fuzzing + every molecule scenario, two lanes at once (what CI runs)"
	@echo "make run           the backend alone, no containers: Socket.IO on :7000, API on :8000 (Ctrl-C stops)"
	@echo "make ec2 EC2_REGION=.. EC2_ADMIN_CIDR=../32 EC2_PUBLIC_KEY=~/.ssh/id.pub [AWS_PROFILE=..]  a real AWS account (billed): provision, deploy, smoke"
	@echo "make ec2-teardown EC2_REGION=..  remove everything make ec2 created (found by its tags)"
	@echo "make ec2-test      provision -> re-run (changed=0) -> teardown on EC2, against moto on loopback (no AWS account)"
	@echo "make bench-edge    latency and fan-out through the real nginx of the make-deploy-local container"
	@echo "make bench-cluster fan-out against one and two Socket.IO nodes behind nginx (molecule's cluster scenario)"
	@echo "make lint | docs | lock | pytest | ec2-test | fuzz | molecule | bench | clean"

# The backend alone: a venv with just the app (no Ansible, no podman), then both services in this terminal.
run:
	scripts/run-backend.sh

bootstrap:
	scripts/bootstrap.sh

image: bootstrap
	scripts/build-test-image.sh

deploy-local: bootstrap image
	scripts/deploy-local.sh

# EC2 from nothing, on a real AWS account (it costs money while it runs): provision, deploy onto the inventory
# provisioning wrote, prove it. More variables: EC2_ARGS='-e livelog_ec2_layout=split ...' (roles/livelog_ec2).
EC2_DEPLOYMENT ?= livelog
EC2_INVENTORY = .local/ec2/$(EC2_DEPLOYMENT).ini
EC2_VARS = -e livelog_ec2_region=$(EC2_REGION) -e livelog_ec2_deployment=$(EC2_DEPLOYMENT) $(EC2_ARGS)
ec2: bootstrap
	ansible-playbook playbooks/provision-ec2.yml $(EC2_VARS) \
	  -e livelog_ec2_admin_cidr=$(EC2_ADMIN_CIDR) -e livelog_ec2_public_key_file=$(EC2_PUBLIC_KEY)
	ansible-playbook deploy.yml -i $(EC2_INVENTORY)
	ansible-playbook playbooks/smoke.yml -i $(EC2_INVENTORY)

ec2-teardown: bootstrap
	ansible-playbook playbooks/teardown-ec2.yml $(EC2_VARS)

test: bootstrap image lint pytest ec2-test fuzz molecule

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

# playbooks/provision-ec2.yml and teardown-ec2.yml with the real amazon.aws modules against moto_server on a
# free loopback port: no AWS account, nothing leaves the machine
ec2-test:
	pytest -p no:asyncio tests/ec2

# Schemathesis from both services' own OpenAPI: bounded, seeded; fails on any 5xx or schema violation
fuzz:
	scripts/fuzz.sh

# every scenario, two lanes side by side; each scenario's log is printed whole when it ends
molecule:
	scripts/molecule-all.sh

# performance figures as ratios against baselines measured in the same run; JSON and a chart in bench/results/
bench: bootstrap
	python bench/log_call.py
	python bench/throughput.py
	python bench/end_to_end.py
	python bench/chart.py

# latency at 50 and 500 lines/s and fan-out to 1,000 and 5,000 viewers, through nginx, on the deploy-local container
bench-edge: bench-clients
	python bench/fanout.py

# fan-out against one and two Socket.IO nodes behind nginx, on molecule's cluster scenario (made, then removed)
bench-cluster: image bench-clients
	bench/cluster.sh

# the browser's Socket.IO client, which bench/fanout_clients.mjs runs on this machine's Node: app/viewer's locked
# packages, as scripts/vendor-viewer.sh installs them (again only when the lock changes)
bench-clients: app/viewer/node_modules/.package-lock.json
app/viewer/node_modules/.package-lock.json: app/viewer/package-lock.json
	cd app/viewer && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

clean:
	-scripts/deploy-local.sh --destroy
	-molecule destroy --all
	rm -rf .local livelog-data
