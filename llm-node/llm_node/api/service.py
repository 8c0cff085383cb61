"""The service endpoints: liveness, readiness, metrics and the model list (GET and HEAD)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llm_node.api.driver import not_ready_reason
from llm_node.api.errors import APIError
from llm_node.config import Settings

router = APIRouter()
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def get(path: str) -> Callable[[Endpoint], Endpoint]:
    """A GET route that also answers HEAD (uptime checks and `curl -I` use HEAD)."""

    def register(endpoint: Endpoint) -> Endpoint:
        router.add_api_route(path, endpoint, methods=["GET"])
        router.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)
        return endpoint

    return register


@get("/health")
async def health() -> dict[str, str]:
    """Liveness: answers at once, whatever the model is doing."""
    return {"status": "ok"}


@get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness: 200 only once the model is loaded."""
    reason = not_ready_reason(request.app.state.engine)
    if reason is None:
        return JSONResponse(
            {"status": "ready", "model": request.app.state.settings.served_model_name}
        )
    return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)


@get("/metrics")
async def metrics(request: Request) -> PlainTextResponse:
    registry = request.app.state.metrics.registry
    return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def model_card(request: Request) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    return {
        "id": settings.served_model_name,
        "object": "model",
        "created": request.app.state.started_at,
        "owned_by": "llm-node",
    }


@get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(request)]}


@get("/v1/models/{model}")
async def retrieve_model(request: Request, model: str) -> dict[str, Any]:
    """The served model (the openai SDK's `models.retrieve`); 404 for any other id."""
    card = model_card(request)
    if model != card["id"]:
        raise APIError(404, f"The model '{model}' does not exist", "model_not_found", param="model")
    return card
