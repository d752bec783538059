"""``GET /v2/<name>/referrers/<digest>``: an OCI index of manifests whose subject is digest.

Always an index, empty when there are none: a 404 would tell clients the API is unsupported.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from gateway.base import repository, resolver
from registry.digest import Digest
from registry.mediatypes import OCI_INDEX


async def list_referrers(request: Request) -> Response:
    name, headers = repository(request)
    subject = Digest.parse(request.path_params["digest"])
    descriptors = await resolver(request).referrers(name, subject)
    artifact_type = request.query_params.get("artifactType")
    if artifact_type:
        descriptors = [d for d in descriptors if d.get("artifactType") == artifact_type]
        headers["OCI-Filters-Applied"] = "artifactType"
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors})
    return Response(body.encode(), media_type=OCI_INDEX, headers=headers)
