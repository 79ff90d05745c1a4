"""The seed's evaluation, run and measured: examples/pipelines/seed-evaluation.yaml at 16, 32, 64 and 128 partitions.

    python bench/seed_evaluation.py                       # make seed-evaluation
    python bench/seed_evaluation.py --partitions 16 --visit-size 2000

For each partition count, on a fresh 4-broker local cluster that
``alert-pipeline up`` starts (the file's own, with its buffers' partitions set
to the count):

1. stage: ``alert-sidecar bench`` writes one visit of Rubin alerts (10 KB by default) into
   ``alerts`` and times them out of ``checked``, through the file's stage: 4
   sidecar instances with 4 Python no-op worker processes each;
2. raw: the stage is scaled to 0 (``alert-pipeline scale``) and 4 processes of
   a raw confluent-kafka consume -> produce loop (bench/compare.py's, in one
   consumer group, at least once) copy a fresh topic of as many partitions,
   timed the same way: what the same machine does with no sidecar, gRPC or
   worker in the way.

It prints a table and one JSON line: for each count, alerts/s and latency
(p50, p99) of both, the stage's throughput as a ratio of the raw loop's, and
both against 16 partitions (the overhead of more partitions).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from compare import RAW_STAGE  # noqa: E402

from alert_sidecar.commands.bench import run_bench  # noqa: E402
from alert_sidecar.exceptions import SidecarError  # noqa: E402

FILE = ROOT / "examples" / "pipelines" / "seed-evaluation.yaml"
PIPELINE = [str(Path(sys.executable).parent / "alert-pipeline")]
INSTANCES = 4


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pipeline_at(partitions: int, folder: Path) -> Path:
    """The seed-evaluation file with its buffers at ``partitions``, beside the original's worker (absolute path)."""
    data = yaml.safe_load(FILE.read_text())
    for name in ("alerts", "checked"):
        data["buffers"][name]["partitions"] = partitions
    worker = data["stages"]["stage"]["worker"]
    worker["command"] = [sys.executable, str((FILE.parent / worker["command"][1]).resolve())]
    path = folder / f"seed-evaluation-{partitions}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([*PIPELINE, *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise SystemExit(f"alert-pipeline {' '.join(args)} failed ({result.returncode}):\n{result.stdout}"
                         f"\n{result.stderr}")
    return result


def measure(partitions: int, visit_size: int, size: str, folder: Path) -> dict:
    file, state = pipeline_at(partitions, folder), folder / f"state-{partitions}"
    say(f"{partitions} partitions: alert-pipeline up (4 brokers, {INSTANCES} instances x 4 workers)")
    started = time.monotonic()
    run("up", str(file), "--detach", "--state-dir", str(state), "--wait", "400")
    up_s = time.monotonic() - started
    raw_processes = []
    try:
        bootstrap = json.loads((state / "supervisor.json").read_text())["clusters"]["evaluation"]
        say(f"  up in {up_s:.0f} s; bench: one visit of {visit_size:,} {size} alerts through the stage")
        stage = run_bench(f"kafka://{bootstrap}/alerts", f"kafka://{bootstrap}/checked", visits=1,
                          visit_size=visit_size, size=size, partitions=partitions, timeout=60)
        run("scale", str(file), "stage", "0", "--state-dir", str(state))
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(t, partitions, 3) for t in ("raw-in", "raw-out")]).values():
            future.result(30)
        raw_processes = [subprocess.Popen([sys.executable, "-c", RAW_STAGE, bootstrap, "raw-in", "raw-out", "raw",
                                           str(partitions)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                         for _ in range(INSTANCES)]
        time.sleep(8)  # the four join their group and are given the partitions
        say("  bench: the same visit through 4 raw consume -> produce loops")
        raw = run_bench(f"kafka://{bootstrap}/raw-in", f"kafka://{bootstrap}/raw-out", visits=1,
                        visit_size=visit_size, size=size, partitions=partitions, timeout=60)
    finally:
        for process in raw_processes:
            process.terminate()
        for process in raw_processes:
            process.wait(30)
        run("down", str(file), "--state-dir", str(state))
    keep = ("alerts", "out_alerts", "missing", "alerts_per_s", "p50_ms", "p99_ms", "max_ms", "elapsed_s")
    return {"partitions": partitions, "up_s": round(up_s, 1),
            "stage": {k: stage.get(k) for k in keep}, "raw": {k: raw.get(k) for k in keep},
            "ratio_raw": round(stage["alerts_per_s"] / raw["alerts_per_s"], 3) if raw["alerts_per_s"] else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", default="16,32,64,128", help="comma-separated partition counts")
    parser.add_argument("--visit-size", type=int, default=10_000, help="alerts in the visit (Rubin's average)")
    # Small (10 KB) alerts by default: on the project's 2-core machine a visit of
    # 10,000 LSST-sized ones (620 MB, three replicas) is not acknowledged by the
    # four brokers within the bench's time while 20 stage processes share the cores.
    parser.add_argument("--size", choices=("lsst", "small"), default="small")
    args = parser.parse_args(argv)
    counts = [int(p) for p in args.partitions.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="seed-evaluation-") as folder:
        for count in counts:
            try:
                results.append(measure(count, args.visit_size, args.size, Path(folder)))
            except SidecarError as err:  # said, and the next count measured: one failure is a figure too
                print(f"seed-evaluation: {count} partitions: {err}", file=sys.stderr)
                results.append({"partitions": count, "failed": str(err)})
                continue
            say(f"  {json.dumps(results[-1])}")
    done = [r for r in results if "failed" not in r]
    if not done:
        return 1
    base = done[0]
    versus = f"vs {base['partitions']}"
    print(f"{'partitions':>10} {'stage/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'raw/s':>9} {'raw p99':>8} "
          f"{'stage/raw':>9} {versus:>8}")
    for r in done:
        r["stage_vs_first"] = round(r["stage"]["alerts_per_s"] / base["stage"]["alerts_per_s"], 3)
        r["raw_vs_first"] = round(r["raw"]["alerts_per_s"] / base["raw"]["alerts_per_s"], 3)
        print(f"{r['partitions']:>10} {r['stage']['alerts_per_s']:>9,.0f} {r['stage']['p50_ms']:>8,.0f} "
              f"{r['stage']['p99_ms']:>8,.0f} {r['raw']['alerts_per_s']:>9,.0f} {r['raw']['p99_ms']:>8,.0f} "
              f"{r['ratio_raw']:>9} {r['stage_vs_first']:>8}")
    print(json.dumps({"visit_size": args.visit_size, "size": args.size, "results": results}))
    for r in results:
        if "failed" in r:
            print(f"{r['partitions']:>10} failed: {r['failed']}")
    missing = sum(r["stage"]["missing"] + r["raw"]["missing"] for r in done)
    return 1 if missing or len(done) < len(results) else 0


if __name__ == "__main__":
    sys.exit(main())
