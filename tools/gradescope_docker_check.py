"""Build a Gradescope-style image from an autograder zip and grade notebooks in it.

    python tools/gradescope_docker_check.py ZIP --expect reference.ipynb=full \\
        --expect blank.ipynb=zero --expect tamper.ipynb=zero [--modes default,privileged]

What Gradescope does, reproduced with plain Docker (see docs/gradescope.md):

1. a base image: Debian bookworm made here with ``debootstrap`` (``--variant=minbase``,
   plus ``python3`` and ``ca-certificates``), imported once as ``reprokit/bookworm-debootstrap``
   and reused (``--base`` picks another image, e.g. one of Gradescope's own);
2. the zip unpacked into ``/autograder/source``, ``setup.sh`` run there as root (network on),
   ``run_autograder`` copied to ``/autograder/run_autograder``;
3. per submission and per security mode, a fresh container: the notebook in
   ``/autograder/submission``, ``/autograder/run_autograder`` run as root from ``/autograder``,
   ``/autograder/results/results.json`` read back and checked.

Modes: ``default`` (Docker's default seccomp and capabilities), ``privileged``
(``--privileged``), ``no-network`` (``--network none``). ``--torch-wheels DIR`` passes a
local folder holding the torch wheel into the build (``REPROKIT_TORCH_INDEX``) for machines
that cannot reach the PyTorch CPU index; ``--ca-bundle`` (default ``$PIP_CERT``) the CA
certificates of a TLS-inspecting proxy. Exits non-zero when any expectation fails.
Needs root (or the docker group), Docker, and for the base ``debootstrap``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = "reprokit/bookworm-debootstrap"
MIRROR = "http://deb.debian.org/debian"
MODES = {"default": [], "privileged": ["--privileged"], "no-network": ["--network", "none"]}
#: Linux capability names by number (capability.h), to name what a nested host lacks
CAPABILITIES = (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
    "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
    "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
    "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE").split()


def privileged_fallback() -> list[str]:
    """``--privileged`` minus what this machine cannot grant: inside a container that lacks a
    capability (CAP_SYS_RESOURCE, say) runc refuses ``--privileged`` ("unable to apply caps");
    this asks for every capability the machine has, without seccomp or AppArmor."""
    bounding = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            bounding = int(line.split()[1], 16)
    missing = [name for bit, name in enumerate(CAPABILITIES) if not bounding >> bit & 1]
    flags = ["--cap-add", "ALL", "--security-opt", "seccomp=unconfined",
             "--security-opt", "apparmor=unconfined"]
    return flags + [arg for name in missing for arg in ("--cap-drop", name)]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run ``cmd``, echoing it; raises on failure unless ``check=False``."""
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=kw.pop("check", True), **kw)


def ensure_base(image: str, cache: Path) -> None:
    """Make ``image`` with debootstrap unless Docker already has it."""
    if run(["docker", "image", "inspect", image], check=False, capture_output=True).returncode == 0:
        print(f"base image {image}: cached", flush=True)
        return
    rootfs = cache / "bookworm-rootfs"
    if not (rootfs / "usr" / "bin" / "python3").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        t0 = time.monotonic()
        run(["debootstrap", "--variant=minbase", "--include=python3,ca-certificates", "bookworm",
             str(rootfs), MIRROR])
        print(f"debootstrap: {time.monotonic() - t0:.0f} s", flush=True)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    run(["docker", "import", "-", image], stdin=tar.stdout)
    tar.wait()


def build_image(zip_path: Path, base: str, tag: str, torch_wheels: Path | None,
                ca_bundle: Path | None = None) -> float:
    """The autograder image, built as Gradescope builds it; returns the seconds it took."""
    with tempfile.TemporaryDirectory(prefix="reprokit-gs-image-") as tmp:
        ctx = Path(tmp)
        shutil.copy(zip_path, ctx / "autograder.zip")
        env_line, copy_line = "", ""
        if torch_wheels is not None:
            (ctx / "wheels").mkdir()
            for wheel in torch_wheels.glob("torch-*.whl"):
                shutil.copy(wheel, ctx / "wheels" / wheel.name)
            copy_line = "COPY wheels /wheels\n"
            env_line = "REPROKIT_TORCH_INDEX=/wheels "
        if ca_bundle is not None:  # a TLS-inspecting proxy between this machine and PyPI
            shutil.copy(ca_bundle, ctx / "ca-bundle.crt")
            copy_line += "COPY ca-bundle.crt /tmp/ca-bundle.crt\n"
            env_line += "PIP_CERT=/tmp/ca-bundle.crt "
        (ctx / "Dockerfile").write_text(
            f"FROM {base}\n"
            f"{copy_line}"
            "COPY autograder.zip /tmp/autograder.zip\n"
            "RUN mkdir -p /autograder/source /autograder/submission /autograder/results \\\n"
            " && python3 -m zipfile -e /tmp/autograder.zip /autograder/source \\\n"
            " && chmod +x /autograder/source/setup.sh /autograder/source/run_autograder\n"
            "WORKDIR /autograder/source\n"
            f"RUN {env_line}bash ./setup.sh\n"
            "RUN cp /autograder/source/run_autograder /autograder/run_autograder\n"
            "WORKDIR /autograder\n")
        t0 = time.monotonic()
        run(["docker", "build", "-t", tag, str(ctx)])
        return time.monotonic() - t0


def grade_in_container(tag: str, notebook: Path, mode: str, timeout_s: int) -> tuple[int, dict, float]:
    """Run ``run_autograder`` on ``notebook`` in a fresh container; (exit code, results, seconds)."""
    with tempfile.TemporaryDirectory(prefix="reprokit-gs-run-") as tmp:
        sub, res = Path(tmp) / "submission", Path(tmp) / "results"
        sub.mkdir()
        res.mkdir()
        shutil.copy(notebook, sub / notebook.name)
        t0 = time.monotonic()

        def attempt(flags: list[str]) -> subprocess.CompletedProcess:
            return run(["docker", "run", "--rm", *flags, "-v", f"{sub}:/autograder/submission",
                        "-v", f"{res}:/autograder/results", tag, "timeout", str(timeout_s),
                        "/autograder/run_autograder"], check=False, capture_output=True, text=True)

        proc = attempt(MODES[mode])
        if mode == "privileged" and proc.returncode == 125 and "apply caps" in proc.stderr:
            print("--privileged refused on this (nested) host; retrying with every capability "
                  "it has, seccomp and AppArmor off", flush=True)
            proc = attempt(privileged_fallback())
        seconds = time.monotonic() - t0
        print(proc.stdout[-1500:] + proc.stderr[-1500:], flush=True)
        path = res / "results.json"
        results = json.loads(path.read_text()) if path.exists() else {}
        return proc.returncode, results, seconds


def verdict(expect: str, rc: int, results: dict) -> str:
    """'' when ``results`` meets ``expect`` (full / zero / failed / wrong-assignment), else why not."""
    graded = [t for t in results.get("tests", []) if t.get("max_score")]
    possible = sum(t["max_score"] for t in graded)
    score = results.get("score")
    status = (results.get("extra_data") or {}).get("reprokit_status")
    if expect == "full":
        ok = rc == 0 and status == "graded" and possible > 0 and score == possible
    elif expect == "zero":
        ok = rc == 0 and possible > 0 and score == 0
    elif expect == "failed":
        ok = rc != 0 and "score" not in results and status == "autograder-error"
    else:
        ok = rc == 0 and "score" not in results and status == expect
    return "" if ok else f"expected {expect}, got rc={rc} status={status} score={score}/{possible}"


def main(argv: list[str] | None = None) -> int:
    """Build the image, grade every ``--expect`` notebook in every mode, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zip", type=Path)
    parser.add_argument("--expect", action="append", required=True, metavar="NOTEBOOK=OUTCOME",
                        help="a notebook and what it must get: full, zero, failed, wrong-assignment")
    parser.add_argument("--modes", default="default,privileged",
                        help=f"comma-separated, of {', '.join(MODES)} (default: default,privileged)")
    parser.add_argument("--base", default=BASE, help=f"base image (default {BASE}, made with debootstrap)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "reprokit-docker")
    parser.add_argument("--torch-wheels", type=Path, default=None,
                        help="a folder holding the torch wheel (REPROKIT_TORCH_INDEX for setup.sh)")
    parser.add_argument("--ca-bundle", type=Path, default=os.environ.get("PIP_CERT") or None,
                        help="CA certificates pip inside the build must trust (default: $PIP_CERT)")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep each results.json here as <mode>-<notebook>.json")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per submission")
    args = parser.parse_args(argv)
    if args.base == BASE:
        args.cache.mkdir(parents=True, exist_ok=True)
        ensure_base(args.base, args.cache)
    tag = "reprokit/gradescope-check:" + args.zip.stem.lower().replace("_", "-")
    build_s = build_image(args.zip, args.base, tag, args.torch_wheels, args.ca_bundle)
    rows, failures = [], 0
    for mode in args.modes.split(","):
        for item in args.expect:
            notebook, expect = item.rsplit("=", 1)
            rc, results, seconds = grade_in_container(tag, Path(notebook), mode, args.timeout)
            why = verdict(expect, rc, results)
            if args.out is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / f"{mode}-{Path(notebook).stem}.json").write_text(json.dumps(results, indent=2))
            failures += bool(why)
            rows.append((mode, Path(notebook).name, expect, rc, results.get("score"),
                         sum(t.get("max_score") or 0 for t in results.get("tests", [])),
                         (results.get("extra_data") or {}).get("reprokit_status"), f"{seconds:.0f}",
                         "ok" if not why else f"FAIL: {why}"))
            isolation = [t["output"] for t in results.get("tests", []) if t.get("visibility") == "hidden"]
            if isolation:
                print(f"[{mode}] {Path(notebook).name}: {isolation[0].splitlines()[3:4]}", flush=True)
    print(f"\nimage {tag} built in {build_s:.0f} s from base {args.base}")
    header = ("mode", "notebook", "expect", "rc", "score", "possible", "status", "s", "verdict")
    for row in [header, *rows]:
        print(" | ".join(str(c) for c in row))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
