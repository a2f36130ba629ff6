"""Let the PyPI CTranslate2 wheel (built for CUDA 12) run on a CUDA 13 host.

Theory of operation
-------------------
The ``ctranslate2`` 4.x wheel on PyPI links no CUDA library at load time. It carries
the CUDA 12.8 runtime statically (a 580-series driver runs it) and, at the first GPU
matrix product, calls ``dlopen("libcublas.so.12")`` and looks its cuBLAS functions up
by unversioned name. cuBLAS 13 exports the same functions with the same prototypes,
so the only thing missing on a host that has CUDA 13 alone (``nvidia-cublas`` 13.x
wheel, PyTorch cu130, ``/usr/local/cuda-13``) is the *name* ``libcublas.so.12``.

glibc resolves a bare-name ``dlopen`` in this order:

1. an object already loaded in the process whose load name or ``DT_SONAME`` equals
   the requested name;
2. the caller's RPATH, ``LD_LIBRARY_PATH``, RUNPATH, ``/etc/ld.so.cache``, ``/lib``...

``LD_LIBRARY_PATH`` is read once, when the process starts, so setting it from Python
does nothing for the running interpreter. This module therefore uses rule 1, in
process, with nothing installed and nothing re-executed:

* find ``libcublas.so.13`` and ``libcublasLt.so.13`` (pip ``nvidia`` packages on
  ``sys.path``, PyTorch's lib folder, ``$CUDA_HOME``, ``/usr/local/cuda*``,
  ``LD_LIBRARY_PATH``, the ldconfig cache);
* copy ``libcublas.so.13`` once into a cache folder
  (``~/.cache/earshot/cuda-compat/``) and rewrite, in place, the bytes of its
  ``DT_SONAME`` string from ``libcublas.so.13`` to ``libcublas.so.12`` (same length,
  so nothing else in the file moves);
* ``dlopen`` ``libcublasLt.so.13`` and then the patched copy by full path
  (``RTLD_LOCAL``, so nothing leaks into the global symbol scope; the copy's
  ``DT_NEEDED libcublasLt.so.13`` matches the already-loaded Lt by SONAME).

From then on CTranslate2's ``dlopen("libcublas.so.12")`` returns the patched copy.
A plain symlink named ``libcublas.so.12`` is not enough in process: a symlink loaded
by path keeps the SONAME ``libcublas.so.13``, so the bare name never matches it.

CTranslate2's wheel carries GPU code for sm_53..sm_86 plus compute_86 PTX, so on
newer GPUs (H100 is sm_90) the driver JIT-compiles its kernels when first used.
:func:`configure_cuda_jit_cache` points ``CUDA_CACHE_PATH`` at a persistent folder
so that cost is paid once per host, not once per process.

Everything here must run before the first CUDA call of the process (the JIT cache
variables are read at driver initialisation; cuBLAS is looked up at the first GPU
matrix product).

Checked on an H100 with CUDA 13 only (driver 580, cuBLAS 13 from PyTorch's ``nvidia``
pip package; ``loadtest/results/gpu_h100_loader_experiments.json``): without the shim
CTranslate2 fails with "Library libcublas.so.12 is not found or cannot be loaded"; a
symlink preloaded by path fails the same way; the symlink folder on LD_LIBRARY_PATH and
the SONAME-patched copy both work, for float16, int8_float16, bfloat16, int8 and
float32. The first GPU call of a process took 14-16 s with a cold JIT cache and about
0.5 s with a warm one (cache ~14 MB).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import logging
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from earshot.model_store import cache_root

__all__ = [
    "CUBLAS12",
    "CUBLAS13",
    "CUBLASLT13",
    "CublasLibraries",
    "cache_root",
    "candidate_library_dirs",
    "configure_cuda_jit_cache",
    "ensure_cublas12_compat",
    "find_cublas13",
    "patched_cublas12_copy",
    "read_soname",
    "write_patched_copy",
]

log = logging.getLogger("earshot.cuda")

CUBLAS12 = "libcublas.so.12"
CUBLAS13 = "libcublas.so.13"
CUBLASLT13 = "libcublasLt.so.13"
_CUDA_DRIVER = "libcuda.so.1"
_DEFAULT_JIT_CACHE_BYTES = 4 * 1024**3

# Libraries we loaded; kept referenced so they are never unloaded, and so a second
# call returns the same answer without touching the file system again.
_handles: list[ctypes.CDLL] = []
_active: str | None = None


@dataclass(frozen=True)
class CublasLibraries:
    """A CUDA 13 cuBLAS found on this host."""

    cublas: Path
    cublas_lt: Path | None


def configure_cuda_jit_cache(cache_dir: Path | None = None) -> Path:
    """Give the driver's PTX JIT a persistent cache, unless the user chose one.

    Why: the wheel has no sm_90 code, so each new process on an H100 would
    otherwise JIT-compile CTranslate2's kernels again. The driver reads these
    variables at initialisation, so call this before the first CUDA call.
    """
    path = Path(cache_dir) if cache_dir is not None else cache_root() / "cuda-jit"
    if "CUDA_CACHE_PATH" in os.environ:
        return Path(os.environ["CUDA_CACHE_PATH"])
    path.mkdir(parents=True, exist_ok=True)
    os.environ["CUDA_CACHE_PATH"] = str(path)
    os.environ.setdefault("CUDA_CACHE_MAXSIZE", str(_DEFAULT_JIT_CACHE_BYTES))
    return path


def _can_dlopen(name: str) -> bool:
    """Whether the dynamic loader can load ``name`` (a bare SONAME or a path)."""
    try:
        _handles.append(ctypes.CDLL(name))
    except OSError:
        return False
    return True


def _site_dirs() -> list[Path]:
    return [Path(p) for p in sys.path if p and Path(p).is_dir()]


def _ldconfig_dirs(soname: str) -> list[Path]:
    """Folders that the ldconfig cache lists for ``soname``."""
    for exe in ("/sbin/ldconfig", "/usr/sbin/ldconfig", shutil.which("ldconfig")):
        if not exe or not Path(exe).exists():
            continue
        try:
            out = subprocess.run(
                [exe, "-p"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        dirs = []
        for line in out.splitlines():
            name, _, target = line.strip().partition(" => ")
            if name.split(" ", 1)[0] == soname and target:
                dirs.append(Path(target).parent)
        return dirs
    return []


def candidate_library_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    """Folders where a CUDA 13 cuBLAS may live, most specific first, without duplicates."""
    dirs: list[Path] = [Path(p) for p in extra]
    for site in _site_dirs():
        nvidia = site / "nvidia"
        if nvidia.is_dir():
            dirs += [nvidia / "cu13" / "lib", nvidia / "cublas" / "lib"]
            dirs += sorted(p for p in nvidia.glob("*/lib") if p.is_dir())
    try:
        torch_spec = importlib.util.find_spec("torch")  # locates; does not import torch
    except (ImportError, ValueError):
        torch_spec = None
    if torch_spec is not None and torch_spec.submodule_search_locations:
        dirs += [Path(p) / "lib" for p in torch_spec.submodule_search_locations]
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            root = Path(os.environ[var])
            dirs += [root / "lib64", root / "targets" / "x86_64-linux" / "lib"]
    cuda_roots = [
        Path("/usr/local/cuda"),
        *sorted(Path("/usr/local").glob("cuda-13*"), reverse=True),
    ]
    for root in cuda_roots:
        dirs += [root / "lib64", root / "targets" / "x86_64-linux" / "lib"]
    dirs += [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    dirs += _ldconfig_dirs(CUBLAS13)
    seen: set[str] = set()
    unique = []
    for d in dirs:
        key = str(d)
        if key not in seen and d.is_dir():
            seen.add(key)
            unique.append(d)
    return unique


def find_cublas13(search_dirs: Sequence[str | Path] | None = None) -> CublasLibraries | None:
    """Locate ``libcublas.so.13`` and, preferably next to it, ``libcublasLt.so.13``."""
    dirs = [Path(d) for d in search_dirs] if search_dirs is not None else candidate_library_dirs()
    for d in dirs:
        lib = d / CUBLAS13
        if lib.is_file():
            lt = d / CUBLASLT13
            if not lt.is_file():
                lt_found = next((x / CUBLASLT13 for x in dirs if (x / CUBLASLT13).is_file()), None)
                lt = lt_found if lt_found is not None else lt
            return CublasLibraries(lib, lt if lt.is_file() else None)
    return None


# --- ELF: read and rewrite DT_SONAME ------------------------------------------------

_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_STRTAB, _DT_SONAME = 0, 5, 14


def _soname_location(path: Path) -> tuple[int, str] | None:
    """File offset and text of the DT_SONAME string of a 64-bit little-endian ELF."""
    with open(path, "rb") as f:
        ident = f.read(64)
        if len(ident) < 64 or ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
            return None
        phoff = struct.unpack_from("<Q", ident, 0x20)[0]
        phentsize, phnum = struct.unpack_from("<HH", ident, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
        dynamic: tuple[int, int] | None = None
        for i in range(phnum):
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
                "<IIQQQQ", table, i * phentsize
            )
            if p_type == _PT_LOAD:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == _PT_DYNAMIC:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return None
        f.seek(dynamic[0])
        raw = f.read(dynamic[1])
        strtab_vaddr = soname_index = None
        for off in range(0, len(raw) - 15, 16):
            tag, val = struct.unpack_from("<qQ", raw, off)
            if tag == _DT_NULL:
                break
            if tag == _DT_STRTAB:
                strtab_vaddr = val
            elif tag == _DT_SONAME:
                soname_index = val
        if strtab_vaddr is None or soname_index is None:
            return None
        strtab_offset = next(
            (o + strtab_vaddr - v for v, o, n in loads if v <= strtab_vaddr < v + n), None
        )
        if strtab_offset is None:
            return None
        where = strtab_offset + soname_index
        f.seek(where)
        text = f.read(256).split(b"\0", 1)[0]
        return where, text.decode("ascii", "replace")


def read_soname(path: str | Path) -> str | None:
    """The DT_SONAME of a shared library, or None (not a 64-bit LE ELF, or none set)."""
    found = _soname_location(Path(path))
    return found[1] if found else None


def write_patched_copy(src: str | Path, dst: str | Path, new_soname: str) -> None:
    """Copy ``src`` to ``dst`` with its DT_SONAME rewritten to ``new_soname``.

    The new name must have the length of the old one: the string is overwritten in
    place, so no offset in the file changes. The copy is written to a temporary name
    and renamed, so concurrent processes never see half a file.
    """
    src, dst = Path(src), Path(dst)
    found = _soname_location(src)
    if found is None:
        raise ValueError(f"{src}: no DT_SONAME found (not a 64-bit little-endian ELF?)")
    where, old = found
    if len(old) != len(new_soname):
        raise ValueError(f"{src}: SONAME {old!r} and {new_soname!r} differ in length")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    with open(tmp, "r+b") as f:
        f.seek(where)
        f.write(new_soname.encode("ascii"))
    os.chmod(tmp, 0o755)
    os.replace(tmp, dst)


def _fingerprint(path: Path) -> str:
    st = path.stat()
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def patched_cublas12_copy(libs: CublasLibraries, shim_root: Path | None = None) -> Path:
    """Path of a cached copy of ``libs.cublas`` whose SONAME is ``libcublas.so.12``.

    Keyed by the source's path, size and mtime: a cuBLAS upgrade makes a new copy.
    """
    root = shim_root if shim_root is not None else cache_root() / "cuda-compat"
    dst = root / f"cublas12-{_fingerprint(libs.cublas)}" / CUBLAS12
    if not (dst.is_file() and dst.stat().st_size == libs.cublas.stat().st_size):
        log.info("writing %s (copy of %s with SONAME %s)", dst, libs.cublas, CUBLAS12)
        write_patched_copy(libs.cublas, dst, CUBLAS12)
    return dst


def _wants_cuda(device: str) -> bool:
    if device == "cuda" or device.startswith("cuda:"):
        return True
    # "auto" picks CUDA only where a driver exists; without one there is nothing to fix.
    return device == "auto" and _can_dlopen(_CUDA_DRIVER)


def ensure_cublas12_compat(
    device: str = "cuda",
    *,
    search_dirs: Sequence[str | Path] | None = None,
    shim_root: Path | None = None,
) -> str | None:
    """Make ``dlopen("libcublas.so.12")`` succeed when only CUDA 13 cuBLAS exists.

    Call before the first GPU model is created. Returns the path of the library that
    ``libcublas.so.12`` now resolves to when this function provided it, or None when
    it left the process alone: CPU device, a real cuBLAS 12 is loadable, or no
    CUDA 13 cuBLAS was found (then CTranslate2 reports its own error). Also sets up
    the persistent JIT cache. Idempotent and cheap after the first call.
    """
    global _active
    if _active is not None:
        return _active
    if not _wants_cuda(device):
        return None
    configure_cuda_jit_cache()
    if _can_dlopen(CUBLAS12):
        log.debug("%s is loadable as installed; no shim needed", CUBLAS12)
        return None
    libs = find_cublas13(search_dirs)
    if libs is None:
        log.warning("no %s or %s found; CUDA inference will fail", CUBLAS12, CUBLAS13)
        return None
    if libs.cublas_lt is not None:
        # Loaded first so the copy's DT_NEEDED libcublasLt.so.13 matches it by SONAME.
        _handles.append(ctypes.CDLL(str(libs.cublas_lt)))
    copy = patched_cublas12_copy(libs, shim_root)
    _handles.append(ctypes.CDLL(str(copy)))
    if not _can_dlopen(CUBLAS12):  # the bare name must now match the loaded copy
        log.warning("loaded %s but %s still does not resolve", copy, CUBLAS12)
        return None
    log.info("%s -> %s (SONAME-patched copy of %s)", CUBLAS12, copy, libs.cublas)
    _active = str(copy)
    return _active
