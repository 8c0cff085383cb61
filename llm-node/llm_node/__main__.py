"""`python -m llm_node`: serve the app with uvicorn on LLM_HOST:LLM_PORT."""

from __future__ import annotations

import sys

import uvicorn
from pydantic import ValidationError

from llm_node.config import Settings
from llm_node.logs import configure_logging
from llm_node.main import create_app


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        errors = "; ".join(
            f"LLM_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        print(f"llm-node: invalid settings: {errors}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep the JSON logging configured above
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
