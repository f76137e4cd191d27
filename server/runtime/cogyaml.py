"""Read and check a predictor's ``cog.yaml`` into the facts a runtime needs."""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from server import errors

TOP_LEVEL_KEYS = {"build", "predict", "run", "train", "concurrency", "environment", "image"}
TOP_LEVEL_KEYS |= {"tests", "weights"}
BUILD_KEYS = {
    "python_version",
    "python_packages",
    "python_requirements",
    "system_packages",
    "run",
    "gpu",
    "cuda",
    "cudnn",
    "sdk_version",
    "pre_install",
    "cog_runtime",
}
RESERVED_ENV = {"PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONUNBUFFERED"}
RESERVED_ENV_PREFIXES = ("R8_", "REPLICATE_", "CUDA_", "NVIDIA_", "NV_", "COG_", "KUBERNETES_")
DEFAULT_PYTHON = "3.11"


class CogConfigError(errors.APIError):
    """cog.yaml is not valid."""

    status_code = 422
    title = "Invalid cog.yaml"


@dataclass(frozen=True)
class CogConfig:
    predict_ref: str
    """``path/to/predict.py:Predictor``, relative to the model directory."""
    python_version: str
    packages: tuple[str, ...]
    """pip requirement lines, from python_packages or python_requirements."""
    concurrency: int | None
    gpu: bool
    environment: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


def load(model_dir: Path) -> CogConfig:
    path = model_dir / "cog.yaml"
    if not path.is_file():
        raise CogConfigError(f"No cog.yaml in {model_dir}.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CogConfigError(f"cog.yaml is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise CogConfigError("cog.yaml must be a mapping.")
    return parse(raw, model_dir)


def parse(raw: dict[str, Any], model_dir: Path) -> CogConfig:
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        raise CogConfigError(f"cog.yaml has unknown keys: {', '.join(unknown)}.")
    build = raw.get("build") or {}
    if not isinstance(build, dict):
        raise CogConfigError("cog.yaml 'build' must be a mapping.")
    unknown = sorted(set(build) - BUILD_KEYS)
    if unknown:
        raise CogConfigError(f"cog.yaml has unknown build keys: {', '.join(unknown)}.")

    if raw.get("predict") and raw.get("run"):
        raise CogConfigError("cog.yaml sets both 'predict' and 'run'; use one.")
    ref = raw.get("run") or raw.get("predict")
    if not isinstance(ref, str) or not re.fullmatch(r"[\w./-]+\.py:\w+", ref):
        raise CogConfigError("cog.yaml needs 'predict: \"predict.py:Predictor\"' (or 'run:').")
    if not (model_dir / ref.partition(":")[0]).is_file():
        raise CogConfigError(f"The predictor file in '{ref}' does not exist.")

    python_version = str(build.get("python_version", DEFAULT_PYTHON))
    if not re.fullmatch(r"3\.\d+", python_version):
        raise CogConfigError(f"build.python_version {python_version!r} is not like '3.11'.")

    if build.get("python_packages") and build.get("python_requirements"):
        raise CogConfigError("Set build.python_packages or build.python_requirements, not both.")
    packages: list[str] = []
    if build.get("python_packages"):
        packages = [str(p) for p in build["python_packages"]]
    elif build.get("python_requirements"):
        req = model_dir / str(build["python_requirements"])
        if not req.is_file():
            raise CogConfigError(f"build.python_requirements file {req.name} does not exist.")
        packages = [
            line.strip()
            for line in req.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]

    concurrency = None
    conc = raw.get("concurrency")
    if conc is not None:
        if not isinstance(conc, dict) or not isinstance(conc.get("max"), int) or conc["max"] < 1:
            raise CogConfigError("cog.yaml 'concurrency' must be {max: <positive int>}.")
        concurrency = int(conc["max"])

    environment: dict[str, str] = {}
    for item in raw.get("environment") or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise CogConfigError(f"cog.yaml environment entry {item!r} is not KEY=VALUE.")
        if key in RESERVED_ENV or key.startswith(RESERVED_ENV_PREFIXES):
            raise CogConfigError(f"cog.yaml environment may not set {key}.")
        environment[key] = value

    return CogConfig(
        predict_ref=ref,
        python_version=python_version,
        packages=tuple(packages),
        concurrency=concurrency,
        gpu=bool(build.get("gpu", False)),
        environment=environment,
        raw=raw,
    )
