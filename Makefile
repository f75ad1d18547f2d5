# Two commands: `make run` sets everything up and starts pbx; `make test` runs every check.
# Works on a fresh Debian (bookworm or later) as root or with sudo.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the server needs at run time, and the real peers the tests drive.
APT_RUN := python3 python3-venv python3-dev gcc libopus0 openssl ca-certificates asterisk-moh-opsound-wav asterisk-core-sounds-en-wav
APT_TEST := sip-tester kamailio baresip linphone-cli sofia-sip-bin iproute2 util-linux tcpdump chromium chromium-driver

.PHONY: run test lint typecheck layers pytest system-deps test-deps clean

run: $(VENV)/.installed
	$(PY) -m pbx serve --data $(DATA)

test: $(VENV)/.test-installed lint typecheck layers pytest

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check pbx web tests bench

typecheck: $(VENV)/.test-installed
	$(VENV)/bin/mypy pbx web

layers: $(VENV)/.test-installed
	$(VENV)/bin/lint-imports --config setup.cfg

pytest: $(VENV)/.test-installed
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

system-deps:
	@missing=$$(for p in $(APT_RUN); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; fi

# Kamailio is a test peer (a provider's registrar, started by the tests on a free port): the
# service its package starts on 5060 is stopped and disabled when this installs it.
test-deps: system-deps
	@missing=$$(for p in $(APT_TEST); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	  case " $$(echo $$missing) " in *" kamailio "*) \
	    $(SUDO) systemctl disable --now kamailio >/dev/null 2>&1 || true;; esac; fi

$(VENV)/.installed: pyproject.toml setup.py | system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed pyproject.toml | test-deps
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
