#!/usr/bin/python3
"""Kiln against PyTorch, side by side, on this machine's CPU.

Runs `kiln bench --json` and the same model written in PyTorch (models.py) on the
same synthetic batch, alternating, and reports medians, spread and Kiln/PyTorch
ratios. PyTorch is given its best thread setting: torch threads and OpenBLAS
threads each at 1 or at every core, the four pairs tried first and the fastest
kept (torch's threads and OpenBLAS's oversubscribe the cores otherwise).

    make bench-torch          # or
    /usr/bin/python3 bench/torch/compare.py --kiln ./kiln

--isa avx2 stands in for an AVX2-only machine on one with AVX-512: Kiln runs
with KILN_CPU_ISA=avx2, PyTorch with ATEN_CPU_CAPABILITY=avx2,
ONEDNN_MAX_CPU_ISA=AVX2 and OpenBLAS's Haswell kernels (OPENBLAS_CORETYPE).

--precision bf16 runs Kiln with --precision bf16 against PyTorch under
torch.autocast("cpu", dtype=torch.bfloat16), and Kiln fp32 in the same rounds,
so both ratios (Kiln/PyTorch in bf16, Kiln bf16/Kiln fp32) come from one run.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CASES = "lenet:64:28x28x1,gmlp:128:32x32x3,cbam:128:32x32x3"

# The environment that caps both sides at an ISA level (--isa); "native"
# clears it, so each side runs the widest code the CPU has.
ISA_ENV = {
    "native": {},
    "avx2": {"KILN_CPU_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell"},
}
ISA_VARS = sorted({k for env in ISA_ENV.values() for k in env})


def set_isa_env(isa):
    """Caps this process (and so every child) at the level isa names."""
    for k in ISA_VARS:
        os.environ.pop(k, None)
    os.environ.update(ISA_ENV[isa])


def worker(args):
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, HERE)
    from models import autocast, build

    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    h, w, c = (int(v) for v in args.input.split("x"))
    model = build(args.model, c, h, w, 10).train()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, c, h, w)
    y = torch.randint(0, 10, (args.batch,))

    cast = autocast("cpu", args.precision)

    def step():
        opt.zero_grad(set_to_none=True)
        with cast:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    n, t0 = 0, time.perf_counter()
    while n < args.steps or time.perf_counter() - t0 < args.seconds:
        step()
        n += 1
    el = time.perf_counter() - t0
    print(json.dumps({"params": params, "steps": n, "seconds": el,
                      "train_images_per_sec": n * args.batch / el}))


def run_torch(model, batch, inp, tt, bt, seconds, precision):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(bt), OMP_NUM_THREADS=str(tt))
    env.pop("OPENBLAS_L2_SIZE", None)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "--model", model,
                          "--batch", str(batch), "--input", inp, "--torch-threads", str(tt),
                          "--seconds", str(seconds), "--precision", precision], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"torch worker failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_kiln(kiln, model, batch, inp, seconds, precision, micro_batch=0):
    out = subprocess.run([kiln, "bench", "--model", model, "--batch", str(batch), "--input", inp,
                          "--device", "cpu", "--seconds", str(seconds), "--json", "--precision", precision,
                          "--micro-batch", str(micro_batch)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kiln bench failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def slug(s):
    """A lower-case file-name part of s, as bench/machine.go's slug."""
    s = s.lower()
    for noise in ("(r)", "(tm)", " cpu", " processor", "-core"):
        s = s.replace(noise, " ")
    s = re.sub(r"[^a-z0-9]+", "-", s).strip("-")
    return s[:40].rstrip("-")


def machine():
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": usable_cores(), "system": platform.platform()}


def usable_cores():
    """The cores this process may run on (taskset, a container's cpuset), as
    Kiln's Go runtime counts them; os.cpu_count() counts the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run_case(args, model, batch, inp, combos):
    """One case: PyTorch's thread settings probed, then alternating rounds; its results row."""
    probe = {}
    for tt, bt in combos:
        r = run_torch(model, batch, inp, tt, bt, args.seconds / 2, args.precision)
        probe[f"torch{tt}/openblas{bt}"] = r["train_images_per_sec"]
        print(f"   probe torch threads {tt}, OpenBLAS threads {bt}: {r['train_images_per_sec']:.0f} images/s", flush=True)
    best = max(combos, key=lambda c: probe[f"torch{c[0]}/openblas{c[1]}"])
    kiln_runs, torch_runs, fp32_runs, kparams, tparams, kisa, kmicro = [], [], [], None, None, None, 0
    for _ in range(args.rounds):
        k = run_kiln(args.kiln, model, batch, inp, args.seconds, args.precision, args.micro_batch)
        if args.precision != "fp32":
            fp32_runs.append(run_kiln(args.kiln, model, batch, inp, args.seconds, "fp32",
                                      args.micro_batch)["train_images_per_sec"])
        t = run_torch(model, batch, inp, best[0], best[1], args.seconds, args.precision)
        kiln_runs.append(k["train_images_per_sec"])
        torch_runs.append(t["train_images_per_sec"])
        kparams, tparams, kisa, kmicro = k["params"], t["params"], k.get("cpu_isa"), k.get("micro_batch", 0)
    km, tm = statistics.median(kiln_runs), statistics.median(torch_runs)
    row = {
        "model": model, "batch": batch, "input": inp,
        "params_kiln": kparams, "params_torch": tparams, "kiln_cpu_isa": kisa, "kiln_ran_micro_batch": kmicro,
        "kiln_images_per_sec": km, "kiln_runs": kiln_runs,
        "torch_images_per_sec": tm, "torch_runs": torch_runs,
        "torch_setting": f"torch threads {best[0]}, OPENBLAS_NUM_THREADS={best[1]}",
        "torch_probe": probe, "ratio": km / tm, "precision": args.precision,
    }
    if fp32_runs:
        row["kiln_fp32_images_per_sec"], row["kiln_fp32_runs"] = statistics.median(fp32_runs), fp32_runs
        row["kiln_over_kiln_fp32"] = km / row["kiln_fp32_images_per_sec"]
    if kparams != tparams:
        row["error"] = f"parameter counts differ: kiln {kparams}, torch {tparams}"
    print(f"   kiln  {km:8.0f} images/s  (runs {', '.join(f'{v:.0f}' for v in kiln_runs)}; ISA {kisa}"
          + (f"; micro-batch {kmicro}" if kmicro else "") + ")")
    print(f"   torch {tm:8.0f} images/s  (runs {', '.join(f'{v:.0f}' for v in torch_runs)}; {row['torch_setting']})")
    if fp32_runs:
        print(f"   kiln fp32 {row['kiln_fp32_images_per_sec']:8.0f} images/s  ({args.precision}/fp32 = {row['kiln_over_kiln_fp32']:.2f})")
    print(f"   ratio kiln/torch = {km / tm:.2f}" + (f"   !! {row['error']}" if "error" in row else ""), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--input")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--kiln", default="./kiln", help="path to the kiln binary")
    ap.add_argument("--cases", default=DEFAULT_CASES, help="model:batch:HxWxC,…")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per model")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "results"), help="results folder")
    ap.add_argument("--isa", choices=sorted(ISA_ENV), default="native",
                    help="cap both sides at this ISA level (avx2: stand in for an AVX2-only machine)")
    ap.add_argument("--micro-batch", type=int, default=0,
                    help="Kiln's --micro-batch (both of its precisions): 0 Kiln's own choice, as by default; "
                         "-1 the whole batch; N pieces of N (models without batch norm only)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: Kiln --precision bf16 against PyTorch's CPU autocast bf16, with Kiln fp32 in the same rounds")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    set_isa_env(args.isa)  # before torch is imported: ATen and OpenBLAS read it when they load
    from blasinfo import give_openblas_its_kernels
    kernels_note = give_openblas_its_kernels()  # likewise; the workers inherit it
    if kernels_note:
        print(kernels_note, flush=True)

    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        sys.exit("PyTorch not found: install Debian's python3-torch to compare (Kiln alone: kiln bench)")
    from blasinfo import REFERENCE_BLAS_ADVICE, blas_info
    blas = blas_info(torch)
    if blas["blas_kind"] == "reference":
        sys.exit(REFERENCE_BLAS_ADVICE.format(lib=blas["blas_library"]))
    print(f"PyTorch {torch_version} on {blas['blas_kind']} ({blas['openblas'] or blas['blas_library']}), "
          f"ATen {blas['aten_cpu'] or '?'}, oneDNN {blas['onednn_isa'] or '?'}; --isa {args.isa}", flush=True)
    cores = usable_cores()
    combos = sorted({(t, b) for t in (1, cores) for b in (1, cores)})
    results = []
    for case in args.cases.split(","):
        model, batch, inp = case.split(":")
        batch = int(batch)
        print(f"== {model} batch {batch} input {inp}", flush=True)
        try:
            results.append(run_case(args, model, batch, inp, combos))
        except RuntimeError as e:  # this case's row says why; the others still run
            results.append({"model": model, "batch": batch, "input": inp, "precision": args.precision, "error": str(e)})
            print(f"   !! {e}", flush=True)

    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "torch": torch_version, "torch_blas": blas, "kiln_commit": rev, "rounds": args.rounds,
              "isa": args.isa, "isa_env": ISA_ENV[args.isa], "openblas_coretype_set": kernels_note, "precision": args.precision,
              "kiln_micro_batch": args.micro_batch,
              "seconds_per_run": args.seconds, "results": results}
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.date.today().isoformat()
    # One file per run: the date and commit name it, and a rerun of the same commit adds a
    # number instead of replacing the earlier figures.
    # Named as kiln bench suite names its reports: CPU model, cores and Kiln's ISA level.
    level = next((r["kiln_cpu_isa"] for r in results if "kiln_cpu_isa" in r), args.isa)
    name = (f"{slug(report['machine']['cpu']) or 'cpu'}-{cores}core-{level}-{stamp}-{rev or 'nogit'}"
            + ("" if args.isa == "native" else f"-{args.isa}")
            + ("" if args.precision == "fp32" else f"-{args.precision}")
            + {0: "", -1: "-whole"}.get(args.micro_batch, f"-mb{args.micro_batch}"))
    base = os.path.join(args.out, name)
    n = 2
    while os.path.exists(base + ".json"):
        base = os.path.join(args.out, f"{name}-{n}")
        n += 1
    with open(base + ".json", "w") as f:
        json.dump(report, f, indent=2)
    with open(base + ".md", "w") as f:
        f.write(f"# Kiln vs PyTorch {torch_version}, training images/s ({stamp})\n\n")
        f.write(f"Machine: {report['machine']['cpu']}, {cores} cores. Kiln {rev}. PyTorch on "
                f"{blas['blas_kind']} ({blas['openblas'] or blas['blas_library']}), ATen {blas['aten_cpu'] or '?'}, "
                f"oneDNN {blas['onednn_isa'] or '?'}; Kiln at ISA level {next((r['kiln_cpu_isa'] for r in results if 'kiln_cpu_isa' in r), '?')}"
                + (f" (--isa {args.isa}: {' '.join(f'{k}={v}' for k, v in ISA_ENV[args.isa].items())})"
                   if args.isa != "native" else "") + ". "
                f"Medians of {args.rounds} alternating runs of ≥{args.seconds:g} s each; "
                f"synthetic batch; SGD momentum 0.9; precision {args.precision}"
                + (" (Kiln --precision bf16; PyTorch torch.autocast('cpu', bfloat16); Kiln fp32 in the same rounds)"
                   if args.precision != "fp32" else "")
                + (f"; Kiln --micro-batch {args.micro_batch} (the batch's one step in pieces of {args.micro_batch}; "
                   f"PyTorch the whole batch)" if args.micro_batch > 0 else "")
                + ("; Kiln --micro-batch -1 (the whole batch, as PyTorch)" if args.micro_batch == -1 else "")
                + ("; a Kiln figure marked (mb N) ran its step in pieces of N by Kiln's own choice "
                   "(--micro-batch 0, the default), PyTorch the whole batch" if args.micro_batch == 0 else "") + "."
                + (f" {kernels_note}." if kernels_note else "") + "\n\n")
        bf = args.precision != "fp32"
        f.write("| model | batch | input | params | Kiln | PyTorch (best setting) | Kiln/PyTorch |"
                + (" Kiln fp32 | Kiln bf16/fp32 |\n|---|---|---|---|---|---|---|---|---|\n" if bf else "\n|---|---|---|---|---|---|---|\n"))
        for r in results:
            if "kiln_images_per_sec" not in r:
                last = r["error"].strip().splitlines()[-1].replace("|", "/")[-200:]  # one table cell
                f.write(f"| {r['model']} | {r['batch']} | {r['input']} | failed: {last} |\n")
                continue
            f.write(f"| {r['model']} | {r['batch']} | {r['input']} | {r['params_kiln']} | "
                    f"{r['kiln_images_per_sec']:.0f}"
                    + (f" (mb {r['kiln_ran_micro_batch']})" if r.get("kiln_ran_micro_batch") and args.micro_batch == 0 else "")
                    + f" | {r['torch_images_per_sec']:.0f} ({r['torch_setting']}) | "
                    f"**{r['ratio']:.2f}** |"
                    + (f" {r['kiln_fp32_images_per_sec']:.0f} | **{r['kiln_over_kiln_fp32']:.2f}** |\n" if bf else "\n"))
    print(f"wrote {base}.json and {base}.md")
    if any("error" in r for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
