"""Member console benchmark: a 512x512 image uploaded and answered with its overlay, through the real HTTP service.

    PYTHONPATH=. python bench/console.py [--requests 20] [--size 512] [--out bench-console.json]

A fresh Anvil node and a coalition of three hospitals (the test suite's `deploy_sites`: a real genesis UNet,
its vault served on loopback), hospital-1's member service (`tclearn member serve`) in its own process on
127.0.0.1. One client, as the console's page does it: `POST /models/0/predictions` with the image, then
`GET /predictions/{id}/overlay.png`; the wall time of the pair is the row `console`. The one-call overlay
(`POST /models/0/predict?format=png`) is measured beside it. A warm-up request loads the model first. Prints one
JSON document; the target: 90 % of the console pairs answered in under 1 s. The machine's load average is
recorded beside the figures: on shared cores the network's forward pass takes what the other processes leave.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from PIL import Image

# Run as a script, this file's folder comes first on sys.path and this file would shadow the `services` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from bench.services import emit, percentile, service  # noqa: E402
from tclearn.ledger.localchain import LocalNode, free_port  # noqa: E402
from tclearn.types import Variant  # noqa: E402
from tests.services.conftest import OPERATOR_TOKEN, deploy_sites, operator_headers  # noqa: E402

TARGET_S = 1.0
MODEL_ID = 0  # the genesis model: committed from the start


def scan(size: int) -> bytes:
    """A grey 512x512 PNG with two bright blobs, as a hospital's scan would be uploaded."""
    rng = np.random.default_rng(0)
    pixels = rng.normal(100, 20, (size, size)).clip(0, 255)
    pixels[size // 4 : size // 3, size // 4 : size // 3] = 230
    pixels[size // 2 : size // 2 + size // 10, size // 2 : size // 2 + size // 8] = 210
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def timed(requests: int, call: Callable[[], None]) -> dict[str, Any]:
    call()  # warm-up: the model is decoded and cached by the service
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return {
        "requests": requests,
        "p50_s": round(statistics.median(seconds), 4),
        "p90_s": round(percentile(seconds, 0.9), 4),
        "max_s": round(max(seconds), 4),
        "mean_s": round(statistics.fmean(seconds), 4),
    }


def rows(url: str, image: bytes, requests: int) -> dict[str, Any]:
    headers = operator_headers()
    files = {"image": ("scan.png", image, "image/png")}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:

        def console() -> None:
            made = client.post(f"/models/{MODEL_ID}/predictions", files=files)
            made.raise_for_status()
            picture = client.get(f"/predictions/{made.json()['id']}/overlay.png")
            picture.raise_for_status()
            assert picture.content.startswith(b"\x89PNG")

        def one_call() -> None:
            picture = client.post(f"/models/{MODEL_ID}/predict?format=png", files=files)
            picture.raise_for_status()

        return {"console": timed(requests, console), "predict_png": timed(requests, one_call)}


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the clean-ups: the service and Anvil stop too
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--size", type=int, default=512, help="the uploaded image's edge in pixels")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    image = scan(args.size)
    load_before = os.getloadavg()

    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalNode("anvil", accounts=10) as node,
        deploy_sites(node, Path(tmp), Variant.A) as deployed,
    ):
        member_env = {"TCLEARN_OPERATOR_TOKEN": OPERATOR_TOKEN}
        member_args = ["member", "serve", "--config", str(deployed.configs[0]), "--no-access-log"]
        with service(member_args, free_port(), member_env) as url:
            measured = rows(url, image, args.requests)
    p90 = measured["console"]["p90_s"]
    report = {
        "benchmark": "member console: upload -> overlay",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        },
        "setup": f"anvil + member service (own process) on 127.0.0.1; variant A; genesis UNet (2-D); one client; "
        f"a {args.size}x{args.size} PNG of {len(image)} bytes",
        "rows": measured,
        "target": {"console_p90_s": TARGET_S, "met": p90 < TARGET_S},
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
