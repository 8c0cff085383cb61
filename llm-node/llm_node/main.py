"""The application factory: `create_app(settings)` builds an app; nothing is global."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from llm_node import __version__
from llm_node.api.errors import install_error_handlers
from llm_node.api.middleware import (
    COUNTED_ENDPOINTS,
    GENERATING_ENDPOINTS,
    AccessLogMiddleware,
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    OverloadMiddleware,
)
from llm_node.api.routes import router as generation_router
from llm_node.api.service import router as service_router
from llm_node.config import Settings
from llm_node.engine import Engine
from llm_node.metrics import Metrics

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    metrics.create_endpoint_series(COUNTED_ENDPOINTS, GENERATING_ENDPOINTS)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = Engine(settings, metrics)
        app.state.engine = engine
        engine.start()  # loads the model on the worker thread: /health answers meanwhile
        try:
            yield
        finally:
            await asyncio.to_thread(engine.stop)

    app = FastAPI(
        title="llm-node",
        version=__version__,
        description="OpenAI-compatible API for one GGUF model on CPU (gpt4all).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.started_at = int(time.time())
    install_error_handlers(app)
    app.include_router(service_router)
    app.include_router(generation_router)
    # Added last = outermost: the access log sees every answer, including 401 and 413.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(OverloadMiddleware, state=app.state)
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_key_list)
    if settings.cors_origin_list:
        # Outside the key check: a browser's preflight carries no Authorization header.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["Retry-After", "X-Request-ID"],
            max_age=600,
        )
    app.add_middleware(AccessLogMiddleware, metrics=metrics)
    return app
