"""``GET /v2/<name>/tags/list``: ASCII order, ``n``/``last`` pagination with a ``Link``."""

from __future__ import annotations

import bisect
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.base import repository, resolver
from registry.errors import ErrorCode, RegistryError

MAX_PAGE = 10_000


def _page_size(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or int(value) > MAX_PAGE:
        raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, {"n": value[:20],
                                                                   "max": MAX_PAGE})
    return int(value)


async def list_tags(request: Request) -> Response:
    name, headers = repository(request)
    tags = await resolver(request).tag_list(name)
    n = _page_size(request.query_params.get("n"))
    last = request.query_params.get("last")
    start = bisect.bisect_right(tags, last) if last else 0
    page = tags[start:] if n is None else tags[start:start + n]
    if n is not None and page and start + n < len(tags):
        query = {"n": str(n), "last": page[-1]}
        if "ns" in request.query_params:
            query["ns"] = request.query_params["ns"]
        path_name = request.path_params["name"]
        headers["Link"] = f'</v2/{path_name}/tags/list?{urlencode(query)}>; rel="next"'
    return JSONResponse({"name": request.path_params["name"], "tags": page}, headers=headers)
