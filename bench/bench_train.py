"""Training speed on this machine: the training loop against a bare step, bf16 against fp32, and
the share of the machine's ceiling, all measured in one run.

For ResNet-18, ResNet-50 and Conv8 at the ``cpu`` profile's input (128 px, batch 32):

- **bare**: forward + backward + AdamW step on one fixed batch already in memory;
- **loop**: :func:`covid_lib.train.train_epoch` over an :class:`~covid_lib.train.XrayDataset` of
  uint8 crops with the paper's augmentation done per batch, as :func:`covid_lib.train.fit` runs it;
- **ratio** loop / bare (goal >= 0.9) and the **speed-up** of channels-last + bf16 autocast over
  fp32 (same model, same batch);
- **ceiling**: the peak of a large matrix product in bf16 and fp32 measured now, divided by the
  FLOP of one training step per image (``torch.utils.flop_counter``): the images/s the machine
  could reach if every FLOP ran at matmul speed, and the share the loop reaches;
- **peak RSS** of a child process that trains one epoch on a composition-sized synthetic set.

Writes ``bench/results/bench_train.json`` and ``bench/results/bench_train.md`` (the table of
``book/reproduce.md``). Run on an otherwise idle machine: ``python bench/bench_train.py``
(``--quick`` for a short check, ``--device cuda`` on a GPU box).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from covid_lib.models import create_model  # noqa: E402
from covid_lib.train import Runtime, XrayDataset, focal_loss, train_epoch  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def matmul_peak(dtype: torch.dtype, device: str, n: int = 2048, reps: int = 10) -> float:
    """Measured GFLOP/s of an n x n matrix product."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step_flops(arch: str, size: int, rt: Runtime) -> float:
    """FLOP of one training step (forward + backward) per image."""
    from torch.utils.flop_counter import FlopCounterMode

    model = rt.prepare_model(create_model(arch, num_classes=2)).train()
    x = rt.prepare_input(torch.randn(4, 1, size, size, device=rt.device))
    with FlopCounterMode(display=False) as counter:
        with rt.autocast():
            out = model(x)
        focal_loss(out, torch.zeros(4, dtype=torch.long, device=rt.device)).backward()
    return counter.get_total_flops() / 4


def bare_speed(arch: str, size: int, batch: int, rt: Runtime, steps: int) -> float:
    """Images/s of forward + backward + optimiser step on one batch held in memory."""
    torch.manual_seed(0)
    model = rt.prepare_model(create_model(arch, num_classes=2)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = rt.prepare_input(torch.randn(batch, 1, size, size, device=rt.device))
    y = torch.randint(0, 2, (batch,), device=rt.device)
    for i in range(steps + 2):
        if i == 2:
            _sync(rt.device)
            t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with rt.autocast():
            out = model(x)
        focal_loss(out, y).backward()
        opt.step()
    _sync(rt.device)
    return steps * batch / (time.perf_counter() - t)


def loop_speed(arch: str, size: int, batch: int, rt: Runtime, steps: int) -> float:
    """Images/s of the real training loop (batched augmentation, AUC bookkeeping)."""
    torch.manual_seed(0)
    model = rt.prepare_model(create_model(arch, num_classes=2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n = batch * (steps + 2)
    imgs = np.random.default_rng(0).integers(0, 256, (n, size + 16, size + 16), dtype=np.uint8)
    data = XrayDataset(imgs, np.arange(n) % 2, [str(i) for i in range(n)], input_size=size, augment=True)
    gen = torch.Generator().manual_seed(0)
    warm = list(data.batches(batch, generator=gen, device=rt.device))[:2]
    train_epoch(model, ((x, y) for x, y, _ in warm), opt, lambda o, t: focal_loss(o, t), rt)
    sub = XrayDataset(imgs[:batch * steps], np.arange(batch * steps) % 2, [str(i) for i in range(batch * steps)],
                      input_size=size, augment=True)
    _sync(rt.device)
    t = time.perf_counter()
    _, _, seen = train_epoch(model, ((x, y) for x, y, _ in sub.batches(batch, shuffle=True, generator=gen,
                                                                        device=rt.device)),
                             opt, lambda o, t_: focal_loss(o, t_), rt)
    _sync(rt.device)
    return seen / (time.perf_counter() - t)


def child_rss(arch: str, size: int, device: str) -> float:
    """Peak RSS (MiB) of a child process that fits one epoch on 300 images (a composition's size)."""
    code = f"""
import sys, resource, numpy as np, torch
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from covid_lib.models import create_model
from covid_lib.train import TrainConfig, XrayDataset, fit
rng = np.random.default_rng(0)
imgs = rng.integers(0, 256, (300, {size + 16}, {size + 16}), dtype=np.uint8)
y = np.arange(300) % 2
tr = XrayDataset(imgs[:240], y[:240], [str(i) for i in range(240)], input_size={size}, augment=True)
va = XrayDataset(imgs[240:], y[240:], [str(i) for i in range(60)], input_size={size}, mean=tr.mean, std=tr.std)
fit(create_model({arch!r}, num_classes=2), tr, va, TrainConfig(epochs=1, batch_size=32, device={device!r}, progress=False))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    ap.add_argument("--size", type=int, default=128, help="network input side in px (cpu profile: 128)")
    ap.add_argument("--batch", type=int, default=32, help="batch size (cpu profile: 32)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    ap.add_argument("--archs", nargs="+", default=["resnet18", "resnet50", "conv8"], help="models to measure")
    ap.add_argument("--quick", action="store_true", help="3 steps, resnet18 and conv8 only")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.archs = 3, ["resnet18", "conv8"]
    rts = {p: Runtime.create(args.device, precision=p) for p in ("fp32", "bf16")}
    device = rts["fp32"].device
    peaks = {p: matmul_peak(torch.float32 if p == "fp32" else torch.bfloat16, device) for p in rts}
    rows = []
    for arch in args.archs:
        steps = max(2, args.steps // 3) if arch == "resnet50" else args.steps
        row = {"arch": arch, "size": args.size, "batch": args.batch}
        for p, rt in rts.items():
            row[f"bare_{p}"] = bare_speed(arch, args.size, args.batch, rt, steps)
            row[f"loop_{p}"] = loop_speed(arch, args.size, args.batch, rt, steps)
            row[f"ratio_{p}"] = row[f"loop_{p}"] / row[f"bare_{p}"]
        row["gflop_per_image"] = step_flops(arch, args.size, rts["bf16"]) / 1e9
        row["speedup_bf16"] = row["loop_bf16"] / row["loop_fp32"]
        best = "bf16" if rts["bf16"].precision == "bf16" else "fp32"
        row["ceiling_img_s"] = peaks[best] / row["gflop_per_image"]
        row["share_of_ceiling"] = row[f"loop_{best}"] / row["ceiling_img_s"]
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    rss = child_rss("resnet18", args.size, device)
    result = {"machine": {"platform": platform.platform(terse=True), "processor": platform.processor(),
                          "threads": rts["fp32"].threads, "device": device, "torch": torch.__version__,
                          "bf16_effective": rts["bf16"].precision},
              "peak_gflops": peaks, "rows": rows, "peak_rss_mib_resnet18_epoch": rss,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "args": vars(args)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_train.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"Measured {result['created']} on {device} ({rts['fp32'].threads} threads, torch {torch.__version__}); "
          f"matmul peak {peaks['bf16']:.0f} GFLOP/s bf16, {peaks['fp32']:.0f} fp32; "
          f"peak RSS of a ResNet-18 epoch on 300 images {rss:.0f} MiB.", "",
          "| model | GFLOP/img (train step) | bare fp32 img/s | loop fp32 img/s | bare bf16 img/s | "
          "loop bf16 img/s | loop/bare (bf16) | bf16 speed-up | ceiling img/s | share of ceiling |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['arch']} | {r['gflop_per_image']:.2f} | {r['bare_fp32']:.1f} | {r['loop_fp32']:.1f} | "
                  f"{r['bare_bf16']:.1f} | {r['loop_bf16']:.1f} | {r['ratio_bf16']:.2f} | {r['speedup_bf16']:.2f}x | "
                  f"{r['ceiling_img_s']:.0f} | {r['share_of_ceiling']:.2f} |")
    (OUT / "bench_train.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
