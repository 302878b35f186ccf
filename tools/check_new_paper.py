"""``reprokit new`` then ``reprokit build`` from a NON-editable install, as an instructor runs them.

    python tools/check_new_paper.py [--workdir /tmp/reprokit-new-check] [--keep]

1. builds a wheel of this checkout (``pip wheel --no-deps``);
2. makes a fresh venv that sees this interpreter's packages (``--system-site-packages``, so
   torch, otter and friends are not reinstalled) and installs the wheel into it with
   ``pip install --no-deps --force-reinstall``;
3. checks that the venv's python imports reprokit from the venv, not from this checkout;
4. runs the venv's ``reprokit new PAPER`` and ``reprokit build PAPER -o DIST`` (QA gate and
   mutation gate) outside any checkout, and exits with the build's status.

Cost: the build of the six example levels, about 60 CPU-seconds (5 to 10 minutes of wall time
on a busy 2-core machine). Prints each step and the build's tables.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("$", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="default: a fresh temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="reprokit-new-check-"))
    if work.exists() and any(work.iterdir()):
        parser.error(f"{work} is not empty")
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
             "-w", work / "wheel", ROOT], env=env)
        wheel = next((work / "wheel").glob("reprokit-*.whl"))
        venv = work / "venv"
        run([sys.executable, "-m", "venv", "--system-site-packages", venv])
        py, cli = venv / "bin" / "python", venv / "bin" / "reprokit"
        run([py, "-m", "pip", "install", "--no-deps", "--force-reinstall", "-q", wheel], env=env)
        where = run([py, "-c", "import reprokit; print(reprokit.__file__)"], env=env, cwd=work,
                    capture_output=True, text=True).stdout.strip()
        print("reprokit imported from", where)
        if not Path(where).resolve().is_relative_to(venv.resolve()):
            print(f"FAIL: the venv imports {where}, not the installed wheel", file=sys.stderr)
            return 1
        paper = work / "courses" / "my-paper"
        run([cli, "new", paper, "--title", "A paper of my own"], env=env, cwd=work)
        t0 = time.monotonic()
        status = subprocess.run([str(cli), "build", str(paper), "-o", str(work / "dist")], env=env,
                                cwd=work).returncode
        print(f"reprokit build exited {status} after {time.monotonic() - t0:.0f} s", flush=True)
        return status
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
