"""The cuBLAS 12 -> 13 shim (earshot.cuda_runtime).

CPU tests build fake libraries in tmp_path: a copy of the system's libpthread.so.0
(its SONAME is 15 characters, like libcublas.so.13) renamed by SONAME, and, where a C
compiler exists, a fake cuBLAS + cuBLASLt pair that exercises the Lt dependency. Every
test that changes what the dynamic loader has loaded runs in a subprocess.

GPU tests run where ``ctranslate2.get_cuda_device_count() > 0``: they build a small
random Whisper model and run it through the shim for each compute type.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import cast

import pytest

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO / "server", REPO):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from earshot import cuda_runtime as cr  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc dynamic loader only")


def _loaded_path(soname: str) -> Path | None:
    """Where the running process mapped ``soname`` from (after loading it)."""
    try:
        ctypes.CDLL(soname)
    except OSError:
        return None
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        if path.startswith("/") and Path(path).name.startswith(soname.split(".so")[0] + ".so"):
            return Path(path)
    return None


@pytest.fixture(scope="module")
def pthread_lib() -> Path:
    path = _loaded_path("libpthread.so.0")
    if path is None or cr.read_soname(path) != "libpthread.so.0":
        pytest.skip("no libpthread.so.0 with a SONAME to use as a fake library")
    return path


@pytest.fixture
def fake_cublas13(tmp_path: Path, pthread_lib: Path) -> Path:
    """A folder with a loadable 'libcublas.so.13' (no Lt next to it)."""
    d = tmp_path / "cuda13"
    cr.write_patched_copy(pthread_lib, d / cr.CUBLAS13, cr.CUBLAS13)
    return d


def _run(code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter that can import earshot; parse its last line."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "server"), str(REPO), full_env.get("PYTHONPATH", "")]
    )
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


_MAPS = """
def maps(name):
    from pathlib import Path
    return sorted({l.split()[-1] for l in Path('/proc/self/maps').read_text().splitlines()
                   if l.split()[-1].startswith('/') and name in l.split()[-1]})
"""


# --- ELF handling ---------------------------------------------------------------------


def test_read_soname_of_a_system_library(pthread_lib: Path) -> None:
    assert cr.read_soname(pthread_lib) == "libpthread.so.0"


def test_read_soname_of_non_elf_is_none(tmp_path: Path) -> None:
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"not an ELF file" * 10)
    assert cr.read_soname(junk) is None


def test_patched_copy_differs_only_in_the_soname_bytes(tmp_path: Path, pthread_lib: Path) -> None:
    dst = tmp_path / "out" / "libcublas.so.13"
    cr.write_patched_copy(pthread_lib, dst, "libcublas.so.13")
    src_bytes, dst_bytes = pthread_lib.read_bytes(), dst.read_bytes()
    assert len(src_bytes) == len(dst_bytes)
    diff = [i for i, (a, b) in enumerate(zip(src_bytes, dst_bytes, strict=True)) if a != b]
    assert diff and diff[-1] - diff[0] < len("libcublas.so.13")
    assert cr.read_soname(dst) == "libcublas.so.13"
    assert cr.read_soname(pthread_lib) == "libpthread.so.0"
    assert os.access(dst, os.X_OK)
    assert not list(dst.parent.glob(".*.tmp"))


def test_patched_copy_refuses_a_name_of_another_length(tmp_path: Path, pthread_lib: Path) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        cr.write_patched_copy(pthread_lib, tmp_path / "x.so", "libcublas.so.1")


# --- search -----------------------------------------------------------------------------


def test_find_cublas13_prefers_lt_next_to_cublas(tmp_path: Path) -> None:
    only_lt, both = tmp_path / "a", tmp_path / "b"
    for d in (only_lt, both):
        d.mkdir()
    (only_lt / cr.CUBLASLT13).touch()
    (both / cr.CUBLAS13).touch()
    (both / cr.CUBLASLT13).touch()
    found = cr.find_cublas13([only_lt, both])
    assert found == cr.CublasLibraries(both / cr.CUBLAS13, both / cr.CUBLASLT13)


def test_find_cublas13_takes_lt_from_another_folder(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lt").mkdir()
    (tmp_path / "lib" / cr.CUBLAS13).touch()
    (tmp_path / "lt" / cr.CUBLASLT13).touch()
    found = cr.find_cublas13([tmp_path / "lib", tmp_path / "lt"])
    assert found == cr.CublasLibraries(
        tmp_path / "lib" / cr.CUBLAS13, tmp_path / "lt" / cr.CUBLASLT13
    )


def test_find_cublas13_none_when_absent(tmp_path: Path) -> None:
    assert cr.find_cublas13([tmp_path]) is None


def test_candidate_dirs_cover_pip_torch_and_env_layouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    for sub in ("nvidia/cu13/lib", "nvidia/cublas/lib"):
        (site / sub).mkdir(parents=True)
    cuda_home = tmp_path / "cuda"
    (cuda_home / "lib64").mkdir(parents=True)
    extra = tmp_path / "extra"
    extra.mkdir()
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    monkeypatch.setenv("CUDA_HOME", str(cuda_home))
    dirs = cr.candidate_library_dirs([extra])
    assert dirs[0] == extra
    for expected in (site / "nvidia/cu13/lib", site / "nvidia/cublas/lib", cuda_home / "lib64"):
        assert expected in dirs
    assert len(dirs) == len(set(dirs))


# --- environment -----------------------------------------------------------------------


def _unset_restoring(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Unset ``names`` so that monkeypatch also undoes values the code under test sets.

    (A bare ``delenv`` of an unset variable records nothing, and a CUDA_CACHE_PATH left
    behind would send the GPU tests' subprocesses to a cold JIT cache.)
    """
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_jit_cache_defaults_to_a_persistent_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unset_restoring(monkeypatch, "CUDA_CACHE_PATH", "CUDA_CACHE_MAXSIZE")
    monkeypatch.setenv("EARSHOT_CACHE_DIR", str(tmp_path / "cache"))
    path = cr.configure_cuda_jit_cache()
    assert path == tmp_path / "cache" / "cuda-jit" and path.is_dir()
    assert os.environ["CUDA_CACHE_PATH"] == str(path)
    assert int(os.environ["CUDA_CACHE_MAXSIZE"]) >= 1024**3


def test_jit_cache_keeps_the_users_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_CACHE_PATH", str(tmp_path / "mine"))
    assert cr.configure_cuda_jit_cache(tmp_path / "other") == tmp_path / "mine"
    assert os.environ["CUDA_CACHE_PATH"] == str(tmp_path / "mine")


def test_cpu_device_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    _unset_restoring(monkeypatch, "CUDA_CACHE_PATH")
    assert cr.ensure_cublas12_compat("cpu") is None
    assert "CUDA_CACHE_PATH" not in os.environ


# --- the loader mechanisms, in fresh processes -----------------------------------------


def test_shim_makes_the_bare_cublas12_name_resolve(tmp_path: Path, fake_cublas13: Path) -> None:
    out = _run(
        _MAPS
        + f"""
import ctypes, json
from pathlib import Path
from earshot import cuda_runtime as cr
ret = cr.ensure_cublas12_compat(
    "cuda", search_dirs=[{str(fake_cublas13)!r}], shim_root=Path({str(tmp_path / "shim")!r}))
again = cr.ensure_cublas12_compat("cuda")
ctypes.CDLL("libcublas.so.12")
print(json.dumps({{"ret": ret, "again": again, "maps": maps("libcublas")}}))
""",
        env={"EARSHOT_CACHE_DIR": str(tmp_path / "cache")},
    )
    if out["ret"] is None:
        pytest.skip("this host has a real libcublas.so.12; the shim correctly stays out")
    ret = Path(str(out["ret"]))
    assert ret.name == "libcublas.so.12" and ret.is_relative_to(tmp_path / "shim")
    assert cr.read_soname(ret) == "libcublas.so.12"
    assert out["again"] == out["ret"]
    assert out["maps"] == [str(ret)]


def test_shim_copy_is_reused(tmp_path: Path, fake_cublas13: Path) -> None:
    libs = cr.find_cublas13([fake_cublas13])
    assert libs is not None
    first = cr.patched_cublas12_copy(libs, tmp_path / "shim")
    mtime = first.stat().st_mtime_ns
    assert cr.patched_cublas12_copy(libs, tmp_path / "shim") == first
    assert first.stat().st_mtime_ns == mtime


def test_a_symlink_alone_does_not_satisfy_the_bare_name(
    tmp_path: Path, fake_cublas13: Path
) -> None:
    """Why the shim copies: a symlink loaded by path keeps SONAME libcublas.so.13."""
    link = tmp_path / "links" / "libcublas.so.12"
    link.parent.mkdir()
    link.symlink_to(fake_cublas13 / cr.CUBLAS13)
    out = _run(f"""
import ctypes, json
ctypes.CDLL({str(link)!r})
try:
    ctypes.CDLL("libcublas.so.12")
    ok = True
except OSError:
    ok = False
print(json.dumps({{"bare_name_loaded": ok}}))
""")
    if out["bare_name_loaded"]:
        pytest.skip("this host has a real libcublas.so.12")
    assert out["bare_name_loaded"] is False


_FAKE_LT = "int cublasLtGetVersion(void) { return 130100; }\n"
_FAKE_CUBLAS = """
int cublasLtGetVersion(void);
int cublasGetVersion_v2(void *handle, int *version) {
    (void)handle;
    *version = cublasLtGetVersion() + 1;
    return 0;
}
"""


def test_shim_with_a_cublas_that_needs_lt(tmp_path: Path) -> None:
    """Fake cuBLAS whose DT_NEEDED Lt is only found because the shim preloads it."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the fake cuBLAS pair")
    d = tmp_path / "cuda13"
    d.mkdir()
    (d / "lt.c").write_text(_FAKE_LT)
    (d / "cb.c").write_text(_FAKE_CUBLAS)
    subprocess.run(
        [
            cc,
            "-shared",
            "-fPIC",
            "-Wl,-soname,libcublasLt.so.13",
            "-o",
            "libcublasLt.so.13",
            "lt.c",
        ],
        cwd=d,
        check=True,
    )
    subprocess.run(
        [cc, "-shared", "-fPIC", "-Wl,-soname,libcublas.so.13", "-Wl,-rpath,$ORIGIN",
         "-o", "libcublas.so.13", "cb.c", "-L.", "-l:libcublasLt.so.13"],
        cwd=d,
        check=True,
    )  # fmt: skip
    out = _run(
        f"""
import ctypes, json
from pathlib import Path
from earshot import cuda_runtime as cr
ret = cr.ensure_cublas12_compat(
    "cuda", search_dirs=[{str(d)!r}], shim_root=Path({str(tmp_path / "shim")!r}))
v = ctypes.c_int()
ctypes.CDLL("libcublas.so.12").cublasGetVersion_v2(None, ctypes.byref(v))
print(json.dumps({{"ret": ret, "version": v.value}}))
""",
        env={"EARSHOT_CACHE_DIR": str(tmp_path / "cache")},
    )
    if out["ret"] is None:
        pytest.skip("this host has a real libcublas.so.12")
    assert out["version"] == 130101


# --- GPU --------------------------------------------------------------------------------


requires_cuda = pytest.mark.gpu  # skipped where there is no CUDA device (conftest.py)


@pytest.fixture(scope="module")
def small_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from loadtest.random_model import WhisperDims, write_random_whisper_numpy

    dims = WhisperDims(
        n_mels=80, d_model=256, heads=4, encoder_layers=2, decoder_layers=2, ffn=1024
    )
    return write_random_whisper_numpy(tmp_path_factory.mktemp("whisper") / "m", dims, "float16")


_GPU_SCRIPT = """
import json, sys, time
import numpy as np
from earshot.cuda_runtime import ensure_cublas12_compat
shim = ensure_cublas12_compat("cuda")
import ctranslate2
from loadtest.random_model import read_vocabulary
model_dir, compute_type = sys.argv[1], sys.argv[2]
vocab = read_vocabulary(model_dir)
ids = {t: i for i, t in enumerate(vocab)}
x = np.random.default_rng(0).standard_normal((2, 80, 1000), dtype=np.float32)
t0 = time.perf_counter()
gpu = ctranslate2.models.Whisper(model_dir, device="cuda", compute_type=compute_type)
enc = gpu.encode(ctranslate2.StorageView.from_array(x), to_cpu=True)
first_s = time.perf_counter() - t0
out = gpu.generate(
    gpu.encode(ctranslate2.StorageView.from_array(x)),
    [[ids["<|startoftranscript|>"], ids["<|notimestamps|>"]]] * 2,
    beam_size=1, max_length=20, suppress_tokens=[ids["<|endoftext|>"]], suppress_blank=False)
cpu = ctranslate2.models.Whisper(model_dir, device="cpu", compute_type="float32")
ref = np.array(cpu.encode(ctranslate2.StorageView.from_array(x), to_cpu=True), dtype=np.float32)
got = np.array(enc.to(ctranslate2.DataType.float32))  # numpy has no bfloat16
rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
print(json.dumps({"shim": shim, "first_call_s": first_s, "rel_err_vs_cpu_fp32": rel,
                  "lengths": [len(r.sequences_ids[0]) for r in out], "maps": maps("libcublas")}))
"""

# Encoder output vs the CPU float32 reference (relative L2 error) for random weights.
_TOLERANCE = {"float32": 1e-3, "float16": 1e-2, "bfloat16": 5e-2, "int8_float16": 0.2, "int8": 0.2}


@requires_cuda
@pytest.mark.parametrize("compute_type", ["float16", "int8_float16", "bfloat16", "int8", "float32"])
def test_gpu_whisper_runs_through_the_shim(small_whisper: Path, compute_type: str) -> None:
    args = f"{str(small_whisper)!r}, {compute_type!r}"
    out = _run(_MAPS + _GPU_SCRIPT.replace("sys.argv[1], sys.argv[2]", args))
    print(compute_type, json.dumps(out))
    assert out["lengths"] == [10, 10]
    assert float(str(out["rel_err_vs_cpu_fp32"])) < _TOLERANCE[compute_type]
    maps = [Path(p) for p in cast(list[str], out["maps"])]
    assert maps, "no cuBLAS mapped after a GPU matrix product"
    if out["shim"] is not None:
        assert Path(str(out["shim"])) in maps


@requires_cuda
def test_gpu_shim_reports_what_it_did() -> None:
    out = _run(
        _MAPS
        + """
import json
from earshot.cuda_runtime import ensure_cublas12_compat, find_cublas13, read_soname
shim = ensure_cublas12_compat("cuda")
libs = find_cublas13()
print(json.dumps({"shim": shim, "soname": read_soname(shim) if shim else None,
                  "cublas13": str(libs.cublas) if libs else None, "maps": maps("libcublas")}))
"""
    )
    print(json.dumps(out))
    if out["shim"] is None:
        pytest.skip("a real libcublas.so.12 is installed; no shim needed")
    assert out["soname"] == "libcublas.so.12"
    assert out["cublas13"]
