# nmfuse: `make mount` serves /dev/netmap, `make test` runs every test.
PY ?= python3
CC ?= cc
CFLAGS ?= -O2 -g -Wall -Wextra
MOUNTPOINT ?= /dev/netmap
ABI_H := nmfuse/abi/netmap_abi.h
FUSE_H := nmfuse/abi/fuse_abi.h

CLIENT_SRCS := $(wildcard clients/*.c)
CLIENTS := $(patsubst clients/%.c,clients/bin/%,$(CLIENT_SRCS))
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,bench/bin/%,$(BENCH_SRCS))

# A distribution's own Python refuses pip installs (PEP 668: it is "externally
# managed"); nmfuse then gets a virtual environment of its own, .venv, and its
# command a link in /usr/local/bin, so that `nmfuse` works as it does elsewhere.
EXTERNALLY_MANAGED := $(shell $(PY) -c 'import os, sysconfig; \
    print(int(os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))))' 2>/dev/null)
ifeq ($(EXTERNALLY_MANAGED),1)
BASE_PY := $(PY)
VENV := .venv
override PY := $(VENV)/bin/python3
endif

.PHONY: all install clients bench-bins test unit mount bench clean

all: install clients

# Installs the package (and builds the C helper) once per change of the
# build inputs; pip needs network access to PyPI the first time.
# Old builds of the extensions go first: Python loads a `.cpython-*.so` (what
# running a *_build.py directly makes) before pip's `.abi3.so`, so a stale one
# would hide every later build.
install: .installed
.installed: pyproject.toml setup.py nmfuse/helper_build.py nmfuse/abi/netmap_build.py nmfuse/uring_build.py \
            $(wildcard nmfuse/csrc/*.[ch]) $(ABI_H) $(if $(VENV),$(PY))
	@$(PY) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("include"), "Python.h")))' \
	    || { echo "nmfuse: Python.h is missing (the C helper is built against it): install python3-dev" >&2; exit 1; }
	rm -f nmfuse/_helper.*.so nmfuse/_uring.*.so nmfuse/abi/_netmap.*.so
	$(PY) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e '.[test]'
ifdef VENV
	ln -sf $(CURDIR)/$(VENV)/bin/nmfuse /usr/local/bin/nmfuse \
	    || echo "nmfuse: the command is $(VENV)/bin/nmfuse (no link in /usr/local/bin)" >&2
endif
	touch $@

ifdef VENV
$(PY):
	$(BASE_PY) -m venv $(VENV) \
	    || { rm -rf $(VENV); echo "nmfuse: $(BASE_PY) cannot make a virtual environment: install python3-venv" >&2; exit 1; }
endif

clients: $(CLIENTS)
clients/bin/%: clients/%.c $(wildcard clients/*.h) $(ABI_H)
	@mkdir -p clients/bin
	$(CC) $(CFLAGS) -Inmfuse/abi -Iclients -o $@ $< -lpthread

bench-bins: $(BENCH_BINS)
bench/bin/%: bench/%.c $(wildcard bench/*.h) $(wildcard clients/*.h) $(ABI_H) $(FUSE_H) nmfuse/csrc/uring.c nmfuse/csrc/uring.h nmfuse/csrc/hook.c nmfuse/csrc/hook.h
	@mkdir -p bench/bin
	$(CC) $(CFLAGS) -Inmfuse/abi -Iclients -o $@ $< -lpthread

test: install clients
	$(PY) -m pytest -ra

unit: install
	$(PY) -m pytest -ra -m "not needs_fuse and not needs_root"

mount: install
	$(PY) -m nmfuse mount $(MOUNTPOINT)

bench: install clients bench-bins
	$(PY) bench/run.py

clean:
	rm -rf clients/bin bench/bin build .installed nmfuse/_helper.* nmfuse/_uring.* nmfuse/abi/_netmap.*
