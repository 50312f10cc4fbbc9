"""Web-demo request latency: ``afford serve`` on the shipped demo models, requests over HTTP.

Starts the app in this process on a free 127.0.0.1 port, then sends each tab's request through
gradio's own client (upload, queue, run, download of the result) ``--repeats`` times and
keeps the median and the best wall time. The coffee photo (224 x 224) for grounding, the
shipped sample renders (128 x 128) for correspondence and transfer. Writes
benchmarks/results/serve.json and prints a markdown table.

    python benchmarks/serve.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "serve.json"))
    args = ap.parse_args()

    import numpy as np
    import skimage.data
    import torch
    from gradio_client import Client, handle_file
    from PIL import Image

    from afford.data.io import write_image, write_json
    from afford.models import sample_image
    from afford.serve.app import build_app, load_models

    torch.set_num_threads(args.threads)
    img = skimage.data.coffee()[:, 100:500]
    coffee = write_image(
        Path(tempfile.mkdtemp()) / "coffee.png",
        np.array(Image.fromarray(img).resize((224, 224), Image.BILINEAR)),
    )
    t0 = time.perf_counter()
    g, c = load_models(device="cpu")
    load_s = time.perf_counter() - t0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app(g, c)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    mug, jug = str(sample_image("mug.png")), str(sample_image("jug.png"))
    fn, act = c.functions[0], g.actions[0]
    requests = {
        "grounding (224 x 224)": lambda: client.predict(
            handle_file(str(coffee)), act, api_name="/ground"
        ),
        "correspondence, discover 20 (2 x 128 x 128)": lambda: client.predict(
            handle_file(mug), handle_file(jug), fn, "discover", "", 20, api_name="/correspond"
        ),
        "transfer of the grounding heatmap (1 target)": lambda: client.predict(
            handle_file(mug), [handle_file(jug)], fn, "", act, api_name="/transfer"
        ),
    }
    rows = []
    for name, call in requests.items():
        call()  # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        rows.append({"request": name, "median_s": statistics.median(times), "best_s": min(times)})
    app.close()
    res = {
        "settings": {"repeats": args.repeats, "threads": args.threads, "device": "cpu",
                     "models": "shipped demo models", "model_load_s": round(load_s, 2)},
        "rows": rows,
    }  # fmt: skip
    write_json(args.out, res)
    print(f"model load: {load_s:.2f} s\n")
    print("| request | median (s) | best (s) |\n| --- | --- | --- |")
    for r in rows:
        print(f"| {r['request']} | {r['median_s']:.3f} | {r['best_s']:.3f} |")


if __name__ == "__main__":
    main()
