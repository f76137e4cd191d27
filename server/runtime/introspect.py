"""Build a predictor's OpenAPI document by introspection, run *inside the predictor's venv*.

Cog 0.23.1 loads ``.cog/openapi_schema.json`` but never writes it (the ``cog`` CLI's static parser
does, and that CLI is not on PyPI). Without the file coglet skips input validation and SSE, so the
gateway runs this script with the model venv's interpreter, cwd = the model directory:

    <venv>/bin/python introspect.py predict.py:Predictor OUT.json

It uses only the standard library and the cog SDK's own inspector, and follows the Go generator's
rules (``x-order``, titles, choices as ``allOf: [$ref]`` enum components, ``nullable``, required).
It writes ``{"schema", "is_async", "concurrent_max"}`` to OUT.json (stdout belongs to user code).
"""

import dataclasses
import importlib.util
import inspect
import json
import sys
import warnings
from pathlib import Path
from typing import Any


def _load(ref: str) -> tuple[str, str]:
    file_part, _, attr = ref.partition(":")
    path = Path(file_part)
    module_name = path.with_suffix("").as_posix().replace("/", ".").lstrip(".")
    sys.path.insert(0, str(Path.cwd()))
    sys.path.insert(0, str(path.parent.resolve()))
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load predictor file {file_part}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module_name, attr or "Predictor"


def _default_of(field: Any) -> Any:
    default = field.default
    if isinstance(default, dataclasses.Field):
        if default.default_factory is not dataclasses.MISSING:
            return default.default_factory()
        if default.default is not dataclasses.MISSING:
            return default.default
        return None
    return default


def _input_schema(info: Any, adt: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    enums: dict[str, Any] = {}
    for name, field in info.inputs.items():
        prop: dict[str, Any] = {"x-order": field.order}
        if field.choices is not None:
            prop["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
            enums[name] = {
                "title": name,
                "description": "An enumeration.",
                "enum": list(field.choices),
                **field.type.primitive.json_type(),
            }
        else:
            prop["title"] = name.replace("_", " ").title()
            prop.update(field.type.json_type())
        default = _default_of(field)
        if default is None:
            if field.type.repetition in {adt.Repetition.REQUIRED, adt.Repetition.REPEATED}:
                required.append(name)
        else:
            prop["default"] = field.type.json_encode(field.type.normalize(default))
        if field.type.repetition is adt.Repetition.OPTIONAL:
            prop["nullable"] = True
        for key, value in (
            ("description", field.description),
            ("minimum", field.ge),
            ("maximum", field.le),
            ("minLength", field.min_length),
            ("maxLength", field.max_length),
            ("pattern", field.regex),
            ("deprecated", field.deprecated),
        ):
            if value is not None:
                prop[key] = value
        properties[name] = prop
    schema: dict[str, Any] = {"title": "Input", "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema, enums


def _document(info: Any, adt: Any) -> dict[str, Any]:
    input_schema, enums = _input_schema(info, adt)
    output_schema = info.output.json_type()
    streaming = output_schema.get("x-cog-array-type") == "iterator"
    request = {
        "title": "PredictionRequest",
        "type": "object",
        "properties": {
            "id": {"title": "Id", "type": "string"},
            "input": {"$ref": "#/components/schemas/Input"},
        },
    }
    ok = {"description": "Successful Response", "content": {"application/json": {"schema": {}}}}
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {
            "/": {"get": {"summary": "Root", "operationId": "root__get", "responses": {"200": ok}}},
            "/predictions": {
                "post": {
                    "summary": "Predict",
                    "description": "Run a single prediction on the model",
                    "operationId": "predict_predictions_post",
                    "x-cog-streaming": streaming,
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PredictionRequest"}
                            }
                        }
                    },
                    "responses": {"200": ok},
                }
            },
        },
        "components": {
            "schemas": {
                "Input": input_schema,
                "Output": output_schema,
                "PredictionRequest": request,
                "Status": {
                    "title": "Status",
                    "description": "An enumeration.",
                    "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
                    "type": "string",
                },
                **enums,
            }
        },
    }


def main(argv: list[str]) -> None:
    ref, out = argv[1], argv[2]
    warnings.simplefilter("ignore", DeprecationWarning)
    from cog import _adt as adt
    from cog import _inspector

    module_name, attr = _load(ref)
    info = _inspector.create_predictor(module_name, attr)
    target = getattr(sys.modules[module_name], attr)
    fn = target
    if inspect.isclass(target):
        _, fn = _inspector._selected_predict_method(target, f"{module_name}.{attr}")
    is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
    result = {
        "schema": _document(info, adt),
        "is_async": is_async,
        "concurrent_max": getattr(fn, "__cog_concurrent_max__", None),
    }
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
