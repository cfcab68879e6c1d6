# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck sample clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## make demo: install, then run the whole pipeline on the bundled sample into output/
demo: $(STAMP)
	$(BIN)/segmenter run sample/shop.pcapng --inventory sample/shop-inventory.json \
		--config sample/segmenter.yaml -o output

## make test: install, then ruff, mypy and the whole pytest suite
test: $(STAMP)
	$(BIN)/ruff check segmenter capture tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

## make sample: regenerate the bundled capture from real sockets in network namespaces (root)
sample: $(STAMP)
	$(BIN)/python sample/make_sample.py

clean:
	rm -rf $(VENV) output/*.json output/*.jsonl output/*.png output/kubernetes output/calico
