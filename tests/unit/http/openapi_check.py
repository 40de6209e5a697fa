"""A small checker of responses against the OpenAPI document, for the subset of OpenAPI
3.0 / JSON Schema that `workstream/http/openapi.py` uses. It keeps the document honest
without a schema-validation dependency; unsupported keywords fail loudly, so the checker
cannot silently pass a schema it does not understand."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from falcon.testing import Result

_IGNORED = {"description", "default", "format", "nullable", "example"}
_CHECKED = {
    "$ref",
    "type",
    "enum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "maxProperties",
    "anyOf",
    "oneOf",
    "not",
}
_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def validate(document: dict[str, Any], value: Any, schema: dict[str, Any], where: str = "$"):
    schema = resolve(document, schema)
    unknown = set(schema) - _IGNORED - _CHECKED
    assert not unknown, f"{where}: the checker does not support {unknown}"
    if value is None and schema.get("nullable"):
        return
    if "type" in schema:
        expected = _TYPES[schema["type"]]
        is_bool = isinstance(value, bool)
        assert isinstance(value, expected) and (schema["type"] == "boolean" or not is_bool), (
            f"{where}: {value!r} is not {schema['type']}"
        )
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    _check_format(value, schema.get("format"), where)
    if isinstance(value, str):
        assert len(value) >= schema.get("minLength", 0), where
        assert len(value) <= schema.get("maxLength", len(value)), where
        if "pattern" in schema:
            assert _ecma_search(schema["pattern"], value), (
                f"{where}: {value!r} !~ {schema['pattern']}"
            )
    if isinstance(value, int | float) and not isinstance(value, bool):
        assert value >= schema.get("minimum", value), where
        assert value <= schema.get("maximum", value), where
    if isinstance(value, list):
        assert schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value))
        for index, item in enumerate(value):
            if "items" in schema:
                validate(document, item, schema["items"], f"{where}[{index}]")
    if isinstance(value, dict):
        _validate_object(document, value, schema, where)
    if "anyOf" in schema:
        assert sum(matches(document, value, option) for option in schema["anyOf"]) >= 1, where
    if "oneOf" in schema:
        assert sum(matches(document, value, option) for option in schema["oneOf"]) == 1, where
    if "not" in schema:
        assert not matches(document, value, schema["not"]), where


def _ecma_search(pattern: str, value: str) -> bool:
    """JSON Schema patterns are ECMA-262: there `$` matches only at the very end, while
    Python's also matches before a final newline."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.search(pattern, value) is not None


def _validate_object(document: dict[str, Any], value: dict, schema: dict, where: str) -> None:
    for name in schema.get("required", []):
        assert name in value, f"{where}: missing {name!r}"
    assert len(value) <= schema.get("maxProperties", len(value)), where
    properties = schema.get("properties", {})
    for name, item in value.items():
        if name in properties:
            validate(document, item, properties[name], f"{where}.{name}")
        elif schema.get("additionalProperties", True) is False:
            raise AssertionError(f"{where}: unexpected property {name!r}")


def matches(document: dict[str, Any], value: Any, schema: dict[str, Any]) -> bool:
    try:
        validate(document, value, schema)
    except AssertionError:
        return False
    return True


def _check_format(value: Any, fmt: str | None, where: str) -> None:
    if not isinstance(value, str) or fmt is None:
        return
    if fmt == "date-time":
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value)
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif fmt == "uuid":
        uuid.UUID(value)


def check_response(document: dict[str, Any], method: str, template: str, result: Result) -> None:
    """Assert that `result` is a response the document allows for this operation."""
    operation = document["paths"][template][method.lower()]
    status = str(result.status_code)
    assert status in operation["responses"], f"{method} {template}: {status} is not documented"
    response = resolve(document, operation["responses"][status])
    for name, header in response.get("headers", {}).items():
        header = resolve(document, header)
        value = result.headers.get(name)
        if value is None:
            assert not header.get("required"), f"{method} {template} {status}: no {name}"
            continue
        if header["schema"].get("type") == "integer":
            value = int(value)
        validate(document, value, header["schema"], f"header {name}")
    content = response.get("content")
    if content is None:
        assert not result.content, f"{method} {template} {status}: an undocumented body"
        return
    media_type = result.headers["content-type"].split(";")[0].strip()
    assert media_type in content, f"{method} {template} {status}: {media_type} undocumented"
    if media_type == "application/json":
        validate(document, result.json, content[media_type]["schema"])
