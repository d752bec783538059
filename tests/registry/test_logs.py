"""Log configuration: JSON lines with trace ids; uvicorn's per-request access log stays off."""

from __future__ import annotations

import json
import logging

from registry.logs import JsonFormatter, configure


def test_uvicorns_access_log_is_silenced_and_its_errors_kept() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("json")
        assert logging.getLogger("uvicorn.access").propagate is False
        assert logging.getLogger("uvicorn.access").handlers == []
        assert logging.getLogger("uvicorn.error").propagate is True
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_json_lines_carry_fields() -> None:
    record = logging.LogRecord("regfront.access", logging.INFO, __file__, 1, "GET %s", ("/v2/",),
                               None)
    record.fields = {"status": 200}
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GET /v2/"
    assert line["status"] == 200
    assert line["logger"] == "regfront.access"
    assert "trace_id" not in line  # no span: no ids
