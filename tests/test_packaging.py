"""What PyPI would get: the abi3 wheel is manylinux (auditwheel says so) and installs and works on
every CPython >= 3.9 this machine has (at least two); the sdist builds."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.timeout(1800)

SMOKE = """
import os, sys, tempfile, threading
import ferrolock
from ferrolock import lockutils
d = tempfile.mkdtemp()
with lockutils.lock("w", external=True, lock_path=d) as held:
    assert held.exists()
    assert not ferrolock.FileLock(os.path.join(d, "w")).acquire(blocking=False)
got = []
with ferrolock.InternalLock("i"):
    t = threading.Thread(target=lambda: got.append(ferrolock.InternalLock("i").acquire(False)))
    t.start(); t.join(10)
assert got == [False], got
print(ferrolock.__version__, "%d.%d" % sys.version_info[:2])
"""


def _cpythons() -> dict[str, str]:
    """One interpreter per CPython minor version >= 3.9 found here (pyenv's, then PATH's)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", "~/.pyenv")).expanduser() / "versions"
    candidates = sorted(str(p) for p in pyenv.glob("*/bin/python3"))
    candidates += [p for m in range(9, 20) if (p := shutil.which(f"python3.{m}"))]
    found: dict[str, str] = {}
    for exe in candidates:
        try:
            r = subprocess.run(
                [exe, "-c", "import sys; print(sys.implementation.name, *sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        impl, *version = r.stdout.split() or ["?"]
        if r.returncode == 0 and impl == "cpython" and tuple(map(int, version)) >= (3, 9):
            found.setdefault(".".join(version), exe)
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `make wheel` builds (FERROLOCK_WHEEL names one already built)."""
    given = os.environ.get("FERROLOCK_WHEEL")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            *(str(BIN / "maturin"), "build", "--release", "--quiet", "--zig"),
            *("--compatibility", "manylinux2014", "--out", str(out)),
        ],
        cwd=REPO,
        # zig links differently: its own cache, so that it and `pip install .` never rebuild
        # each other's
        env={
            **os.environ,
            "CARGO_TARGET_DIR": str(REPO / "target" / "manylinux"),
            # maturin finds zig as `python3 -m ziglang` on PATH: this environment's python
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        check=True,
        timeout=1500,
    )
    [built] = out.glob("ferrolock-*.whl")
    return built


def test_wheel_is_abi3_manylinux(wheel: Path):
    assert re.fullmatch(r"ferrolock-[^-]+-cp39-abi3-manylinux2014_x86_64\.\S*\.whl", wheel.name)
    r = subprocess.run(
        [str(BIN / "auditwheel"), "show", str(wheel)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert 'consistent with the following platform tag: "manylinux_2_17_x86_64"' in text, text


def test_wheel_installs_and_works_on_every_cpython_here(wheel: Path, tmp_path: Path):
    pythons = _cpythons()
    assert len(pythons) >= 2, f"only {sorted(pythons)} here: the wheel needs two to be checked"
    seen = {}
    for version, exe in sorted(pythons.items()):
        venv = tmp_path / f"py{version}"
        subprocess.run([exe, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run(
            [
                *(str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"),
                *("--no-index", "--no-deps", "--disable-pip-version-check", str(wheel)),
            ],
            check=True,
            timeout=300,
        )
        r = subprocess.run(
            [str(venv / "bin" / "python"), "-c", SMOKE],
            cwd=tmp_path,  # not the source tree: the installed wheel must be what runs
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, (version, r.stderr)
        seen[version] = r.stdout.split()[1]
    assert seen == {v: v for v in pythons}


def test_sdist_builds(tmp_path: Path):
    subprocess.run(
        [str(BIN / "maturin"), "sdist", "--out", str(tmp_path)], cwd=REPO, check=True, timeout=300
    )
    [sdist] = tmp_path.glob("ferrolock-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    for needed in ("Cargo.toml", "Cargo.lock", "pyproject.toml", "src/lib.rs"):
        assert any(n.endswith("/" + needed) for n in names), needed
    assert any(n.endswith("python/ferrolock/lockutils.py") for n in names)
    # A dev-profile build into the repo's cargo cache: the point is that it builds, not LTO.
    env = {
        **os.environ,
        "MATURIN_PEP517_ARGS": "--profile dev",
        "CARGO_TARGET_DIR": str(REPO / "target" / "sdist-check"),
    }
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--disable-pip-version-check", "-w", str(tmp_path / "out"), str(sdist)),
        ],
        env=env,
        check=True,
        timeout=1500,
    )
    assert list((tmp_path / "out").glob("ferrolock-*.whl"))
