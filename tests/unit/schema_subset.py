"""A JSON Schema (2020-12) validator for just the keywords of tests/data/compose-spec.json.

The project has no JSON Schema library among its dependencies, and the Compose schema uses few
keywords. `unknown_keywords` lets a test fail when a refreshed schema starts using one this
module does not implement, instead of silently accepting what it cannot check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# Keywords that constrain nothing: their presence is fine, their value is ignored.
ANNOTATIONS = {"$schema", "$id", "title", "description", "default", "deprecated", "$comment"}
ASSERTIONS = {
    "type", "enum", "required", "pattern", "minimum", "maximum", "uniqueItems",
    "properties", "patternProperties", "additionalProperties", "unevaluatedProperties",
    "items", "allOf", "anyOf", "oneOf", "$ref", "$defs",
}  # fmt: skip
# Keywords whose value is a map of name -> schema (the names are not keywords).
_SCHEMA_MAPS = {"properties", "patternProperties", "$defs"}

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def unknown_keywords(schema: Any) -> set[str]:
    """Keywords used anywhere in schema that this module neither checks nor ignores."""
    found: set[str] = set()
    for node in _subschemas(schema):
        found |= set(node) - ANNOTATIONS - ASSERTIONS
    return found


def _subschemas(node: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(node, dict):
        return
    yield node
    for key, value in node.items():
        if key in _SCHEMA_MAPS:
            for child in value.values():
                yield from _subschemas(child)
        elif isinstance(value, list) and key not in ("enum", "required", "type"):
            for child in value:
                yield from _subschemas(child)
        elif isinstance(value, dict):
            yield from _subschemas(value)


class Validator:
    """Validate instances against one root schema; errors are `path: message` strings."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def errors(self, instance: Any) -> list[str]:
        """Every error found, empty when the instance is valid."""
        return self._check(instance, self.root, "$")[0]

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _check(self, value: Any, schema: Any, path: str) -> tuple[list[str], set[str]]:
        """Errors, and the object keys this schema evaluated (for unevaluatedProperties)."""
        if schema is True or schema == {}:
            return [], set()
        if schema is False:
            return [f"{path}: not allowed here"], set()
        errors: list[str] = []
        seen: set[str] = set()
        for check in (self._ref, self._combinators, self._scalar, self._object, self._array):
            more, keys = check(value, schema, path)
            errors += more
            seen |= keys
        if "unevaluatedProperties" in schema and isinstance(value, dict):
            for key in sorted(set(value) - seen):
                more, _ = self._check(value[key], schema["unevaluatedProperties"], f"{path}.{key}")
                errors += [f"{e} (unevaluated property)" for e in more]
            seen = set(value)
        return errors, seen

    def _ref(self, value: Any, schema: dict[str, Any], path: str) -> tuple[list[str], set[str]]:
        if "$ref" not in schema:
            return [], set()
        return self._check(value, self._resolve(schema["$ref"]), path)

    def _combinators(
        self, value: Any, schema: dict[str, Any], path: str
    ) -> tuple[list[str], set[str]]:
        errors: list[str] = []
        seen: set[str] = set()
        for sub in schema.get("allOf", []):
            more, keys = self._check(value, sub, path)
            errors += more
            seen |= keys
        for word in ("anyOf", "oneOf"):
            if word not in schema:
                continue
            results = [self._check(value, sub, path) for sub in schema[word]]
            passed = [keys for errs, keys in results if not errs]
            if not passed or (word == "oneOf" and len(passed) > 1):
                why = [errs[0] for errs, _ in results if errs]
                errors.append(f"{path}: {len(passed)} of the {word} branches match; {why}")
            for keys in passed:
                seen |= keys
        return errors, seen

    def _scalar(self, value: Any, schema: dict[str, Any], path: str) -> tuple[list[str], set[str]]:
        errors = []
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_TYPES[t](value) for t in types):
                errors.append(f"{path}: {value!r} is not of type {'/'.join(types)}")
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
        pattern = schema.get("pattern")
        if isinstance(value, str) and pattern and not re.search(pattern, value):
            errors.append(f"{path}: {value!r} does not match {pattern!r}")
        if _TYPES["number"](value):
            if "minimum" in schema and value < schema["minimum"]:
                errors.append(f"{path}: {value} is below {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                errors.append(f"{path}: {value} is above {schema['maximum']}")
        return errors, set()

    def _object(self, value: Any, schema: dict[str, Any], path: str) -> tuple[list[str], set[str]]:
        if not isinstance(value, dict):
            return [], set()
        missing = [name for name in schema.get("required", []) if name not in value]
        errors = [f"{path}: {name!r} is required" for name in missing]
        seen: set[str] = set()
        for key, item in value.items():
            where = f"{path}.{key}"
            matched = False
            if key in schema.get("properties", {}):
                matched = True
                errors += self._check(item, schema["properties"][key], where)[0]
            for pattern, sub in schema.get("patternProperties", {}).items():
                if re.search(pattern, key):
                    matched = True
                    errors += self._check(item, sub, where)[0]
            if not matched and "additionalProperties" in schema:
                matched = True
                errors += self._check(item, schema["additionalProperties"], where)[0]
            if matched:
                seen.add(key)
        return errors, seen

    def _array(self, value: Any, schema: dict[str, Any], path: str) -> tuple[list[str], set[str]]:
        if not isinstance(value, list):
            return [], set()
        errors = []
        if "items" in schema:
            for i, item in enumerate(value):
                errors += self._check(item, schema["items"], f"{path}[{i}]")[0]
        if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
            errors.append(f"{path}: items are not unique")
        return errors, set()
