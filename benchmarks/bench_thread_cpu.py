"""Where a CLI run's CPU goes, per pipeline stage: CPU seconds of every thread, by its name.

The engine names its OS threads after their stage (``geopix-reader``, ``geopix-raster``,
``geopix-vector``, ``geopix-blend``, ``geopix-predict-N``; the model also runs in the main
thread), and threads a stage starts inherit the name (GDAL's block-decoding pool is the
reader's). This script runs a command, samples ``/proc/PID/task/*/{comm,stat}`` every 0.1 s and
sums the last CPU time seen per name. Unlike a sampling profiler it counts CPU time, not time a
thread was runnable, so on a 2-core machine with more runnable threads than cores the shares
are what each stage costs. The model's share against everything else is the ceiling on the
engine's efficiency (issue 14, item 1): ``model / (model + the rest)``, start-up excluded. The
main thread is both the start-up (imports, model load, scene statistics) and one of the two model
threads, so the model's CPU is estimated as twice the helper model thread's (``geopix-predict-``,
the OS name cut to 15 characters); they share the batches evenly.

    python benchmarks/bench_thread_cpu.py [--repeats 3] -- geopix-tiles segment SCENE -o x.gpkg --raster x.tif --model default -p water ...
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time
from collections import defaultdict


def sample(cmd: list[str], stdout=subprocess.DEVNULL, env: dict | None = None,
           peak: list[float] | None = None, cwd: str | None = None) -> tuple[dict[str, float], float, int]:
    """CPU seconds per thread name, wall seconds, exit status of one run of ``cmd``.

    ``stdout`` receives the command's output (stderr goes with it); ``peak``, when given, gets
    the largest ``VmHWM`` (peak RSS, MB) seen while sampling appended, for machines without
    ``/usr/bin/time``.
    """
    tick = os.sysconf("SC_CLK_TCK")
    t0 = time.time()
    err = subprocess.STDOUT if stdout is not subprocess.DEVNULL else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=err, env=env, cwd=cwd)
    last: dict[int, tuple[str, float]] = {}
    hwm = 0.0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                hwm = max([hwm] + [int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM")])
        except OSError:
            pass
        for task in glob.glob(f"/proc/{proc.pid}/task/*"):
            try:
                with open(f"{task}/comm") as f:
                    name = f.read().strip()
                with open(f"{task}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the thread ended between listing and reading
            last[int(task.rsplit("/", 1)[1])] = (name, (int(fields[11]) + int(fields[12])) / tick)
        time.sleep(0.1)
    if peak is not None:
        peak.append(hwm)
    per_name: dict[str, float] = defaultdict(float)
    main_name = last.get(proc.pid, ("", 0.0))[0]
    for tid, (name, cpu) in last.items():
        if tid == proc.pid:
            name = "main (start-up + model)"
        elif name == main_name:
            name = "unnamed (started by the main thread)"
        per_name[name] += cpu
    return dict(per_name), time.time() - t0, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd or not sys.platform.startswith("linux"):
        raise SystemExit("usage: bench_thread_cpu.py [--repeats N] -- COMMAND ... (Linux only)")
    runs = []
    for i in range(args.repeats):
        per, wall, rc = sample(cmd)
        if rc != 0:
            raise SystemExit(f"the command failed (exit {rc}): {' '.join(cmd)}")
        runs.append(per)
        print(f"run {i + 1}: wall {wall:.1f} s, " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items())), flush=True)
    names = sorted({k for r in runs for k in r}, key=lambda k: -sum(r.get(k, 0) for r in runs))
    print("\n| thread (stage) | " + " | ".join(f"run {i + 1} CPU s" for i in range(len(runs))) + " |")
    print("|---|" + "---|" * len(runs))
    for k in names:
        print(f"| {k} | " + " | ".join(f"{r.get(k, 0):.2f}" for r in runs) + " |")
    shares = []
    for r in runs:
        model = 2 * r.get("geopix-predict-", 0.0)
        rest = sum(v for k, v in r.items() if not k.startswith(("main", "geopix-predict")))
        shares.append(model / max(1e-9, model + rest))
    print(f"| model / (model + every other thread) | " + " | ".join(f"{s:.3f}" for s in shares) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
