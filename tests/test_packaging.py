"""The package: a wheel built from this tree installs into a fresh virtual environment and works there.

The environment has no system site-packages and no Streamlit or pandas: only the wheel
and what it requires (torch, numpy, scipy, numba). So that the test does not download and unpack
torch (about two minutes), the environment sees this interpreter's torch, numpy, scipy and numba,
with their own requirements, through a folder of links added by a ``.pth`` file; the
wheel is then installed with ``--no-index``, so a requirement beyond them would fail
the install instead of being fetched.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_TRACE = "sample_data/traces/deepseek-v3-drift.npz"


def _tracked_files() -> list[str]:
    """The files a clean clone has: git's list when this is a checkout, else every file but caches and builds."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                                text=True, check=True, timeout=60).stdout.split("\n")
        return [f for f in listed if f and (ROOT / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "test-output", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis"}
        return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.parts)]


def _requirement_names(dist: importlib.metadata.Distribution) -> list[str]:
    """The names a distribution requires unconditionally (no extras, no platform markers that fail here)."""
    from packaging.requirements import Requirement

    names = []
    for text in dist.requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.append(requirement.name)
    return names


def _link_distributions(roots: list[str], into: Path) -> list[str]:
    """Link the installed files of ``roots`` and everything they require into ``into``; return the names linked."""
    todo, done = list(roots), []
    while todo:
        name = todo.pop()
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower()
        if key in done:
            continue
        done.append(key)
        site = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source, target = site / top, into / top
            if source.exists() and not target.exists():
                target.symlink_to(source)
        todo.extend(_requirement_names(dist))
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the wheel installed: (venv path, wheel path, seconds for build and install)."""
    started = time.perf_counter()
    work = tmp_path_factory.mktemp("package")
    source = work / "src"
    for name in _tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    dist = work / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("eplb_explorer-*.whl")
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    shim = work / "torch-and-numpy"
    shim.mkdir()
    linked = _link_distributions(["torch", "numpy", "scipy", "numba"], shim)
    assert "streamlit" not in linked and "pandas" not in linked, linked
    (site / "torch_and_numpy.pth").write_text(str(shim) + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "-q",
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    return env_dir, wheel, time.perf_counter() - started


def _run(env_dir: Path, *argv, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**env, "PATH": f"{env_dir / 'bin'}:{env.get('PATH', '')}"})


def test_the_wheel_holds_the_library_and_the_app(installed):
    _, wheel, seconds = installed
    print(f"\nwheel built and installed into a fresh venv in {seconds:.1f} s")
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = _tracked_files()
    library = [f for f in tracked if f.startswith("eplb/") and f.endswith(".py")]
    app = [f for f in tracked if f == "app.py" or f.startswith(("ui/", "pages/", "sample_data/")) and
           not f.endswith(".pyc")] + [".streamlit/config.toml"]
    missing = [f for f in library if f not in names] + [f for f in app if f"eplb_explorer/{f}" not in names]
    assert not missing, f"files left out of the wheel (add their package to pyproject.toml): {missing}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "eplb = eplb.cli:main" in scripts and "eplb-explorer = eplb.explorer:main" in scripts


def test_eplb_runs_in_a_fresh_venv_without_streamlit(installed, tmp_path):
    env_dir, _, _ = installed
    python = env_dir / "bin" / "python"
    probe = _run(env_dir, python, "-c", "import importlib.util, json, eplb, eplb.formats; print(json.dumps({"
                 "'file': eplb.__file__, 'streamlit': importlib.util.find_spec('streamlit') is not None, "
                 "'pandas': importlib.util.find_spec('pandas') is not None}))", cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert str(env_dir) in found["file"] and not found["streamlit"] and not found["pandas"], found

    done = _run(env_dir, env_dir / "bin" / "eplb", "--help", cwd=tmp_path)
    assert done.returncode == 0 and all(c in done.stdout for c in ("rebalance", "convert", "generate", "bench"))

    sample = ROOT / SAMPLE_TRACE
    done = _run(env_dir, env_dir / "bin" / "eplb", "rebalance", sample, "--redundant", 32, "--groups", 8,
                "--nodes", 4, "--gpus", 32, "-o", "placement.pt", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    after = float(re.search(r"after (\d\.\d+)", done.stdout).group(1))
    assert 0 < after <= 1 and "61 rows x 288 slots" in done.stdout  # DeepSeek-V3's decoder layers, for SGLang
    check = _run(env_dir, python, "-c", "import torch; m = torch.load('placement.pt', weights_only=True)"
                 "['physical_to_logical_map']; print(list(m.shape))", cwd=tmp_path)
    assert check.stdout.strip() == "[61, 288]", check.stderr

    done = _run(env_dir, env_dir / "bin" / "eplb", "rebalance", ROOT / "sample_data/deepseek-v3-zipf.csv",
                "--gpus", 8, cwd=tmp_path)  # CSV needs pandas, which the library does not require: said so
    assert done.returncode == 2 and "pip install" in done.stderr and done.stderr.count("\n") == 1, done.stderr

    done = _run(env_dir, env_dir / "bin" / "eplb-explorer", cwd=tmp_path)
    assert done.returncode == 2 and 'pip install "eplb-explorer[app]"' in done.stderr, done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_eplb_explorer_starts_the_app(tmp_path):
    """The launcher in this environment (which has the app's packages): the server answers its health check."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "eplb.explorer", "--server.port", str(port),
                                "--server.address", "127.0.0.1"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline, answer = time.monotonic() + 90, None
        while time.monotonic() < deadline and answer is None and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    answer = response.read().decode()
            except OSError:
                time.sleep(0.5)
        assert answer == "ok", process.stdout.read1(4000).decode() if process.poll() is not None else answer
    finally:
        process.terminate()
        process.wait(timeout=30)
