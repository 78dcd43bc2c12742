"""The OpenAPI 3.1 document at /api/v1/openapi.json.

Each API module describes its own paths next to its views with
``document(path, spec)`` and its shared schemas with ``schema(name, spec)``,
so the document cannot drift away from the code that serves it.
"""

from __future__ import annotations

PATHS: dict[str, dict] = {}
SCHEMAS: dict[str, dict] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    }
}


def document(path: str, spec: dict) -> None:
    PATHS.setdefault(path, {}).update(spec)


def schema(name: str, spec: dict) -> None:
    SCHEMAS[name] = spec


def openapi_document(base_url: str) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "GET THE SIGNAL API",
            "version": "1",
            "description": "Subscribers and articles for the GET THE SIGNAL newsletter.",
        },
        "servers": [{"url": f"{base_url}/api/v1"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
        "security": [{"bearer": []}],
        "paths": dict(sorted(PATHS.items())),
    }
