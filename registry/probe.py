"""The probe image: a tiny multi-platform image every gateway serves from memory, so a node can
prove that kubelet's pulls reach the gateway.

The node agent pulls ``<registry>/regfront-probe/node:<tag>`` through the CRI, exactly as kubelet
pulls, and checks the index digest containerd recorded. Only a gateway can answer with
``INDEX_DIGEST``: the upstream fallback has no such repository (``regfront-probe`` is not a valid
Docker Hub account name), so a pull that bypassed the gateway fails or records another digest.
Every byte is fixed: the digests are the same in every gateway and every release that keeps
these bytes.
"""

from __future__ import annotations

import json

from registry.digest import Digest
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST

# The name in the request path (before ``?ns=``): the probe answers for every registry.
NAME = "regfront-probe/node"
_CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
_LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
# An empty tar archive: two zero blocks. Uncompressed, so its digest is also its diff_id.
LAYER = b"\0" * 1024
# containerd checks a manifest's platform against the node's: one child per common platform.
PLATFORMS = (("amd64", None), ("arm64", None), ("arm", "v7"), ("ppc64le", None),
             ("s390x", None), ("riscv64", None))


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(Digest.from_bytes(data)), "size": len(data),
            **extra}


def _build() -> tuple[dict[Digest, bytes], dict[Digest, tuple[str, bytes]], bytes]:
    blobs = {Digest.from_bytes(LAYER): LAYER}
    manifests: dict[Digest, tuple[str, bytes]] = {}
    children = []
    for architecture, variant in PLATFORMS:
        platform = {"architecture": architecture, "os": "linux",
                    **({"variant": variant} if variant else {})}
        config = _json({**platform, "config": {"Labels": {"io.regfront.probe": "1"}},
                        "rootfs": {"type": "layers",
                                   "diff_ids": [str(Digest.from_bytes(LAYER))]}})
        blobs[Digest.from_bytes(config)] = config
        manifest = _json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": _descriptor(_CONFIG_TYPE, config),
                          "layers": [_descriptor(_LAYER_TYPE, LAYER)]})
        manifests[Digest.from_bytes(manifest)] = (OCI_MANIFEST, manifest)
        children.append(_descriptor(OCI_MANIFEST, manifest, platform=platform))
    index = _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
                   "annotations": {"io.regfront.probe": "pulled through a regfront gateway"}})
    manifests[Digest.from_bytes(index)] = (OCI_INDEX, index)
    return blobs, manifests, index


BLOBS, MANIFESTS, INDEX = _build()
INDEX_DIGEST = Digest.from_bytes(INDEX)


def reference(registry: str, tag: str = "latest") -> str:
    """The image reference a node pulls to probe ``registry``'s hosts file."""
    return f"{registry}/{NAME}:{tag}"


def is_probe(name: str) -> bool:
    """Whether a stored repository name (``ns`` applied) is the probe's, for any registry."""
    return name == NAME or name.endswith("/" + NAME)
