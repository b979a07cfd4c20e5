# The README's two set-up commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_OUT ?= demo_output

.PHONY: demo test venv tools clean

venv: $(STAMP)

# torch first (TORCH: the requirement, TORCH_INDEX: pip options choosing the build, e.g.
# --index-url https://download.pytorch.org/whl/cpu for the CPU-only build; a torch already
# in .venv that satisfies TORCH is kept), then the package with its dev extras. Re-runs
# only when setup.py changes.
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_INDEX) '$(TORCH)'
	$(PY) -m pip install -q -e '.[dev]'
	# piq for HaarPSI, without its torchvision dependency (HaarPSI does not use it;
	# PyPI's torchvision does not load beside the CPU torch wheel)
	$(PY) -m pip install -q --no-deps 'piq>=0.8'
	# DISTS alpha/beta weights (its code needs torchvision; recon/metrics/dists.py has its own VGG16)
	$(PY) -m pip install -q --no-deps 'DISTS_pytorch==0.1'
	touch $(STAMP)

# Debian tools used by the tests as independent references (installed when missing):
# ismrmrd-tools (ismrmrd_generate_cartesian_shepp_logan) and bart (ecalib).
tools:
	@if ! command -v ismrmrd_generate_cartesian_shepp_logan >/dev/null 2>&1 || ! command -v bart >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ismrmrd-tools bart) >/dev/null \
	    || echo "warning: could not install ismrmrd-tools/bart (needs root and apt); the reference tests that need them are skipped, saying why (CI=true fails them)"; \
	fi

demo: venv
	$(VENV)/bin/crunet demo --out $(DEMO_OUT)

# OMP_WAIT_POLICY=PASSIVE: torch's OpenMP threads otherwise spin between operations,
# which slows everything several-fold on a busy 2-core machine.
test: venv tools
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) $(DEMO_OUT) *.egg-info
