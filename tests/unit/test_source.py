"""What belongs to a predictor directory, and its content digest (the version id)."""

from pathlib import Path

from server.models import source


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_generated_and_cache_files_are_ignored(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "cog.yaml": "x",
            "predict.py": "y",
            ".cog/openapi_schema.json": "{}",
            "__pycache__/predict.cpython-311.pyc": "",
            ".git/HEAD": "ref",
            "weights/model.bin": "w",
        },
    )
    assert [p.as_posix() for p in source.files(root)] == [
        "cog.yaml",
        "predict.py",
        "weights/model.bin",
    ]


def test_dockerignore_with_exceptions(tmp_path: Path) -> None:
    """The last matching rule wins, as in Docker; '!' keeps a path."""
    root = tree(
        tmp_path,
        {
            ".dockerignore": "*\n!cog.yaml\n!predictors/hello\n",
            "cog.yaml": "x",
            "README.md": "r",
            "predictors/hello/predict.py": "p",
            "predictors/other/predict.py": "o",
        },
    )
    assert [p.as_posix() for p in source.files(root)] == ["cog.yaml", "predictors/hello/predict.py"]


def test_digest_is_content_addressed(tmp_path: Path) -> None:
    a = tree(tmp_path / "a", {"cog.yaml": "x", "predict.py": "y"})
    b = tree(tmp_path / "b", {"cog.yaml": "x", "predict.py": "y", ".cog/schema": "ignored"})
    assert source.digest(a, "o/m") == source.digest(b, "o/m")
    assert source.digest(a, "o/m") != source.digest(a, "o/other")  # ids are unique per model
    (b / "predict.py").write_text("changed")
    assert source.digest(a, "o/m") != source.digest(b, "o/m")
    assert len(source.digest(a, "o/m")) == 64


def test_snapshot_copies_only_the_predictor(tmp_path: Path) -> None:
    root = tree(tmp_path / "src", {"cog.yaml": "x", "predict.py": "y", ".cog/s": "z"})
    dest = tmp_path / "snap"
    source.snapshot(root, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["cog.yaml", "predict.py"]
    assert source.digest(dest, "o/m") == source.digest(root, "o/m")
