#!/usr/bin/env bash
# reprokit's Gradescope setup: plain pip into the image's Python, no conda, no browser.
# Gradescope runs this once per autograder build from /autograder/source.
set -euo pipefail
cd "$(dirname "$0")"

export DEBIAN_FRONTEND=noninteractive
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    apt-get update -q
    apt-get install -y -q python3.11 python3.11-venv
    update-alternatives --install /usr/bin/python3 python3 /usr/bin/python3.11 1
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -q
    apt-get install -y -q python3-pip
fi

PIP="python3 -m pip install --no-cache-dir --disable-pip-version-check"
# CPU-only torch: the CUDA wheels are gigabytes and graders have no GPU.
$PIP torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
$PIP -r requirements.txt
if [ -s requirements-assignment.txt ]; then
    $PIP -r requirements-assignment.txt
fi
# reprokit itself, built from the same commit as this zip; its dependencies are pinned above.
$PIP --no-deps reprokit-*.whl

python3 -c 'import reprokit.gradescope, torch; print("reprokit ready, torch", torch.__version__)'
