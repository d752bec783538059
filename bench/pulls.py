"""Full pulls through regfront against pulls straight from registry:2 on the same store.

Images of one layer of random incompressible bytes (10 MB, 100 MB, 1 GB) and one of five
layers, built with ``tests.images`` and imported once into a filesystem root that registry:2 and
regfront both serve (and, for the smaller images, into one moto bucket both serve with
redirects). containerd pulls with ``ctr images pull --hosts-dir`` (every image removed and its
content garbage-collected between runs) and skopeo copies to a ``dir:``; each timed, the two
sides alternated, medians reported.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.common import (
    Json,
    Running,
    check_disk,
    log,
    median,
    moto_url,
    regfront_cli,
    registry2_s3,
    serving_moto,
    serving_regfront,
    serving_registry2,
)
from bench.nodes import Node, containerd_nodes, direct_hosts, skopeo_copy
from tests.images import Layout, random_layer

MB = 10**6
NAME = "library/pull"
S3_MAX_MB = 100  # moto holds objects in memory and serves them from Python: keep these small


def big_layer(rng: random.Random, size: int, name: str) -> dict[str, bytes]:
    """``tests.images.random_layer`` for any size: ``randbytes`` stops below 256 MiB."""
    if size <= 128 * 2**20:
        return random_layer(rng, size, name)
    pieces = [rng.randbytes(min(64 * 2**20, size - start)) for start in range(0, size, 64 * 2**20)]
    return {name: b"".join(pieces)}


def build(root: Path, sizes_mb: list[int], multi_mb: int) -> dict[str, int]:
    """An OCI layout with one ref per image; returns ref -> total layer bytes."""
    layout = Layout(root)
    rng = random.Random(11)
    refs: dict[str, int] = {}
    for size in sizes_mb:
        layout.tag(layout.image([big_layer(rng, size * MB, f"data/{size}mb")]), f"{size}mb")
        refs[f"{size}mb"] = size * MB
    if multi_mb:
        part = multi_mb * MB // 5
        layers = [random_layer(rng, part, f"data/part{i}") for i in range(5)]
        layout.tag(layout.image(layers), f"5x{multi_mb // 5}mb")
        refs[f"5x{multi_mb // 5}mb"] = 5 * part
    return refs


def import_all(layout: Path, refs: list[str], store: str, s3: bool = False) -> None:
    """Each ref twice: as docker.io/library/pull (what containerd asks regfront for, with
    ``?ns=docker.io``) and as library/pull (what registry:2, which ignores ``ns``, serves)."""
    for ref in refs:
        for name in (f"docker.io/{NAME}", NAME):
            regfront_cli("import", f"oci:{layout}:{ref}", f"{name}:{ref}", "--storage", store,
                         s3=s3)


@contextlib.contextmanager
def sides(work: Path, backend: str, root: Path, moto: str | None
          ) -> Iterator[tuple[Running, Running]]:
    """(regfront, registry:2) serving the same objects of ``backend``."""
    with contextlib.ExitStack() as stack:
        if backend == "file":
            regfront = stack.enter_context(serving_regfront(root, work))
            registry2 = stack.enter_context(serving_registry2(work, root=root))
        else:
            assert moto is not None
            regfront = stack.enter_context(serving_regfront(moto_url(moto, "pulls"), work))
            registry2 = stack.enter_context(serving_registry2(work, s3=registry2_s3(moto,
                                                                                    "pulls")))
        yield regfront, registry2


def measure(node: Node, work: Path, regfront: Running, registry2: Running, ref: str,
            rounds: int) -> list[Json]:
    """containerd and skopeo pulls of ``ref`` through each side; medians of ``rounds``."""
    via = work / f"hosts-via-{regfront.host.split(':')[1]}"
    regfront_cli("containerd-config", "--gateway", regfront.url, "--registry",
                 "docker.io=http://127.0.0.1:9", "--out", str(via))
    direct = direct_hosts(work / f"hosts-direct-{registry2.host.split(':')[1]}", "docker.io",
                          registry2.url)
    conf = work / "registries.conf"
    conf.write_text("")
    times: dict[tuple[str, str], list[float]] = {}
    for round_ in range(rounds):
        order = [("regfront", regfront, via), ("direct", registry2, direct)]
        if round_ % 2:
            order.reverse()
        for side, server, hosts in order:
            node.remove_all()
            times.setdefault(("containerd", side), []).append(
                node.pull(f"docker.io/{NAME}:{ref}", hosts))
            node.remove_all()
            times.setdefault(("skopeo", side), []).append(
                skopeo_copy(f"docker://{server.host}/{NAME}:{ref}", work / "skopeo-out", conf))
    return [{"client": client, "regfront_runs": times[(client, "regfront")],
             "direct_runs": times[(client, "direct")]} for client in ("containerd", "skopeo")]


def run(*, sizes_mb: list[int], multi_mb: int, rounds: int, with_s3: bool) -> Json:
    """The pull benchmark's JSON section."""
    total = (sum(sizes_mb) + multi_mb) * MB
    with tempfile.TemporaryDirectory(prefix="rf-bench-pulls-") as tmp:
        work = Path(tmp)
        check_disk(work, 3 * total, "pulls")
        log(f"pulls: building {total / MB:,.0f} MB of images")
        refs = build(work / "oci", sizes_mb, multi_mb)
        root = work / "root"
        import_all(work / "oci", list(refs), str(root))
        rows: list[Json] = []
        notes: list[str] = []
        with contextlib.ExitStack() as stack:
            moto: str | None = None
            backends = ["file"]
            small = [ref for ref, size in refs.items() if size <= S3_MAX_MB * MB]
            if with_s3 and small:
                moto = stack.enter_context(serving_moto(work, ("pulls",))).url
                import_all(work / "oci", small, moto_url(moto, "pulls"), s3=True)
                backends.append("s3")
                notes.append(f"S3 (moto) rows cover images up to {S3_MAX_MB} MB: moto keeps "
                             "every object in memory and serves it from one Python process.")
            shutil.rmtree(work / "oci")  # imported: free the disk before pulling
            (node,) = stack.enter_context(containerd_nodes(1, work / "nodes"))
            for backend in backends:
                with sides(work, backend, root, moto) as (regfront, registry2):
                    for ref in refs if backend == "file" else small:
                        log(f"pulls: {ref} on {backend}, {rounds} rounds")
                        for row in measure(node, work, regfront, registry2, ref, rounds):
                            via, direct = median(row["regfront_runs"]), median(row["direct_runs"])
                            rows.append({**row, "image": ref, "backend": backend,
                                         "bytes": refs[ref], "regfront_s": via,
                                         "direct_s": direct, "ratio": via / direct,
                                         "regfront_mbps": refs[ref] / via / MB,
                                         "direct_mbps": refs[ref] / direct / MB})
            node.remove_all()
        snapshotter = node.snapshotter
    sizes = ", ".join(f"{s:,} MB" for s in sizes_mb)
    return {"settings": {"sizes": sizes, "rounds": rounds, "snapshotter": snapshotter,
                         "multi_label": f"5-layer {multi_mb} MB" if multi_mb else "(no) 5-layer"},
            "rows": rows, "notes": notes}
