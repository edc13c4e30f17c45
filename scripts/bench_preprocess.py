"""Benchmark the pre-processing chain: every image of every source through it, then a cached read.

Usage (repository root; 2 threads by default)::

    python scripts/bench_preprocess.py [--pipeline paper] [--image-size 256] [--threads 2]
        [--sources cohen,hannover,...] [--out bench.json] [--fresh-cache]

Writes into the project cache (``cache_dir("preprocess")``), so a run also warms the cache that
training reads; ``--fresh-cache`` points ``COVID_LIB_CACHE`` at a temporary folder instead.

Measured 2026-11-22 (2-core AMD EPYC VM, shared; torch 2.14.1, fp32, 2 threads), pipeline
``paper`` at 256 px (hash 1a0c22846a9f), cold cache: **3,482 images in 120 s (29 img/s,
33 ms per image)**; reading the six cached sources back: 1.5 s in all. Rejected: 5 duplicate
manifest rows (loader) and 12 fragmented masks (cohen 3, hannover 5, kermany 1, nih 3).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="paper", help="a named pipeline (default: paper)")
    parser.add_argument("--image-size", type=int, default=256, help="the chain's output side in px (default: 256)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default: 2)")
    parser.add_argument("--sources", default=None, help="comma-separated (default: all six)")
    parser.add_argument("--data-root", default=None, help="data root (default: $COVID_LIB_DATA, else ../shared/data)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("--fresh-cache", action="store_true", help="cache into a temporary folder instead")
    args = parser.parse_args(argv)
    if args.fresh_cache:
        os.environ["COVID_LIB_CACHE"] = tempfile.mkdtemp(prefix="bench_preprocess_")

    import torch

    from covid_lib.data import SOURCES
    from covid_lib.models.weights import load_unet
    from covid_lib.preprocess import get_pipeline, preprocess_source

    torch.set_num_threads(args.threads)
    pipeline = get_pipeline(args.pipeline, image_size=args.image_size).resolved()
    sources = args.sources.split(",") if args.sources else list(SOURCES)
    t0 = time.perf_counter()
    model = load_unet(pipeline.weights_path) if pipeline.uses_model else None
    rows, total_images = [], 0
    for name in sources:
        t = time.perf_counter()
        images, index, rejections = preprocess_source(name, pipeline, args.data_root, model=model, refresh=True)
        build = time.perf_counter() - t
        t = time.perf_counter()
        preprocess_source(name, pipeline, args.data_root)
        read = time.perf_counter() - t
        n = len(index) + len(rejections)
        total_images += n
        by_step = rejections["step"].value_counts().to_dict() if len(rejections) else {}
        rows.append({"source": name, "images": n, "kept": len(index), "rejected": len(rejections),
                     "rejected_by_step": by_step, "build_s": round(build, 1), "cached_read_s": round(read, 2),
                     "ms_per_image": round(1000 * build / max(n, 1), 1)})
        print(json.dumps(rows[-1]), flush=True)
    total = time.perf_counter() - t0
    result = {"pipeline": pipeline.to_dict(), "pipeline_hash": pipeline.hash, "threads": args.threads,
              "total_images": total_images, "total_s": round(total, 1),
              "images_per_s": round(total_images / total, 1), "sources": rows,
              "machine": f"{platform.machine()} {os.cpu_count()} cpu(s)", "torch": torch.__version__}
    print(f"{total_images} images in {total:.1f} s ({total_images / total:.1f} img/s) with {args.threads} thread(s); "
          f"pipeline {pipeline.name} {pipeline.hash}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
