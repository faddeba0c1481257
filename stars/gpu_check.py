"""`make gpu-check`: the checks that need a CUDA device, in one command, written to results/gpu/.

    python -m stars.gpu_check [--against-official DIR] [--out results/gpu] [--budget-s 540]

Checks, in this order (each one is independent; a failure is recorded and the next one runs):

    gpu-tests      the `gpu`-marked tests of the suite
    bf16           bf16 autocast vs fp32 on the same encoder and data: cosine of the pooled features,
                   relative difference of a MAMP loss, KNN top-1 on synthetic data and the agreement of
                   the KNN predictions; and the NNCLR queue neighbour picks under bf16 autocast (ours,
                   computed in fp32) against a plain bf16 product, on tightly clustered features
    resume         a pretraining run interrupted after one epoch and resumed, against an uninterrupted
                   one, in deterministic mode: identical weights
    torchrun       `torchrun --nproc_per_node=<GPUs>` of a tuning run (NCCL, DistributedDataParallel,
                   SyncBatchNorm) and its final loss against a single-process run
    bench          `stars bench` on the paper-size model: against the official code when given (ours in
                   bf16, and both sides in fp32), else against our reference path
    kernels        `stars bench --profile` of the pretraining and tuning steps with each attention
                   kernel family (PyTorch's choice, cuDNN, flash, memory-efficient), with the blocks
                   compiled and with each whole model forward compiled: speed, MFU, time by kind of
                   work, GEMM and attention TFLOP/s, and the MFU ceiling at those rates
    smoke          every notebook in the smoke profile on `cuda`

Tolerances are stated next to each figure in the report. The report is results/gpu/<device>.md and
.json, written after every check, so an interrupted run still leaves what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from stars.io import REPO_ROOT, atomic_write_bytes, provenance, write_json
from stars.train.engine import CompileStats

# bf16 agreement tolerances (stated in the report)
FEATURE_COSINE_MIN = 0.99  # mean cosine similarity of pooled features, bf16 vs fp32
LOSS_REL_MAX = 0.02  # relative difference of the MAMP loss on the same batch and mask
KNN_POINTS_MAX = 1.0  # |top-1 bf16 - top-1 fp32| in points
KNN_AGREEMENT_MIN = 0.95  # fraction of test samples with the same KNN prediction


def _device_slug() -> str:
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-").lower()


def _run(command: list[str], timeout: float, env: dict | None = None, cwd: Path = REPO_ROOT) -> dict:
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=max(timeout, 1),
                              env={**os.environ, **(env or {})})
        out = {"returncode": done.returncode, "tail": (done.stdout + done.stderr)[-3000:],
               "stdout_tail": done.stdout[-6000:]}
    except subprocess.TimeoutExpired as err:
        text = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        out = {"returncode": None, "timed_out": True, "tail": text[-3000:]}
    out["seconds"] = time.perf_counter() - start
    out["command"] = " ".join(command)
    return out


# --- checks ----------------------------------------------------------------------------------------


def check_gpu_tests(timeout: float) -> dict:
    result = _run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"], timeout)
    summary = re.findall(r"(\d+) (passed|failed|skipped|error)", result["tail"])
    result["counts"] = {kind: int(n) for n, kind in summary}
    result["ok"] = result["returncode"] == 0 and result["counts"].get("passed", 0) > 0
    return result


def _synthetic(folder: Path, subjects: int = 10) -> Path:
    from stars.data.synthetic import prepare_synthetic

    if not (folder / "SYN_XSub.npz").exists():
        prepare_synthetic(folder, seed=0, num_subjects=subjects)
    return folder / "SYN_XSub.npz"


def neighbour_agreement(device: torch.device, queries: int = 512, queue: int = 8192, dim: int = 256,
                        spread: float = 1e-3, seed: int = 0) -> dict:
    """Tightly clustered unit vectors (a few centres, tiny spread): the nearest queue entry of every
    query found (a) by `FeatureQueue.nearest` under bf16 autocast, (b) by a plain `z @ queue.T` under
    bf16 autocast, each compared with the fp32 answer."""
    from stars.methods.queue import FeatureQueue

    generator = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(8, dim, generator=generator), dim=1)
    pick = lambda n: centres[torch.randint(0, 8, (n,), generator=generator)]  # noqa: E731
    bank = torch.nn.functional.normalize(pick(queue) + spread * torch.randn(queue, dim, generator=generator), dim=1)
    z = torch.nn.functional.normalize(pick(queries) + spread * torch.randn(queries, dim, generator=generator), dim=1)
    memory = FeatureQueue(queue, dim).to(device)
    memory.features.copy_(bank.to(device))
    z = z.to(device)
    fp32 = (z @ memory.features.T).argmax(dim=1)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        ours = memory.nearest(z, None)[1]
        plain = (z @ memory.features.T).argmax(dim=1)
    return {"queries": queries, "queue": queue, "spread": spread,
            "ours_agreement": float((ours == fp32).float().mean()),
            "plain_bf16_agreement": float((plain == fp32).float().mean())}


def check_bf16(device: torch.device, work: Path, preset: str = "small", epochs: int = 10) -> dict:
    from stars.data.npz import load_split
    from stars.eval.common import extract_features
    from stars.eval.knn import knn_majority
    from stars.models.mamp import MaskedMotionModel
    from stars.train.pretrain import pretrain_preset, run_pretraining

    data = _synthetic(work / "data")
    # a briefly trained MAMP encoder, so that the features carry class information
    base = pretrain_preset("mamp", preset)
    cfg = dataclasses.replace(
        base, optim=dataclasses.replace(base.optim, warmup_epochs=1.0),
        run=dataclasses.replace(base.run, epochs=epochs, batch_size=64, device=str(device), precision="bf16",
                                progress=False, checkpoint_every=epochs),
    )
    ckpt = run_pretraining(cfg, data, work / f"bf16-mamp-{preset}-{epochs}")
    model = MaskedMotionModel(cfg.encoder, cfg.mamp).to(device)
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["model"])
    encoder = model.to_encoder().to(device)
    train, test = load_split(data, "train"), load_split(data, "test")
    out = {"encoder": f"{preset} preset, {epochs} MAMP epochs on synthetic data"}
    feats = {precision: (extract_features(encoder, train, device=device, progress=False, precision=precision),
                         extract_features(encoder, test, device=device, progress=False, precision=precision))
             for precision in ("fp32", "bf16")}
    cos = torch.nn.functional.cosine_similarity(torch.from_numpy(feats["fp32"][1][0]),
                                                torch.from_numpy(feats["bf16"][1][0]), dim=1)
    out["feature_cosine_mean"] = float(cos.mean())
    out["feature_cosine_min"] = float(cos.min())
    knn = {precision: knn_majority(tr[0], tr[1], te[0], te[1], ks=(1,), device=device)
           for precision, (tr, te) in feats.items()}
    out["knn_top1_fp32"] = knn["fp32"].top1[1]
    out["knn_top1_bf16"] = knn["bf16"].top1[1]
    out["knn_prediction_agreement"] = float((knn["fp32"].predictions[1] == knn["bf16"].predictions[1]).mean())
    frames = cfg.encoder.num_frames
    batch = torch.from_numpy(train.x[:32, :frames]).permute(0, 4, 1, 3, 2).contiguous().to(device)
    losses = []
    for enabled in (False, True):
        generator = torch.Generator(device=device).manual_seed(0)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
            losses.append(float(model(batch, generator)[0]))
    out["mamp_loss_fp32"], out["mamp_loss_bf16"] = losses
    out["mamp_loss_rel_diff"] = abs(losses[1] - losses[0]) / abs(losses[0])
    out["neighbours"] = neighbour_agreement(device)
    out["tolerances"] = {"feature_cosine_mean_min": FEATURE_COSINE_MIN, "loss_rel_max": LOSS_REL_MAX,
                         "knn_points_max": KNN_POINTS_MAX, "knn_agreement_min": KNN_AGREEMENT_MIN,
                         "neighbour_agreement_min": 1.0}
    out["ok"] = (out["feature_cosine_mean"] >= FEATURE_COSINE_MIN and out["mamp_loss_rel_diff"] <= LOSS_REL_MAX
                 and abs(out["knn_top1_bf16"] - out["knn_top1_fp32"]) <= KNN_POINTS_MAX
                 and out["knn_prediction_agreement"] >= KNN_AGREEMENT_MIN
                 and out["neighbours"]["ours_agreement"] == 1.0)
    return out


def check_resume(device: torch.device, work: Path, epochs: int = 3) -> dict:
    """Interrupted + resumed vs uninterrupted pretraining on the GPU, deterministic algorithms on."""
    from stars.methods.param_groups import pretrain_param_groups
    from stars.models.mamp import MaskedMotionModel
    from stars.train.engine import Trainer
    from stars.train.pretrain import pretrain_preset

    data = _synthetic(work / "data")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=False)
    try:
        from stars.data.augment import AugmentConfig
        from stars.data.feeder import BatchLoader, CropConfig, DeviceSplit
        from stars.data.npz import load_split

        cfg = pretrain_preset("mamp", "tiny")
        run = dataclasses.replace(cfg.run, epochs=epochs, batch_size=32, device=str(device), progress=False,
                                  checkpoint_every=1)
        split = DeviceSplit.from_split(load_split(data, "train"), device)

        def trainer(folder: Path) -> Trainer:
            torch.manual_seed(0)
            model = MaskedMotionModel(cfg.encoder, cfg.mamp)
            loader = BatchLoader(split, 32, train=True, crop=CropConfig(min_length=16, num_frames=cfg.encoder.num_frames),
                                 augment=AugmentConfig(random_rot=0.3), layout=split.layout, seed=0)
            return Trainer(model, pretrain_param_groups(model), loader, lambda m, b: (m(b["x"])[0], {}), cfg.optim,
                           run, folder, kind="mamp")

        whole = trainer(work / "resume-whole")
        whole.fit()
        parted = trainer(work / "resume-parted")
        parted.fit(stop_after=1)
        resumed = trainer(work / "resume-parted")
        resumed.resume()
        resumed.fit()
        a, b = whole.model.state_dict(), resumed.model.state_dict()
        diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
        return {"epochs": epochs, "interrupted_after": 1, "max_abs_weight_difference": diff, "ok": diff == 0.0}
    finally:
        torch.use_deterministic_algorithms(False)


def check_torchrun(device: torch.device, work: Path, timeout: float) -> dict:
    """The tuning CLI under torchrun with one process per GPU, against a plain single-process run."""
    data = _synthetic(work / "data")
    gpus = max(torch.cuda.device_count(), 1) if device.type == "cuda" else 1
    common = ["--data", str(data), "--preset", "tiny", "--set", "run.epochs=2", "--set", "run.batch_size=32",
              "--set", "queue_size=256", "--set", "monitor_every=0"]
    stage1 = work / "torchrun-mamp"
    first = _run([sys.executable, "-m", "stars", "pretrain", "mamp", "--data", str(data), "--out", str(stage1),
                  "--preset", "tiny", "--set", "run.epochs=1", "--set", "run.batch_size=32", "--device", device.type],
                 timeout / 3)
    if first["returncode"] != 0:
        return {"ok": False, "stage1": first}
    init = str(stage1 / "final.pt")
    single = _run([sys.executable, "-m", "stars", "tune", "stars", "--init", init, "--out", str(work / "tune-single"),
                   *common, "--device", device.type], timeout / 3)
    multi = _run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}", "--master_port=29533",
                  "-m", "stars", "tune", "stars", "--init", init, "--out", str(work / "tune-torchrun"), *common,
                  "--device", device.type],
                 timeout / 3)
    out = {"processes": gpus, "single": _last_loss(work / "tune-single"), "torchrun": _last_loss(work / "tune-torchrun"),
           "single_rc": single["returncode"], "torchrun_rc": multi["returncode"], "torchrun_tail": multi["tail"][-1500:]}
    run_json = work / "tune-torchrun" / "run.json"
    if run_json.exists():
        out["world_size_recorded"] = json.loads(run_json.read_text()).get("world_size")
    out["ok"] = multi["returncode"] == 0 and single["returncode"] == 0 and out["torchrun"] is not None
    if out["ok"] and gpus == 1 and out["single"] is not None:
        out["loss_rel_diff"] = abs(out["torchrun"] - out["single"]) / abs(out["single"])
    return out


def _last_loss(run_dir: Path) -> float | None:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return None
    import csv

    rows = list(csv.DictReader(path.open()))
    return float(rows[-1]["loss"]) if rows else None


def check_bench(device: torch.device, official: str | None, timeout: float, preset: str = "paper",
                batch_size: int = 128) -> dict:
    out = {}
    # against the official code when given (bf16 and both sides fp32), else against our reference path;
    # the compiled variant runs in the `kernels` check
    runs = [("reference", None, "auto")]
    if official:
        runs = [("official", official, "auto"), ("official_fp32", official, "fp32")]
    start = time.perf_counter()
    for name, against, precision in runs:
        left = timeout - (time.perf_counter() - start)
        if left < 30:
            out[name] = {"skipped": "out of time"}
            continue
        path = Path(tempfile.mkdtemp()) / f"{name}.json"
        command = [sys.executable, "-m", "stars", "bench", "--device", device.type, "--preset", preset,
                   "--batch-size", str(batch_size), "--steps", "5", "--rounds", "3",
                   "--precision", precision, "--out", str(path)]
        if against:
            command += ["--against-official", against]
        result = _run(command, left)
        out[name] = json.loads(path.read_text()) if path.exists() else result
    out["ok"] = all("workloads" in v for v in out.values() if isinstance(v, dict) and "skipped" not in v)
    return out


# each attention kernel family, then PyTorch's choice with the blocks / the whole model compiled
KERNEL_RUNS = {
    **{family: ["--sdpa", family] for family in ("auto", "cudnn", "flash", "efficient")},
    **{f"auto, {mode} compiled": ["--compile", mode] for mode in ("blocks", "model")},
}


def check_kernels(device: torch.device, timeout: float, preset: str = "paper", batch_size: int = 128) -> dict:
    """Our pretraining and tuning steps profiled with each attention kernel family; a family with no kernel
    for these inputs is recorded as unavailable, not as a failure."""
    out: dict = {}
    start = time.perf_counter()
    for kernel, options in KERNEL_RUNS.items():
        left = timeout - (time.perf_counter() - start)
        if left < 20:
            out[kernel] = {"skipped": "out of time"}
            continue
        path = Path(tempfile.mkdtemp()) / "bench.json"
        result = _run([sys.executable, "-m", "stars", "bench", "--device", device.type, "--preset", preset,
                       "--batch-size", str(batch_size), "--workloads", "pretrain,tune", "--steps", "3",
                       "--rounds", "1", "--profile", *options, "--out", str(path)], left)
        if path.exists():
            out[kernel] = json.loads(path.read_text())
        elif result["returncode"] == 2 and "attention kernel" in result["tail"]:
            out[kernel] = {"unavailable": result["tail"].strip().splitlines()[-1]}
        else:
            out[kernel] = result
    out["ok"] = "workloads" in out.get("auto", {})
    return out


def _kernel_lines(kernels: dict) -> list[str]:
    lines = ["", "## Attention kernels and where the time goes", "",
             "| kernel | step | seq/s | MFU | GEMM TFLOP/s | attention TFLOP/s | MFU ceiling |", "|---|---|---|---|---|---|---|"]
    summaries = []
    for kernel in KERNEL_RUNS:
        item = kernels.get(kernel)
        if not isinstance(item, dict):
            continue
        if "workloads" not in item:
            lines.append(f"| {kernel} | — | {_not_run_reason(item)} | | | | |")
            continue
        for step, row in item["workloads"].items():
            ours, parts = row["ours"], item.get("breakdowns", {}).get(step, {})
            cells = [f"{ours['sequences_per_s']:.0f}", _percent(ours.get("mfu")), _number(parts.get("gemm_tflops")),
                     _number(parts.get("attention_tflops")), _percent(parts.get("ceiling_mfu"))]
            label = kernel
            if "compile" in row:  # the bench refuses a compiled row with no graph or an eager fallback
                label += f" ({CompileStats(**row['compile']).summary(fallbacks=False)})"
            lines.append(f"| {label} | {step} | " + " | ".join(cells) + " |")
            if "summary" in parts:
                summaries.append(f"- {kernel}, {step}: " + parts["summary"].replace("\n", "; "))
    return lines + [""] + summaries


def _not_run_reason(item: dict) -> str:
    """Why a kernel run gave no measurements: no kernel for the inputs, out of time, or its error line."""
    if "unavailable" in item:
        return "no kernel for these inputs"
    if "skipped" in item:
        return item["skipped"]
    last_line = item.get("tail", "").strip().splitlines()[-1:]
    return " ".join(["failed:", *last_line]).replace("|", "/")  # no table cell break inside the cell


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def check_smoke(device: torch.device, timeout: float, work: Path) -> dict:
    result = _run([sys.executable, "-m", "stars.notebooks", "run-all", "--profile", "smoke", "--device", device.type,
                   "--out", str(work / "smoke")], timeout,
                  env={"STARS_CACHE": str(work / "smoke-cache"), "JUPYTER_PLATFORM_DIRS": "1", "MPLBACKEND": "Agg"})
    ran = re.findall(r"\[tables\] (\S+): (ok[^\n]*|FAILED[^\n]*)", result.get("stdout_tail", result["tail"]))
    result["notebooks"] = {name: status for name, status in ran}
    result["ok"] = result["returncode"] == 0
    return result


# --- report ----------------------------------------------------------------------------------------


def _markdown(report: dict) -> str:
    lines = [f"# GPU check — {report['device']}", "", f"commit {report['provenance']['commit']} · torch "
             f"{report['provenance']['torch']} · {report['provenance']['time']}", "",
             "| check | result | seconds | commit |", "|---|---|---|---|"]
    for name, item in report["checks"].items():
        status = "ok" if item.get("ok") else ("not run" if item.get("skipped") else "FAILED")
        lines.append(f"| {name} | {status} | {item.get('check_seconds', 0):.0f} | {item.get('commit', '')} |")
    bf16 = report["checks"].get("bf16", {})
    if "feature_cosine_mean" in bf16:
        n = bf16["neighbours"]
        lines += ["", "## bf16 autocast vs fp32", "",
                  f"- pooled features: mean cosine {bf16['feature_cosine_mean']:.5f} (min {bf16['feature_cosine_min']:.4f}; "
                  f"tolerance: mean >= {FEATURE_COSINE_MIN})",
                  f"- MAMP loss: {bf16['mamp_loss_fp32']:.5f} fp32 vs {bf16['mamp_loss_bf16']:.5f} bf16, relative "
                  f"difference {bf16['mamp_loss_rel_diff']:.2e} (tolerance {LOSS_REL_MAX})",
                  f"- KNN k=1: {bf16['knn_top1_fp32']:.2f} fp32 vs {bf16['knn_top1_bf16']:.2f} bf16, same prediction for "
                  f"{100 * bf16['knn_prediction_agreement']:.1f} % of test samples (tolerances {KNN_POINTS_MAX} point, "
                  f"{100 * KNN_AGREEMENT_MIN:.0f} %)",
                  f"- NNCLR queue neighbour picks on clustered features (spread {n['spread']}, {n['queries']} queries, "
                  f"queue {n['queue']}): ours under bf16 autocast agree with fp32 for {100 * n['ours_agreement']:.1f} %; "
                  f"a plain bf16 `z @ queue.T` for {100 * n['plain_bf16_agreement']:.1f} %"]
    resume = report["checks"].get("resume", {})
    if "max_abs_weight_difference" in resume:
        lines += ["", "## Resume", "", f"- interrupted after epoch 1 of 3 and resumed vs uninterrupted, deterministic "
                  f"algorithms: max |weight difference| = {resume['max_abs_weight_difference']:g}"]
    tr = report["checks"].get("torchrun", {})
    if "processes" in tr:
        lines += ["", "## torchrun (NCCL, DDP, SyncBatchNorm)", "",
                  f"- {tr['processes']} process(es); final tuning loss {tr.get('torchrun')} vs single process "
                  f"{tr.get('single')}" + (f" (relative difference {tr['loss_rel_diff']:.2e})" if "loss_rel_diff" in tr else "")]
    bench = report["checks"].get("bench", {})
    for name, item in bench.items():
        if isinstance(item, dict) and "workloads" in item:
            from stars.bench import format_results

            lines += ["", f"## bench: {name}", "", "```", format_results(item), "```"]
    kernels = report["checks"].get("kernels", {})
    if any(isinstance(v, dict) for v in kernels.values()):
        lines += _kernel_lines(kernels)
    smoke = report["checks"].get("smoke", {})
    if "notebooks" in smoke:
        lines += ["", "## smoke profile on cuda", ""] + [f"- {k}: {v}" for k, v in smoke["notebooks"].items()]
    lines += ["", "Reproduce: `make gpu-check` (or `python -m stars.gpu_check --against-official DIR`)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stars.gpu_check", allow_abbrev=False)
    parser.add_argument("--against-official", default=None, metavar="DIR")
    parser.add_argument("--out", default=str(REPO_ROOT / "results" / "gpu"))
    parser.add_argument("--budget-s", type=float, default=540.0, help="time for all checks together")
    parser.add_argument("--only", default="", help="comma-separated subset of the checks")
    parser.add_argument("--dry-run-on-cpu", action="store_true",
                        help="run the checks small on the CPU (to test this script; nothing is written to results/)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.dry_run_on_cpu:
        print("gpu-check: no CUDA device is available; run it on a machine with an NVIDIA GPU", file=sys.stderr)
        return 2
    device = torch.device("cpu") if args.dry_run_on_cpu else torch.device("cuda", 0)
    small = dict(preset="tiny", batch_size=32) if args.dry_run_on_cpu else {}
    out_dir = Path(args.out)
    slug = _device_slug()
    if args.dry_run_on_cpu:
        out_dir = Path(tempfile.mkdtemp(prefix="stars-gpu-check-dry-"))
    report = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (dry run)",
              "gpus": torch.cuda.device_count(),
              "provenance": provenance(device), "checks": {}}
    previous = out_dir / f"{slug}.json"
    if args.only and previous.exists():  # a partial rerun updates the checks it runs and keeps the others
        report["checks"] = json.loads(previous.read_text()).get("checks", {})
    deadline = time.perf_counter() + args.budget_s
    work = Path(tempfile.mkdtemp(prefix="stars-gpu-check-"))
    left = lambda: deadline - time.perf_counter()  # noqa: E731
    checks: list[tuple[str, Callable[[], dict]]] = [
        ("gpu-tests", lambda: check_gpu_tests(min(180, left()))),
        ("bf16", lambda: check_bf16(device, work, **({"preset": "tiny", "epochs": 1} if small else {}))),
        ("resume", lambda: check_resume(device, work)),
        ("torchrun", lambda: check_torchrun(device, work, min(150, left()))),
        ("bench", lambda: check_bench(device, args.against_official, min(240, left()), **small)),
        ("kernels", lambda: check_kernels(device, min(210, left()), **small)),
        ("smoke", lambda: check_smoke(device, left(), work)),
    ]
    only = {c.strip() for c in args.only.split(",") if c.strip()}
    for name, check in checks:
        if only and name not in only:
            continue
        if left() < 20:
            report["checks"][name] = {"skipped": "out of time", "ok": False}
            continue
        print(f"[gpu-check] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            result = check()
        except Exception as err:  # noqa: BLE001 - record and go on to the next check
            result = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
        result["check_seconds"] = time.perf_counter() - start
        result["commit"] = report["provenance"]["commit"]
        result["time"] = report["provenance"]["time"]
        report["checks"][name] = result
        print(f"[gpu-check] {name}: {'ok' if result.get('ok') else 'FAILED'} ({result['check_seconds']:.0f} s)", flush=True)
        write_json(out_dir / f"{slug}.json", report)
        atomic_write_bytes(out_dir / f"{slug}.md", _markdown(report).encode())
    print(_markdown(report))
    return 0 if all(c.get("ok") for c in report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

