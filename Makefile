# Set-up and entry points. `make demo` and `make test` work on a fresh Debian machine:
# they install the Debian packages (when run as root), create .venv, install torch
# first (a plain torch requirement would pull a multi-GB CUDA build), then the package.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
DEB_PACKAGES := libportaudio2 libasound2-plugins pulseaudio pulseaudio-utils espeak-ng sox ffmpeg prometheus iproute2 util-linux
SECONDS ?= 60
# make eval: an hour of the conversation stream through the real daemons, as fast as the
# learner learns it (EVAL_BATCH new windows a step), then the probe on held-out people.
EVAL_AUDIO_SECONDS ?= 3600
EVAL_BATCH ?= 8
EVAL_WALL_CAP ?= 3600
# install-units: where the rendered systemd units go (DESTDIR stages a package root) and
# where they read their configs.
UNITDIR ?= /etc/systemd/system
CONFDIR ?= /etc/streamssl
UNITS := $(patsubst daemons/%.in,%,$(wildcard daemons/*.service.in))

.PHONY: all system venv dev demo test test-quick bench eval install-units clean

all: demo

system:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "missing Debian packages:$$missing (run: sudo make system)" >&2; exit 1; \
	fi
	@# Voices of real people (MBROLA, flite, RHVoice, SVOX pico; contrib/non-free from the
	@# configured mirror): the speech stream's speakers and the eval's held-out ones.
	@sh streamssl/capture/install_voices.sh

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e ".[test]"
	touch $@

venv: system $(VENV)/.installed
dev: system $(VENV)/.installed-test

demo: venv
	$(VENV)/bin/streamssl demo --seconds $(SECONDS)

# Two workers, a test file each at a time (a file's daemons and fixtures stay on one worker):
# most e2e tests wait on real time and sockets, so two share the 2 cores well.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: dev
	$(PYTEST)

# The inner loop: everything but daemons, servers and the slow in-process tests (markers in pyproject.toml).
test-quick: dev
	$(PYTEST) -m "not e2e and not slow"

bench: venv
	$(VENV)/bin/streamssl bench --json bench/results.json

eval: venv
	$(VENV)/bin/streamssl data speech --out runs/eval-data
	rm -rf runs/eval-train  # a fresh model each time: the demo would resume an old checkpoint
	$(VENV)/bin/streamssl demo --audio-seconds $(EVAL_AUDIO_SECONDS) --seconds $(EVAL_WALL_CAP) \
	  --set learner.batch_max=$(EVAL_BATCH) --out runs/eval-train --no-live
	$(VENV)/bin/streamssl eval --checkpoint runs/eval-train/checkpoints --data runs/eval-data --seeds 3 --reference 3 --random-inits 3 --json runs/eval.json

# Render daemons/*.service.in with this venv's streamssl and CONFDIR into $(DESTDIR)$(UNITDIR).
# The venv may live anywhere (VENV=/opt/streamssl/.venv); the units only run its streamssl.
install-units:
	@test -x "$(abspath $(VENV))/bin/streamssl" || { echo "no $(abspath $(VENV))/bin/streamssl: run make venv (or pass VENV=)" >&2; exit 1; }
	install -d "$(DESTDIR)$(UNITDIR)"
	for u in $(UNITS); do \
	  sed -e 's|@STREAMSSL@|$(abspath $(VENV))/bin/streamssl|g' -e 's|@CONFDIR@|$(CONFDIR)|g' "daemons/$$u.in" > "$(DESTDIR)$(UNITDIR)/$$u" && \
	  chmod 644 "$(DESTDIR)$(UNITDIR)/$$u" && echo "wrote $(DESTDIR)$(UNITDIR)/$$u"; \
	done
	@echo "then: systemctl daemon-reload; configs go in $(CONFDIR)/"

clean:
	rm -rf $(VENV) runs .pytest_cache
