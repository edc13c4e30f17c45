"""Is bf16 autocast a way to continue a bf16 grid on a CPU without native bf16? Measured in one run.

On a CPU without AVX-512 BF16 or AMX, ``covid_lib.runs.machine_precision`` turns a bf16 run into an
fp32 run with its own id, and ``grid run`` refuses a grid of bf16 runs (``--fp32-twins``). The
alternative, running ``torch.autocast`` bf16 anyway (oneDNN then lacks bf16 kernels and PyTorch
emulates them), is timed here against fp32: a training step (forward, backward, AdamW) of the
``cpu`` profile's models at 128 px, batch 32, channels-last, on one fixed batch in memory,
interleaved (fp32, bf16, fp32, bf16 ...), the best round of each reported.

    python bench/bench_bf16_emulation.py            # ResNet-18, ResNet-50, Conv8: about 5 minutes
    python bench/bench_bf16_emulation.py --rounds 1 --steps 1 --arch conv8   # a quick check

Prints a markdown table; ``bench/results/bench_bf16_emulation.md`` keeps one run on a CPU without
native bf16.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from covid_lib.models import create_model
from covid_lib.provenance import machine_kind, machine_label
from covid_lib.train import cpu_has_bf16


def step_rate(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
              bf16: bool, steps: int) -> float:
    """Images/s of ``steps`` training steps after one warm-up step."""
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    for i in range(steps + 1):
        if i == 1:
            t = time.perf_counter()
        with ctx:
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * len(x) / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["resnet18", "resnet50", "conv8"])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per precision")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine_label(machine_kind('cpu'))}; "
          f"native bf16: {cpu_has_bf16()}; "
          f"oneDNN bf16 kernels: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}; threads {torch.get_num_threads()}")
    print("| model | fp32 images/s | bf16 autocast images/s | bf16 / fp32 |")
    print("|---|---|---|---|")
    for arch in args.arch:
        torch.manual_seed(0)
        model = create_model(arch, num_classes=2).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        channels = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
        x = torch.randn(args.batch, channels, args.size, args.size).to(memory_format=torch.channels_last)
        y = torch.randint(0, 2, (args.batch,))
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for bf16 in (False, True):
                rates[bf16].append(step_rate(model, opt, x, y, bf16, args.steps))
        fp32, bf16 = max(rates[False]), max(rates[True])
        print(f"| {arch} | {fp32:.1f} | {bf16:.1f} | {bf16 / fp32:.2f} |")


if __name__ == "__main__":
    main()
