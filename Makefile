# The commands the README shows. Everything runs from the repository root.
SHELL := /bin/bash
STATE := $(CURDIR)/.eval_assets
export DAGSTER_HOME := $(STATE)/dagster_home
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --frozen

.PHONY: setup demo test test-fast ui eval bench lint schema home clean

setup:  ## install uv if missing, then the locked environment (with the postgres extra: tests use it)
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --extra postgres

home:
	@mkdir -p $(DAGSTER_HOME)
	@ln -sf $(CURDIR)/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: setup home  ## the main job on embedded defaults: no servers needed
	$(RUN) python -m eval_assets.demo.run

test: setup  ## every test suite, with the real services they start themselves
	bash .ci/install-browser
	bash .ci/install-postgres
	$(RUN) python -m pytest -q -p no:cacheprovider; status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$status

test-fast: setup
	$(RUN) python -m pytest -q -p no:cacheprovider -m "not integration and not e2e and not browser and not slow"

ui: setup home  ## Dagster UI and daemon on 127.0.0.1:3000
	$(RUN) dagster dev -h 127.0.0.1 -p 3000

# make exits 2 whenever a recipe fails, so `make eval` cannot keep eval-assets' exit codes (0 pass,
# 1 a gate failed, 2 bad input): it prints which one it was. Scripts call eval-assets directly.
eval: setup  ## make eval MODEL=model.skops DATA=val.csv [CRITERIA=..] [LABEL=..] [CHAMPION=..] [ALLOW_PICKLE=1]
	$(RUN) eval-assets evaluate --model-path "$(MODEL)" --data-path "$(DATA)" \
	  $(if $(CRITERIA),--criteria "$(CRITERIA)") $(if $(LABEL),--label-column "$(LABEL)") \
	  $(if $(CHAMPION),--champion-path "$(CHAMPION)") $(if $(ALLOW_PICKLE),--allow-pickle) \
	  --out "$(or $(OUT),eval-out)"; status=$$?; \
	case $$status in \
	  0) ;; \
	  1) echo "make eval: eval-assets exited 1: a gate failed (make reports it as its own 2)" >&2 ;; \
	  2) echo "make eval: eval-assets exited 2: bad input or usage (see the error above)" >&2 ;; \
	  *) echo "make eval: eval-assets exited $$status: interrupted or crashed" >&2 ;; \
	esac; \
	exit $$status

schema: setup
	$(RUN) eval-assets schema --out criteria.schema.json

bench: setup  ## the benchmarks, each side by side in one run (30 to 65 minutes on 2 cores)
	$(RUN) python bench/bench_metrics.py
	$(RUN) python bench/bench_evaluation.py
	$(RUN) python bench/bench_cli.py

lint: setup
	$(RUN) ruff check eval_assets eval_assets_tests bench
	$(RUN) ruff format --check eval_assets eval_assets_tests bench

clean:
	rm -rf $(STATE) eval-out
