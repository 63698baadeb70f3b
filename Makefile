# The two commands of the README. Each one makes the virtualenv it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench stop clean

run: $(STAMP)            ## the whole platform (qi up), a demo workload, every worker's results
	$(BIN)/qi up
	$(BIN)/qi demo

test: $(STAMP)           ## the whole test suite against a real local stack
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)          ## the benchmarks of docs/performance.md
	$(BIN)/python -m bench.serde
	$(BIN)/python -m bench.publish
	$(BIN)/python -m bench.nab
	$(BIN)/python -m bench.score
	$(BIN)/python -m bench.bridge

stop: $(STAMP)           ## stop the workers and the embedded stack started by `make run` (data kept)
	$(BIN)/qi down

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,test]'
	touch $(STAMP)

clean:
	-test -x $(BIN)/qi && $(BIN)/qi stack down
	rm -rf $(VENV) .qi
