"""Data-parallel training throughput (scale-out issue): one config trained for a few steps as one
process and under ``torchrun --nproc_per_node N`` (DDP), the same global batch everywhere.

Reads the rank-0 log: seconds per step between the ``--skip``-th and the last logged step (data
loading and the first steps are left out), samples per second, and the speed-up over one process.
On a CPU machine the processes share its cores; each gets ``cores / N`` torch threads, so the
comparison is one process using every core against N processes splitting them.
Run: ``python -m ssc.eval.ddp --config configs/gi-hyper-ckbd-s.yaml --procs 1 2``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from .report import markdown_table, run_meta, write_outputs


def run(config: dict, procs: int, threads: int, out: Path) -> dict:
    cfg = dict(config, out_dir=str(out / f"p{procs}"), threads=threads, log_every=1, ckpt_every=10**9)
    path = out / f"p{procs}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    train = ["-m", "ssc.cli", "train", "--config", str(path), "--restart"]
    cmd = [sys.executable, *train] if procs == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), *train]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    log = [json.loads(line) for line in (Path(cfg["out_dir"]) / cfg["name"] / "log.jsonl").read_text().splitlines()]
    return {"procs": procs, "threads_per_proc": threads, "log": log}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/gi-hyper-ckbd-s.yaml")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--skip", type=int, default=5, help="steps left out of the timing (warm-up)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default="out/eval/ddp")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(Path(args.config).read_text())
    config.update(steps=args.steps)
    rows, runs = [], []
    for n in args.procs:
        r = run(config, n, max(1, args.cores // n), out)
        log = r["log"]
        a, b = log[args.skip - 1], log[-1]
        r["s_per_step"] = (b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"])
        r["samples_per_s"] = config["batch"] / r["s_per_step"]
        r["final_loss"] = b["loss"]
        runs.append(r)
    base = runs[0]["samples_per_s"]
    for r in runs:
        r["speedup"] = r["samples_per_s"] / base
        rows.append([r["procs"], r["threads_per_proc"], config["batch"], r["s_per_step"], r["samples_per_s"], r["speedup"],
                     r["final_loss"]])
    lines = markdown_table(["processes", "threads each", "global batch", "s/step", "samples/s", "speed-up", "loss at last step"], rows)
    write_outputs(out, "ddp", {"runs": runs, "meta": run_meta(config=args.config, steps=args.steps, skip=args.skip)}, lines)


if __name__ == "__main__":
    main()
