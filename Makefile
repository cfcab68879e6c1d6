# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NCA_VENV ?= .venv-nca

.PHONY: demo test system-deps lint typecheck sample clean

$(STAMP): pyproject.toml setup.py $(wildcard capture/_fast*.c capture/_fast*.h)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## network-config-analyzer, the reference of tests/test_connectivity.py, pins its dependencies
## exactly (networkx==3.2.1, ...): a venv of its own, for the tests only; they skip without it.
$(NCA_VENV)/.installed:
	($(PYTHON) -m venv $(NCA_VENV) && $(NCA_VENV)/bin/pip install --quiet \
		network-config-analyzer && touch $@) \
		|| echo "warning: nca not installed; its comparison will skip"

## make demo: install, then run the whole pipeline on the bundled sample into output/, and
## write one evidence report per target into output/report/<target>/ (the targets' folders
## are alternatives, never deployed together: each is judged under its own enforcement), with
## the justifications register of sample/segmenter.yaml, and as PDF too where headless
## Chromium (or WeasyPrint) is installed
TARGETS_CMD := $(BIN)/python -c 'from segmenter.targets import target_names; print(*target_names())'
PDF_CMD := $(BIN)/python -c 'from segmenter.views.report.pdf import available_renderer; print("--pdf" if available_renderer() else "")'
demo: $(STAMP)
	$(BIN)/segmenter run sample/shop.pcapng --inventory sample/shop-inventory.json \
		--config sample/segmenter.yaml -o output
	@pdf=$$($(PDF_CMD)); for target in $$($(TARGETS_CMD)); do \
		echo "$(BIN)/segmenter report ... --policies output/$$target -o output/report/$$target $$pdf"; \
		$(BIN)/segmenter report --graph output/graph.json --plan output/plan.json \
			--policies output/$$target --enforcement $$target --flows output/flows.jsonl \
			--inventory sample/shop-inventory.json --config sample/segmenter.yaml $$pdf \
			-o output/report/$$target || exit $$?; \
	done

## System packages some tests use: Chromium (renders the HTML report and prints the PDF one),
## libpcap (BPF filters of the capture agent), openssl (TLS in the network-namespace tests),
## iproute2 (ip netns).
## Installed only where missing, only as root with apt-get; without them those tests skip
## with a reason.
SYSTEM_TOOLS := chromium:chromium openssl:openssl ip:iproute2
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=""; \
		for pair in $(SYSTEM_TOOLS); do \
			command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; \
		done; \
		ldconfig -p 2>/dev/null | grep -q 'libpcap\.so' || missing="$$missing libpcap0.8"; \
		if [ -n "$$missing" ]; then \
			echo "installing:$$missing"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends $$missing >/dev/null) \
			|| echo "warning: could not install$$missing; the tests that need them will skip"; \
		fi; \
	fi

## make test: install, then ruff, mypy and the whole pytest suite
test: $(STAMP) $(NCA_VENV)/.installed system-deps
	$(BIN)/ruff check segmenter capture tests benchmarks sample setup.py
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

## make sample: regenerate the bundled capture from real sockets in network namespaces (root)
sample: $(STAMP)
	$(BIN)/python sample/make_sample.py

clean:
	rm -rf $(VENV) $(NCA_VENV)
	find output -mindepth 1 ! -name README.md ! -name .gitignore -exec rm -rf {} +
