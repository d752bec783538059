"""The gateway on AWS Lambda: ``handler`` adapts ALB, Function URL and API Gateway events.

The regfront image runs it as ``python -m awslambdaric gateway.lambda_handler.handler`` (the
``lambda`` extra: mangum and awslambdaric). Lambda mounts no files, so the config comes from
``REGFRONT_CONFIG_YAML`` (the YAML itself) or ``REGFRONT_CONFIG`` (a file in the image), and
``REGFRONT_STORAGE`` replaces its ``storage:`` as for ``regfront serve``. The app is built on the
first event and kept for the life of the execution environment, with its caches.

Lambda freezes the process between events, so work the gateway does off the request path (miss
records, tag freshness checks) is given up to ``DRAIN_SECONDS`` after each response to finish.
Responses are buffered whole: keep ``gateway.blob_redirect`` on (blobs are 307s) and use
``on_miss: fallthrough``, not ``pull-through``, which streams blobs through the gateway.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from mangum import Mangum

from registry.config import Config, load_config, parse_config, with_overrides

CONFIG_TEXT_ENV = "REGFRONT_CONFIG_YAML"
DRAIN_SECONDS = 2.0


def config_from_environment() -> Config:
    """The config named by the environment; a mistake raises ConfigError (a failed init)."""
    text = os.environ.get(CONFIG_TEXT_ENV)
    config = (parse_config(text, CONFIG_TEXT_ENV) if text
              else load_config(os.environ.get("REGFRONT_CONFIG")))
    storage = os.environ.get("REGFRONT_STORAGE", "").split()
    return with_overrides(config, storage) if storage else config


class LambdaGateway:
    """A Lambda handler: the gateway for ``config_from_environment()``, built on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._adapter: Mangum | None = None

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if self._adapter is None or self._loop is None:
            from gateway.app import create_app

            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            # lifespan "off": Mangum would run startup and shutdown around every event, and the
            # shutdown closes the stores. Nothing needs closing when Lambda discards a process.
            self._adapter = Mangum(create_app(config_from_environment()), lifespan="off")
        asyncio.set_event_loop(self._loop)  # Mangum runs each event on the current loop
        response = self._adapter(event, context)
        self._drain(self._loop)
        return response

    @staticmethod
    def _drain(loop: asyncio.AbstractEventLoop) -> None:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=DRAIN_SECONDS))


handler = LambdaGateway()
