"""The OpenAPI description, made from the endpoint table and the pydantic schemas, so it cannot
drift from what the API does (`GET /openapi.json`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from photo_pipeline.api.routes import Endpoint

_PARAMETER = re.compile(r"{(\w+)(?::\w+)?}")
REF = "#/components/schemas/{model}"


def openapi_document(endpoints: Sequence[Endpoint], *, version: str) -> dict[str, Any]:
    listed = [e for e in endpoints if e.listed]
    models = _models(listed)
    keys, definitions = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    ref = {model: keys[(model, "validation")] for model in models}
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in listed:
        path = _PARAMETER.sub(r"{\1}", endpoint.path)
        paths.setdefault(path, {})[endpoint.method.lower()] = _operation(endpoint, ref)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "photo_pipeline API",
            "version": version,
            "description": "The site's front door: uploads through presigned URLs, their verification and cleanup, "
            "albums and their reconciliation. Send `Authorization: Bearer <PHOTO_API_TOKEN>`; errors are "
            '`{"error": "..."}`.',
        },
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }


def _models(endpoints: Sequence[Endpoint]) -> list[type[BaseModel]]:
    found: dict[type[BaseModel], None] = {}
    for endpoint in endpoints:
        if endpoint.request is not None:
            found[endpoint.request] = None
        for _status, _description, model in endpoint.responses:
            if model is not None:
                found[model] = None
    return list(found)


def _operation(endpoint: Endpoint, ref: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": endpoint.handler.__name__,
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
            for name in _PARAMETER.findall(endpoint.path)
        ]
        + [{"name": name, "in": "query", "required": False, "schema": schema, "description": text} for name, schema, text in endpoint.query],
        "responses": {
            str(status): {"description": description, **({"content": {"application/json": {"schema": ref[model]}}} if model else {})}
            for status, description, model in endpoint.responses
        },
    }
    if endpoint.request is not None:
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": ref[endpoint.request]}}}
    if endpoint.authenticated:
        operation["security"] = [{"bearer": []}]
    return operation
