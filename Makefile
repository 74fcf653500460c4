# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test test-slow lint weights clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[test,eval]"
	touch $@

demo: install
	$(BIN)/ssc demo --out out/demo

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# Copy the weights exported by `ssc train --config configs/gi-hyper-ckbd-s.yaml` into the package zoo.
weights:
	cp runs/gi-hyper-ckbd-s/gi-hyper-ckbd-s.safetensors runs/gi-hyper-ckbd-s/gi-hyper-ckbd-s.json ssc/weights/

clean:
	rm -rf out runs .pytest_cache
