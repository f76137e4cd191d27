"""Reading cog.yaml into what a runtime needs, and refusing what it cannot run."""

from pathlib import Path

import pytest

from server.runtime import cogyaml


def write(tmp_path: Path, text: str, files: tuple[str, ...] = ("predict.py",)) -> Path:
    (tmp_path / "cog.yaml").write_text(text)
    for name in files:
        (tmp_path / name).write_text("")
    return tmp_path


def test_minimal_config(tmp_path: Path) -> None:
    config = cogyaml.load(
        write(
            tmp_path,
            'build:\n  python_version: "3.11"\n  python_packages: ["numpy==2.1.0"]\n'
            'predict: "predict.py:Predictor"\nconcurrency:\n  max: 4\n'
            'environment: ["MODE=fast"]\n',
        )
    )
    assert config.predict_ref == "predict.py:Predictor"
    assert config.python_version == "3.11"
    assert config.packages == ("numpy==2.1.0",)
    assert config.concurrency == 4
    assert config.environment == {"MODE": "fast"}


def test_requirements_file(tmp_path: Path) -> None:
    write(tmp_path, 'build:\n  python_requirements: req.txt\nrun: "predict.py:Runner"\n')
    (tmp_path / "req.txt").write_text("# deps\nrequests==2.32.0\n\n")
    config = cogyaml.load(tmp_path)
    assert (config.packages, config.predict_ref) == (("requests==2.32.0",), "predict.py:Runner")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('predict: "predict.py:P"\nmodle: x\n', "unknown keys: modle"),
        ('build:\n  pyhton_version: "3.11"\npredict: "predict.py:P"\n', "unknown build keys"),
        ("build:\n  python_version: 3.11\n", "needs 'predict"),
        ('predict: "missing.py:P"\n', "does not exist"),
        ('predict: "predict.py:P"\nrun: "predict.py:P"\n', "both 'predict' and 'run'"),
        ('predict: "predict.py:P"\nenvironment: ["PATH=/x"]\n', "may not set PATH"),
        ('predict: "predict.py:P"\nconcurrency:\n  max: 0\n', "concurrency"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_bad_configs_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(cogyaml.CogConfigError, match=message):
        cogyaml.load(write(tmp_path, text))


def test_missing_cog_yaml(tmp_path: Path) -> None:
    with pytest.raises(cogyaml.CogConfigError, match=r"No cog\.yaml"):
        cogyaml.load(tmp_path)
