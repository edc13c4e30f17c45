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

Speed-ups tried for the grid (issue 17), measured in the same run (``--variants``), each against
today's loop (the ``cpu`` profile's :func:`~covid_lib.train.fit` step: AdamW one-cycle, focal
loss, bf16 autocast where the CPU has it, channels-last, batched augmentation):

- in this process, timed interleaved with today's loop: ``torch.compile`` of the model (default
  mode), of the model and the optimiser step, fused / foreach AdamW, oneDNN fp32 math in bf16;
- in child processes of this script (settings read before ``import torch``), against a child
  running today's loop unchanged: ``ONEDNN_DEFAULT_FPMATH_MODE``, ``ONEDNN_MAX_CPU_ISA``, OpenMP
  thread binding (``OMP_PROC_BIND``/``OMP_PLACES``, ``GOMP_CPU_AFFINITY``, ``OMP_WAIT_POLICY``),
  one inter-op thread, one thread, and two one-thread runs side by side, one per core.

Every variant trains from the same seed on the same batches: its weights (and batch-norm
buffers) after the first ``--id-steps`` steps are compared with today's loop's (bit-identical or
the largest absolute difference); those steps are also its warm-up (``torch.compile``'s
compilation, reported separately and kept out of the rate). Then ``--rounds`` epochs of
``--round-steps`` steps are timed (median images/s). The markdown ends with one recommendation per
variant: adopt only at >= 1.2x and bit-identical weights.

Writes ``bench/results/bench_train.json`` and ``bench/results/bench_train.md`` (the table of
``book/reproduce.md``). Run on an otherwise idle machine: ``python bench/bench_train.py``
(``--quick`` for a short check, ``--device cuda`` on a GPU box, ``--debug`` for a seconds-long
check that every path runs, ``--out DIR`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from covid_lib.models import create_model
from covid_lib.train import Runtime, XrayDataset, focal_loss, train_epoch

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
import resource, numpy as np, torch
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


# ------------------------------------------------------------------------ speed-ups (issue 17)
#: The rule of issue 17: adopt a variant only at this speed-up and with bit-identical weights.
ADOPT_RATIO = 1.2


@dataclass(frozen=True)
class Variant:
    """One way of running today's training step faster.

    Attributes:
        name: short id (``--variants``).
        what: what it changes, for the table.
        child: runs in a child process of this script (the setting must exist before ``import torch``).
        env: environment of the child (``{cpus}`` is replaced by the CPUs this process may use).
        compile_model: ``torch.compile`` the model (default mode).
        compile_opt: ``torch.compile`` the optimiser step.
        adamw: extra AdamW arguments (``fused``/``foreach``).
        onednn_bf16: oneDNN fp32 convolutions and matmuls in bf16, ``set_float32_matmul_precision("medium")``.
        threads, interop: torch's intra-op / inter-op threads (None: today's).
        parallel: that many one-thread children side by side, each pinned to its own CPU (rate: their sum).
        quick: part of ``--quick``.
    """

    name: str
    what: str
    child: bool = False
    env: tuple[tuple[str, str], ...] = ()
    compile_model: bool = False
    compile_opt: bool = False
    adamw: tuple[tuple[str, bool], ...] = ()
    onednn_bf16: bool = False
    threads: int | None = None
    interop: int | None = None
    parallel: int = 0
    quick: bool = True


VARIANTS = (
    Variant("baseline", "today's loop: `train_epoch` as `fit` runs it (bf16 autocast, channels-last)"),
    Variant("compile", "`torch.compile(model)` (default mode, inductor); optimiser step eager",
            compile_model=True),
    Variant("compile-step", "`torch.compile` of the model and of `optimizer.step()` (lr and beta1 passed "
            "as tensors so the one-cycle schedule does not recompile)", compile_model=True, compile_opt=True),
    Variant("adamw-fused", "AdamW(fused=True): one fused CPU kernel for the optimiser step", adamw=(("fused", True),)),
    Variant("adamw-foreach", "AdamW(foreach=True): multi-tensor optimiser step", adamw=(("foreach", True),),
            quick=False),
    Variant("onednn-bf16-math", "oneDNN fp32 conv/matmul in bf16 (`torch.backends.mkldnn.{conv,matmul}."
            "fp32_precision='bf16'`, `set_float32_matmul_precision('medium')`)", onednn_bf16=True),
    Variant("process", "control: today's loop in a fresh child process (reference of the child variants)",
            child=True),
    Variant("fpmath-bf16", "`ONEDNN_DEFAULT_FPMATH_MODE=BF16`", child=True,
            env=(("ONEDNN_DEFAULT_FPMATH_MODE", "BF16"),)),
    Variant("isa-avx512-core", "`ONEDNN_MAX_CPU_ISA=AVX512_CORE` (oneDNN without its bf16 instructions)",
            child=True, env=(("ONEDNN_MAX_CPU_ISA", "AVX512_CORE"),), quick=False),
    Variant("isa-amx", "`ONEDNN_MAX_CPU_ISA=AVX512_CORE_AMX` (AMX allowed; a no-op where the CPU has none)",
            child=True, env=(("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX"),), quick=False),
    Variant("omp-bind-close", "`OMP_PROC_BIND=close OMP_PLACES=cores` (OpenMP threads pinned)", child=True,
            env=(("OMP_PROC_BIND", "close"), ("OMP_PLACES", "cores"))),
    Variant("gomp-affinity", "`GOMP_CPU_AFFINITY` = this process's CPUs (libgomp pins thread i to CPU i)",
            child=True, env=(("GOMP_CPU_AFFINITY", "{cpus}"),)),
    Variant("omp-active", "`OMP_WAIT_POLICY=ACTIVE` (OpenMP threads spin instead of sleeping)", child=True,
            env=(("OMP_WAIT_POLICY", "ACTIVE"),), quick=False),
    Variant("interop-1", "`torch.set_num_interop_threads(1)`, intra-op threads as today", child=True, interop=1),
    Variant("threads-1", "`torch.set_num_threads(1)`: one run on one thread", child=True, threads=1, quick=False),
    Variant("2x1-thread", "two one-thread runs side by side, each pinned to its own core (rate: the sum)",
            child=True, threads=1, parallel=2),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)


class _CompiledStep:
    """An optimiser whose ``step`` runs under ``torch.compile``.

    The one-cycle schedule writes a new Python float lr and beta1 into the parameter groups every
    step, and dynamo specialises on floats (one recompilation per step, then eager). They are
    handed to the compiled step as float64 tensors and put back as floats for the scheduler.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self._scalars = [(torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64))
                         for _ in optimizer.param_groups]

        @torch.compile(fullgraph=False)
        def compiled_step():
            optimizer.step()

        self._step = compiled_step

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        saved = []
        for group, (lr, beta1) in zip(self.optimizer.param_groups, self._scalars):
            saved.append((group["lr"], group["betas"]))
            lr.fill_(float(group["lr"]))
            beta1.fill_(float(group["betas"][0]))
            group["lr"], group["betas"] = lr, (beta1, *group["betas"][1:])
        try:
            self._step()
        finally:
            for group, (lr, betas) in zip(self.optimizer.param_groups, saved):
                group["lr"], group["betas"] = lr, betas


def _hashed(batches, digest):
    for x, y in batches:
        digest.update(x.detach().cpu().contiguous().numpy().tobytes())
        digest.update(y.detach().cpu().numpy().tobytes())
        yield x, y


def _synthetic_set(n: int, size: int, seed: int) -> XrayDataset:
    """``n`` uint8 images at the profile's resize side (input + 16 px), labels alternating."""
    imgs = np.random.default_rng(seed).integers(0, 256, (n, size + 16, size + 16), dtype=np.uint8)
    return XrayDataset(imgs, np.arange(n) % 2, [str(i) for i in range(n)], input_size=size, augment=True)


class Session:
    """One variant training the ``cpu`` profile's step, set up as :func:`covid_lib.train.fit` does.

    Construction seeds and creates the model, the optimiser and the one-cycle schedule (over all
    the steps this session will run); :meth:`identity_epoch` trains the first ``id_steps`` batches
    (the warm-up) and keeps the weights; :meth:`timed_epoch` trains ``round_steps`` more and
    returns their images/s.
    """

    def __init__(self, variant: Variant, arch: str, size: int, batch: int, id_steps: int, rounds: int,
                 round_steps: int, seed: int = 0, device: str = "cpu"):
        from covid_lib.train.fit import TrainConfig, _optimizer, _scheduler, _train_batches
        from covid_lib.train.loss import make_loss
        from covid_lib.train.runtime import seed_everything

        self.variant, self.batch = variant, batch
        self._train_batches = _train_batches
        cfg = TrainConfig.from_profile("cpu", batch_size=batch, seed=seed, device=device, progress=False,
                                       threads=variant.threads)
        self.cfg = cfg
        with self.settings():
            seed_everything(seed)  # the caller's seed before the model's init (as the runs do)
            model = create_model(arch, num_classes=2)
            self.rt = Runtime.create(cfg.device, precision=cfg.precision, threads=cfg.threads,
                                     channels_last=cfg.channels_last, deterministic=cfg.deterministic)
            seed_everything(cfg.seed)
            self.generator = torch.Generator().manual_seed(cfg.seed)
            self.model = self.rt.prepare_model(model)
            self.loss_fn = make_loss(cfg.loss, cfg.focal_gamma)
            if variant.adamw:
                self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                                   **dict(variant.adamw))
            else:
                self.optimizer = _optimizer(self.model, cfg)
            self.scheduler = _scheduler(self.optimizer, cfg, id_steps + rounds * round_steps)
            self.net = torch.compile(self.model) if variant.compile_model else self.model
            self.opt = _CompiledStep(self.optimizer) if variant.compile_opt else self.optimizer
        self.id_set = _synthetic_set(id_steps * batch, size, seed=1)
        self.round_set = _synthetic_set(round_steps * batch, size, seed=2)

    @contextlib.contextmanager
    def settings(self):
        """The variant's in-process settings, restored afterwards (they are global)."""
        if not self.variant.onednn_bf16:
            yield
            return
        mk = torch.backends.mkldnn
        saved = (mk.conv.fp32_precision, mk.matmul.fp32_precision, torch.get_float32_matmul_precision())
        try:
            mk.conv.fp32_precision = mk.matmul.fp32_precision = "bf16"
            torch.set_float32_matmul_precision("medium")
            yield
        finally:
            mk.conv.fp32_precision, mk.matmul.fp32_precision = saved[:2]
            torch.set_float32_matmul_precision(saved[2])

    def _epoch(self, data: XrayDataset, digest=None) -> tuple[float, int]:
        batches = self._train_batches(data, self.cfg, self.generator, self.rt.device)
        if digest is not None:
            batches = _hashed(batches, digest)
        with self.settings():
            _sync(self.rt.device)
            t = time.perf_counter()
            _, _, n = train_epoch(self.net, batches, self.opt, self.loss_fn, self.rt, self.scheduler)
            _sync(self.rt.device)
        return time.perf_counter() - t, n

    def identity_epoch(self) -> dict:
        """Train the first batches; return the warm-up seconds, the inputs' hash and the weights."""
        digest = hashlib.sha256()
        seconds, n = self._epoch(self.id_set, digest)
        weights = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return {"warmup_s": seconds, "id_images": n, "inputs_sha256": digest.hexdigest(), "weights": weights}

    def timed_epoch(self) -> float:
        seconds, n = self._epoch(self.round_set)
        return n / seconds


def compare_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict:
    """Bit-identity of two state dicts, and the largest absolute difference of their float tensors."""
    if a.keys() != b.keys():
        return {"identical": False, "max_abs_diff": float("nan"), "note": "different keys"}
    identical, worst, where, differ = True, 0.0, None, 0
    for k in a:
        x, y = a[k], b[k]
        same = x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)
        identical &= same
        differ += not same
        if x.is_floating_point() and x.shape == y.shape and x.numel():
            d = float((x.double() - y.double()).abs().max())
            if d > worst:
                worst, where = d, k
    return {"identical": bool(identical), "max_abs_diff": worst, "max_abs_diff_in": where,
            "tensors_differing": differ, "tensors": len(a)}


def _error(exc: BaseException) -> str:
    lines = [line for line in traceback.format_exception_only(type(exc), exc) if line.strip()]
    return " ".join(lines[-1].split())[:400]


def _median(xs: list[float]) -> float:
    return float(np.median(xs)) if xs else float("nan")


def run_in_process(variants: list[Variant], arch: str, opts: dict) -> dict[str, dict]:
    """The in-process variants, timed round by round in turn so that drift hits them all alike."""
    results, sessions = {}, {}
    for v in variants:
        res = results[v.name] = {"variant": v.name, "child": False, "rates": []}
        try:
            t = time.perf_counter()
            s = Session(v, arch, **opts)
            ident = s.identity_epoch()
            res.update(setup_s=time.perf_counter() - t - ident["warmup_s"], threads=s.rt.threads,
                       interop=torch.get_num_interop_threads(), precision=s.rt.precision,
                       **{k: ident[k] for k in ("warmup_s", "id_images", "inputs_sha256")})
            res["_weights"] = ident["weights"]
            sessions[v.name] = s
        except Exception as exc:  # a variant that cannot run on this machine is a result too
            res["error"] = _error(exc)
            traceback.print_exc()
        print(f"  {arch} {v.name}: warm-up {res.get('warmup_s', float('nan')):.1f} s"
              + (f", FAILED: {res['error']}" if "error" in res else ""), flush=True)
    for r in range(opts["rounds"]):
        for name, s in list(sessions.items()):
            try:
                results[name]["rates"].append(s.timed_epoch())
            except Exception as exc:
                results[name]["error"] = _error(exc)
                traceback.print_exc()
                del sessions[name]
        print(f"  {arch} round {r + 1}/{opts['rounds']}: "
              + ", ".join(f"{n} {results[n]['rates'][-1]:.1f}" for n in sessions), flush=True)
    if "compile" in results or "compile-step" in results:
        try:
            from torch._dynamo.utils import counters

            results["_dynamo"] = {"graph_breaks": int(sum(counters["graph_break"].values())),
                                  "unique_graphs": int(counters["stats"].get("unique_graphs", 0))}
        except Exception:
            pass
    sessions.clear()
    gc.collect()
    return results


def run_worker(args) -> int:
    """Child process: one variant's session; writes its result (and weights) next to ``--worker-out``."""
    from covid_lib.train.runtime import available_cores

    v = next(v for v in VARIANTS if v.name == args.worker)
    if v.interop:
        torch.set_num_interop_threads(v.interop)
    # libgomp pins the main thread to the first CPU when torch loads under OMP_PROC_BIND or
    # GOMP_CPU_AFFINITY, and the library's default thread count (the affinity mask) drops to 1:
    # the parent passes the thread count it means explicitly
    v = replace(v, threads=args.worker_threads)
    out = Path(args.worker_out)
    res = {"variant": v.name, "child": True, "rates": [], "cpus_after_import": sorted(os.sched_getaffinity(0)),
           "library_default_threads": available_cores(), "env": {k: os.environ.get(k) for k, _ in v.env}}
    try:
        t = time.perf_counter()
        s = Session(v, args.worker_arch, size=args.size, batch=args.batch, id_steps=args.id_steps,
                    rounds=args.rounds, round_steps=args.round_steps, device=args.device)
        ident = s.identity_epoch()
        res.update(setup_s=time.perf_counter() - t - ident["warmup_s"], threads=s.rt.threads,
                   interop=torch.get_num_interop_threads(), precision=s.rt.precision,
                   **{k: ident[k] for k in ("warmup_s", "id_images", "inputs_sha256")})
        torch.save(ident["weights"], out.with_suffix(".pt"))
        for _ in range(args.rounds):
            res["rates"].append(s.timed_epoch())
    except Exception as exc:
        res["error"] = _error(exc)
        traceback.print_exc()
    out.write_text(json.dumps(res))
    return 0


def run_children(v: Variant, arch: str, args, tmp: Path, tag: str) -> list[dict]:
    """Run one child variant (``parallel`` copies side by side, each on one CPU); their results."""
    cpus = sorted(os.sched_getaffinity(0))
    env = dict(os.environ)
    env.update({k: val.replace("{cpus}", " ".join(map(str, cpus))) for k, val in v.env})
    copies = max(v.parallel, 1)
    if copies > len(cpus):
        return [{"variant": v.name, "child": True, "rates": [],
                 "error": f"needs {copies} CPUs, this process may use {len(cpus)}"}]
    procs = []
    for i in range(copies):
        out = tmp / f"{arch}-{v.name}-{tag}-{i}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", v.name, "--worker-arch", arch,
               "--worker-out", str(out), "--size", str(args.size), "--batch", str(args.batch),
               "--id-steps", str(args.id_steps), "--rounds", str(args.rounds),
               "--round-steps", str(args.round_steps), "--device", args.device,
               "--worker-threads", str(v.threads or len(cpus))]
        pin = {cpus[i]} if v.parallel else None
        procs.append((out, subprocess.Popen(cmd, env=env, preexec_fn=(lambda p=pin: os.sched_setaffinity(0, p))
                                            if pin else None)))
    results = []
    for out, proc in procs:
        rc = proc.wait()
        if out.is_file():
            res = json.loads(out.read_text())
            weights = out.with_suffix(".pt")
            if weights.is_file():
                res["_weights"] = torch.load(weights)
        else:
            res = {"variant": v.name, "child": True, "rates": [], "error": f"child exited with status {rc}"}
        results.append(res)
    return results


def measure_variants(arch: str, args, names: list[str]) -> dict:
    """Every asked-for variant of ``arch``: rate, ratio to today's loop, warm-up, bit-identity."""
    chosen = [v for v in VARIANTS if v.name in names]
    opts = {"size": args.size, "batch": args.batch, "id_steps": args.id_steps, "rounds": args.rounds,
            "round_steps": args.round_steps, "device": args.device}
    inproc = [v for v in chosen if not v.child]
    if inproc and inproc[0].name != "baseline":
        inproc.insert(0, VARIANTS[0])
    results = run_in_process(inproc, arch, opts) if inproc else {}
    dynamo = results.pop("_dynamo", None)
    children = [v for v in chosen if v.child]
    if children and children[0].name != "process":
        children.insert(0, next(v for v in VARIANTS if v.name == "process"))
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        runs: dict[str, list[list[dict]]] = {v.name: [] for v in children}
        for rep in range(args.child_repeats):
            for v in children:
                runs[v.name].append(run_children(v, arch, args, Path(tmp), f"r{rep}"))
                last = runs[v.name][-1]
                print(f"  {arch} {v.name} (child, repeat {rep + 1}/{args.child_repeats}): "
                      + ", ".join(f"{_median(r['rates']):.1f} img/s" if r["rates"] else f"FAILED: {r.get('error')}"
                                  for r in last), flush=True)
    for name, reps in runs.items():
        first = reps[0][0]
        res = {k: val for k, val in first.items() if k != "rates"}
        # per repeat: the sum over side-by-side copies of each copy's median rate
        per_rep = [sum(_median(c["rates"]) for c in copies) for copies in reps
                   if all(c.get("rates") for c in copies)]
        res["rates"] = per_rep
        res["copies"] = len(reps[0])
        errors = [c["error"] for copies in reps for c in copies if c.get("error")]
        if errors:
            res["error"] = errors[0]
        results[name] = res

    reference_weights = results.get("baseline", {}).get("_weights")
    if reference_weights is None:
        reference_weights = results.get("process", {}).get("_weights")
    reference_inputs = results.get("baseline", results.get("process", {})).get("inputs_sha256")
    base_rate = _median(results.get("baseline", {}).get("rates", []))
    proc_rate = _median(results.get("process", {}).get("rates", []))
    rows = []
    for v in inproc + children:
        res = results[v.name]
        row = {"variant": v.name, "what": v.what, "child": v.child, **{k: val for k, val in res.items()
                                                                          if not k.startswith("_")}}
        row["img_s"] = _median(res.get("rates", []))
        ref = proc_rate if v.child else base_rate
        row["reference"] = "process" if v.child else "baseline"
        row["ratio"] = row["img_s"] / ref if ref and ref == ref else float("nan")
        row["ratio_to_baseline"] = row["img_s"] / base_rate if base_rate and base_rate == base_rate else float("nan")
        steady = res.get("id_images", 0) / row["img_s"] if row["img_s"] == row["img_s"] and row["img_s"] else None
        if "warmup_s" in res and steady is not None:
            row["warmup_over_steady_s"] = res["warmup_s"] - steady * (v.parallel or 1)
        if "_weights" in res and reference_weights is not None:
            row.update(compare_weights(reference_weights, res["_weights"]))
        else:
            row.update(identical=None, max_abs_diff=float("nan"))
        row["inputs_identical"] = (res.get("inputs_sha256") == reference_inputs) if res.get("inputs_sha256") else None
        row["recommendation"] = recommend(v, row, args.id_steps)
        rows.append(row)
    return {"arch": arch, "size": args.size, "batch": args.batch, "id_steps": args.id_steps,
            "rounds": args.rounds, "round_steps": args.round_steps, "child_repeats": args.child_repeats,
            "baseline_img_s": base_rate, "process_img_s": proc_rate, "dynamo": dynamo, "rows": rows}


def recommend(v: Variant, row: dict, id_steps: int) -> str:
    """"adopt" only at >= ADOPT_RATIO and bit-identical weights, else why today's loop stays."""
    if v.name == "baseline":
        return "reference (today's loop)"
    if v.name == "process":
        return ("reference of the child variants (today's loop in a fresh process; "
                + ("weights identical to the in-process loop)" if row.get("identical") else
                   "weights NOT identical to the in-process loop: the identity checks of the child variants "
                   "are not conclusive)" if row.get("identical") is False else "no in-process loop to compare)"))
    if row.get("error"):
        return f"keep today's loop: the variant failed ({row['error']})"
    reasons = []
    ratio = row.get("ratio", float("nan"))
    if not ratio >= ADOPT_RATIO:
        reasons.append(f"{ratio:.2f}x < {ADOPT_RATIO}x")
    if row.get("identical") is False:
        reasons.append(f"weights not bit-identical ({row['tensors_differing']} of {row['tensors']} tensors differ "
                       f"after {id_steps} steps, max |diff| {row['max_abs_diff']:.2g} in `{row['max_abs_diff_in']}`)")
    elif row.get("identical") is not True:
        reasons.append("weights not compared")
    if row.get("inputs_identical") is False:
        reasons.append("the augmented batches differ as well")
    return "adopt" if not reasons else "keep today's loop: " + "; ".join(reasons)


def variants_markdown(block: dict, quick_note: str = "") -> list[str]:
    """The section of one model: a table, then one recommendation per variant."""
    b = block
    lines = ["", f"#### Speed-ups tried for the grid (issue 17): {b['arch']}, {b['size']} px, batch {b['batch']}", "",
             f"Each variant trains the `cpu` profile's step from seed 0: its first {b['id_steps']} steps are the "
             "warm-up and the identity check (weights and batch-norm buffers against today's loop's after the same "
             f"batches), then {b['rounds']} epochs of {b['round_steps']} steps are timed (median img/s). In-process "
             "variants are timed in turn with today's loop, round by round; child variants (settings read before "
             "`import torch`) against a child running today's loop unchanged (`process`), "
             f"{b['child_repeats']} repeat(s). AdamW turns any rounding difference in a near-zero gradient into a "
             "step of about the learning rate, so a max abs diff of that size means 'not identical', not 'far off'."
             f"{quick_note}", "",
             "| variant | what changes | threads (intra/inter) | img/s | ratio | vs | warm-up s | inputs identical "
             "| weights identical | max abs diff |", "|---|---|---|---|---|---|---|---|---|---|"]
    yn = {True: "yes", False: "no", None: "-"}
    for r in b["rows"]:
        rate = f"{r['img_s']:.1f}" if r["img_s"] == r["img_s"] else "failed"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] == r["ratio"] else "-"
        warm = f"{r['warmup_s']:.1f}" if "warmup_s" in r else "-"
        diff = f"{r['max_abs_diff']:.2g}" if r["max_abs_diff"] == r["max_abs_diff"] else "-"
        threads = f"{r.get('threads', '-')}/{r.get('interop', '-')}" + (f" x{r['copies']}" if r.get("copies", 1) > 1 else "")
        lines.append(f"| `{r['variant']}` | {r['what']} | {threads} | {rate} | {ratio} | {r['reference']} | {warm} | "
                     f"{yn[r['inputs_identical']]} | {yn[r['identical']]} | {diff} |")
    base = next((r for r in b["rows"] if r["variant"] == "baseline"), None)
    proc = next((r for r in b["rows"] if r["variant"] == "process"), None)
    noise = []
    if base and len(base.get("rates", [])) > 1:
        noise.append(f"today's loop's timed epochs spread over "
                     f"{(max(base['rates']) - min(base['rates'])) / base['img_s']:.0%} of their median")
    if base and proc and proc["img_s"] == proc["img_s"] and base["img_s"] == base["img_s"]:
        noise.append(f"the fresh-process control ran at {proc['ratio_to_baseline']:.2f}x the in-process loop")
    if noise:
        lines += ["", "Noise: " + "; ".join(noise) + ". More than ~10% either way means the machine was not idle: "
                  "ratios near 1.2x are then not conclusive."]
    pinned = [r for r in b["rows"] if r.get("child") and r.get("copies", 1) == 1
              and (r.get("library_default_threads") or 0) < (r.get("threads") or 0)]
    if pinned:
        lines += ["", "Under " + ", ".join(f"`{r['variant']}`" for r in pinned) + " the main thread is pinned to one "
                  "CPU as torch loads, so the library's default thread count (`available_cores()`, the affinity "
                  f"mask) drops to {pinned[0]['library_default_threads']}: these children set the threads explicitly; "
                  "adopting such a setting needs the thread count in the profile."]
    if b.get("dynamo"):
        lines += ["", f"torch.compile: {b['dynamo']['graph_breaks']} graph break(s), "
                      f"{b['dynamo']['unique_graphs']} graph(s) compiled (cold inductor cache)."]
    lines += ["", f"Recommendations ({b['arch']}; adopt only at >= {ADOPT_RATIO}x and bit-identical weights):", ""]
    lines += [f"- `{r['variant']}`: {r['recommendation']}" for r in b["rows"]]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    ap.add_argument("--size", type=int, default=128, help="network input side in px (cpu profile: 128)")
    ap.add_argument("--batch", type=int, default=32, help="batch size (cpu profile: 32)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    ap.add_argument("--archs", nargs="+", default=["resnet18", "resnet50", "conv8"], help="models to measure")
    ap.add_argument("--quick", action="store_true",
                    help="3 steps, resnet18 and conv8 only; the quick variants, 3 rounds of 6 steps, 1 child repeat")
    ap.add_argument("--debug", action="store_true",
                    help="seconds-long check that every path runs (64 px, batch 8, 2 steps); not a measurement")
    ap.add_argument("--out", type=Path, default=OUT, help="where bench_train.{json,md} go (default bench/results)")
    g = ap.add_argument_group("speed-ups of issue 17")
    g.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                   help=f"variants to measure (default: all; --quick: the quick ones), from {', '.join(VARIANT_NAMES)}")
    g.add_argument("--no-variants", action="store_true", help="only the tables above (the old benchmark)")
    g.add_argument("--only-variants", action="store_true", help="skip the tables above (development)")
    g.add_argument("--variant-archs", nargs="+", default=["resnet18"], help="models of the variants (resnet18)")
    g.add_argument("--id-steps", type=int, default=5, help="steps of the warm-up and the identity check")
    g.add_argument("--rounds", type=int, default=None, help="timed epochs per variant (5; --quick 3)")
    g.add_argument("--round-steps", type=int, default=None, help="steps per timed epoch (12; --quick 6)")
    g.add_argument("--child-repeats", type=int, default=None, help="runs of each child variant (2; --quick 1)")
    g.add_argument("--worker", choices=VARIANT_NAMES, help=argparse.SUPPRESS)
    g.add_argument("--worker-arch", help=argparse.SUPPRESS)
    g.add_argument("--worker-out", help=argparse.SUPPRESS)
    g.add_argument("--worker-threads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return run_worker(args)
    if args.quick:
        args.steps, args.archs = 3, ["resnet18", "conv8"]
    if args.debug:
        args.size, args.batch, args.steps, args.archs, args.id_steps = 64, 8, 2, ["conv8"], 2
        args.rounds, args.round_steps, args.child_repeats = 1, 2, 1
    fast = args.quick or args.debug
    args.rounds = args.rounds or (3 if fast else 5)
    args.round_steps = args.round_steps or (6 if fast else 12)
    args.child_repeats = args.child_repeats or (1 if fast else 2)
    if args.variants is None:
        args.variants = [v.name for v in VARIANTS if v.quick or not fast]
    unknown = sorted(set(args.variants) - set(VARIANT_NAMES))
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANT_NAMES)}")
    t_start = time.perf_counter()
    rts = {p: Runtime.create(args.device, precision=p) for p in ("fp32", "bf16")}
    device = rts["fp32"].device
    args.device = device
    result = {"machine": {"platform": platform.platform(terse=True), "processor": platform.processor(),
                          "threads": rts["fp32"].threads, "device": device, "torch": torch.__version__,
                          "bf16_effective": rts["bf16"].precision, "cpus": sorted(os.sched_getaffinity(0)),
                          "avx512_bf16": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
                          "amx": bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()),
                          "cpu_capability": torch.backends.cpu.get_cpu_capability()},
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    md = []
    if not args.only_variants:
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
        result.update({"peak_gflops": peaks, "rows": rows, "peak_rss_mib_resnet18_epoch": rss})
        md += [f"Measured {result['created']} on {device} ({rts['fp32'].threads} threads, torch {torch.__version__}); "
               f"matmul peak {peaks['bf16']:.0f} GFLOP/s bf16, {peaks['fp32']:.0f} fp32; "
               f"peak RSS of a ResNet-18 epoch on 300 images {rss:.0f} MiB.", "",
               "| model | GFLOP/img (train step) | bare fp32 img/s | loop fp32 img/s | bare bf16 img/s | "
               "loop bf16 img/s | loop/bare (bf16) | bf16 speed-up | ceiling img/s | share of ceiling |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            md.append(f"| {r['arch']} | {r['gflop_per_image']:.2f} | {r['bare_fp32']:.1f} | {r['loop_fp32']:.1f} | "
                      f"{r['bare_bf16']:.1f} | {r['loop_bf16']:.1f} | {r['ratio_bf16']:.2f} | "
                      f"{r['speedup_bf16']:.2f}x | {r['ceiling_img_s']:.0f} | {r['share_of_ceiling']:.2f} |")
    else:
        md.append(f"Measured {result['created']} on {device} ({rts['fp32'].threads} threads, torch {torch.__version__}).")
    if not args.no_variants and args.variants:
        # a cold inductor cache: the warm-up of torch.compile is what a fresh machine pays
        cache = tempfile.TemporaryDirectory(prefix="bench_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name
        mode = " Debug settings: not a measurement." if args.debug else (" Quick settings." if args.quick else "")
        result["variants"] = []
        for arch in args.variant_archs:
            print(f"speed-up variants of {arch}: {', '.join(args.variants)}", flush=True)
            block = measure_variants(arch, args, args.variants)
            result["variants"].append(block)
            md += variants_markdown(block, mode)
        cache.cleanup()
    result["seconds"] = time.perf_counter() - t_start
    result["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                      if not k.startswith("worker")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_train.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "bench_train.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"({result['seconds']:.0f} s; wrote {args.out / 'bench_train.json'} and bench_train.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
