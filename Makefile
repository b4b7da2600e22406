# Two commands on a fresh machine with Python 3.11:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= server,runtime,llm,sim,mlflow,s3,demo,dev
PYTEST_ARGS ?=

.PHONY: demo test clean

# Dependencies are lower bounds only, and every install takes the newest releases that satisfy
# them (eager: dependencies of dependencies too), so CI always tests against what users get.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[$(EXTRAS)]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/edgeship demo

# pytest exits 5 when it collected no test: make treats that as a failure, as it should.
test: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
