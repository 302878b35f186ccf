#!/usr/bin/env bash
# reprokit's Gradescope setup: a virtual environment under /autograder, no conda, no browser.
# Gradescope runs this once, as root, from /autograder/source, when it builds the image.
#
# Works on Ubuntu 22.04 (Python 3.10), Ubuntu 24.04 (3.12) and Debian bookworm (3.11): it
# picks the image's Python, installs the lock for that version (locks/py3.X.txt) into a
# venv (so PEP 668's "externally managed" system Python is never touched), then CPU-only
# torch and the reprokit wheel shipped in this zip.
#
# Environment (all optional):
#   REPROKIT_AUTOGRADER_ROOT  the /autograder root (the venv goes to $ROOT/venv)
#   REPROKIT_TORCH_INDEX      where torch==2.13.0 comes from: an index URL (default: the
#                             PyTorch CPU index) or a local folder holding the wheel
set -euo pipefail
cd "$(dirname "$0")"

ROOT="${REPROKIT_AUTOGRADER_ROOT:-/autograder}"
VENV="$ROOT/venv"
TORCH_VERSION=2.13.0
TORCH_INDEX="${REPROKIT_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
SUPPORTED="3.12 3.11 3.10"
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1

say() { echo "reprokit setup: $*"; }
fail() { echo "reprokit setup FAILED: $*" >&2; exit 1; }

# The image's python3 if a lock fits it, else any pythonX.Y with a lock.
version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
pick_python() {
    local candidate v
    for candidate in python3 $(for v in $SUPPORTED; do echo "python$v"; done); do
        command -v "$candidate" >/dev/null 2>&1 || continue
        v="$(version_of "$candidate")" || continue
        if [ -s "locks/py$v.txt" ]; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

PY="$(pick_python || true)"
if [ -z "$PY" ]; then
    say "no Python with a lock ($SUPPORTED) found; installing python3.11 with apt"
    apt-get update -q && apt-get install -y -q python3.11 python3.11-venv \
        || fail "cannot install Python 3.11; use a base image with Python $SUPPORTED"
    PY="$(pick_python)" || fail "no Python among $SUPPORTED after installing python3.11"
fi
PYV="$(version_of "$PY")"
LOCK="locks/py$PYV.txt"
say "Python $PYV ($PY), lock $LOCK, venv $VENV"

# The venv: Debian and Ubuntu ship venv's pip bootstrap (ensurepip) in a separate package.
rm -rf "$VENV"
if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    say "python$PYV cannot create a venv; installing python$PYV-venv with apt"
    apt-get update -q && apt-get install -y -q "python$PYV-venv" \
        || fail "cannot install python$PYV-venv"
    "$PY" -m venv "$VENV" || fail "python$PYV -m venv $VENV failed"
fi
PIP=("$VENV/bin/python" -m pip install --quiet)

# CPU-only torch (the CUDA wheels are gigabytes and graders have no GPU); its own
# dependencies are in the lock.
if [ -d "$TORCH_INDEX" ]; then
    "${PIP[@]}" --no-deps --no-index --find-links "$TORCH_INDEX" "torch==$TORCH_VERSION"
else
    "${PIP[@]}" --no-deps --index-url "$TORCH_INDEX" "torch==$TORCH_VERSION"
fi
# Everything else, exactly as locked for this Python, binary wheels only.
"${PIP[@]}" --no-deps --only-binary=:all: -r "$LOCK"
# The assignment's own requirements (from its master notebook), never moving a locked pin.
if [ -s requirements-assignment.txt ]; then
    "${PIP[@]}" -c "$LOCK" -r requirements-assignment.txt
fi
# reprokit itself, built from the same sources as this zip; its dependencies are locked above.
"${PIP[@]}" --no-deps reprokit-*.whl

"$VENV/bin/python" -m pip check || fail "the environment's dependencies are inconsistent"
"$VENV/bin/python" -c 'import reprokit.gradescope, torch, otter; print("reprokit setup: ready,", "torch", torch.__version__, "from", reprokit.__file__)'
