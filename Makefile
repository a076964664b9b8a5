# Two entry points, each creating its own virtual environment:
#   make demo   set up, then run the whole pipeline on built-in synthetic data
#   make test   set up, then run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.scandx-installed

.PHONY: demo test lint bench bench-nnunet clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	# torch first and pinned: the local CPU wheel; unpinned, pip pulls GBs of CUDA packages.
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/scandx demo --out demo-run

test: $(STAMP)
	scripts/ensure-chromium.sh
	scripts/ensure-postgres.sh
	scripts/ensure-dicom-tools.sh
	SCANDX_REQUIRE_BROWSER=1 SCANDX_REQUIRE_POSTGRES=1 SCANDX_REQUIRE_DICOM_TOOLS=1 \
		$(VENV)/bin/python -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/throughput.py
	$(VENV)/bin/python benchmarks/medmnist.py --npz ../shared/data/medmnist/pneumoniamnist.npz --time-budget 600

# nnU-Net v2 vs scandx on DRIVE. nnunetv2 gets its own venv: it pulls its own torch with
# CUDA libraries from PyPI (~6 GB; check `df -h .` first), never into $(VENV).
NNUNET_VENV := benchmarks/.venv-nnunet

$(NNUNET_VENV)/.nnunetv2-installed:
	$(PYTHON) -m venv $(NNUNET_VENV)
	$(NNUNET_VENV)/bin/python -m pip install -q --upgrade pip
	$(NNUNET_VENV)/bin/python -m pip install -q nnunetv2==2.8.1
	touch $@

bench-nnunet: $(STAMP) $(NNUNET_VENV)/.nnunetv2-installed
	$(VENV)/bin/python benchmarks/nnunet_drive.py --data ../shared/data/drive --time-budget 1200

clean:
	rm -rf $(VENV) demo-run
