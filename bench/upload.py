"""Upload/download throughput of appyard's embedded default against nginx, on loopback.

    .venv/bin/python bench/upload.py [--size-mib 1024] [--pairs 10] [--uvicorn-pairs 3]

Starts ``appyard serve`` (Granian) on a fresh data directory and an nginx (WebDAV PUT,
sendfile GET) with its own temporary configuration, both storing under one temporary
directory on the same disk, and moves the same bytes through both, interleaved A B A B:

- ``put``: the automation API's signed single PUT (``curl -T``) vs ``curl -T`` to nginx;
- ``multipart``: ``POST /automate/upload`` with ``file_size``, every 10 MiB part PUT in turn
  on one keep-alive connection, then ``POST /automate/upload/complete`` (assembly included in
  the time) vs one PUT of the same file to nginx, both sent by the same small client that
  hands the file to the kernel with ``sendfile(2)``;
- ``get``: the signed download URL of a completed build vs the same bytes from nginx, both
  ``curl -o /dev/null``;
- ``form``: the store CI upload (``curl -F apk=@app.apk .../portal/api/uploads/ci``, one new
  tenant and CI token per pair so every upload is a new version: 201) vs ``curl -T`` of the
  same APK to nginx (issue 6);
- ``dist``: the distribution API's form upload (``curl -F build=@app.apk`` with an app
  token) vs ``curl -T`` of the same APK to nginx (issue 12);
- ``spec``: the upload-context API's ``uploadSpec`` PUT (``curl -T`` with every header the
  spec hands out) vs ``curl -T`` to nginx (issue 10).

Both sides are treated alike: with ``--regime delete`` (the default) each side removes what it
stored after every pair (appyard the uploaded object, once its job is done; nginx its file),
so the disk keeps a steady amount of free, already-allocated space and the figure is about the
servers' work; with ``--regime keep`` both keep every upload, and both pay for newly allocated
pages.

Then the same appyard app under uvicorn for ``--uvicorn-pairs`` pairs of each direction, to
show why the server is Granian. It prints MB/s (10^6 bytes per second), the median of the
per-pair ratios appyard/nginx per direction, and appyard's peak RSS (sum of VmRSS over the
server's process tree sampled every 50 ms; and the sum of each process's VmHWM). Everything
it starts is stopped by PID and its temporary directory is removed (``--keep`` keeps it).
See bench/README.md.
"""

from __future__ import annotations

# isort: off
import _path  # noqa: F401  (first: see bench/_path.py)

# isort: on

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import pwd
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import (
    MB,
    MIB,
    CpuMeter,
    Deadline,
    Proc,
    RssSampler,
    curl,
    free_bytes,
    free_port,
    freed_memory_kept,
    interleave,
    mbps,
    mem_available,
    paired_ratio,
    prefault_memory,
    summary,
    temp_dir,
    terminate_on_sigterm,
    wait_http_ok,
    wait_port,
    write_random_file,
)

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
FIXTURE = REPO / "tests" / "fixtures" / "fixture-release-v1v2v3.apk"
HOST = "127.0.0.1"
GIB = 1024 * MIB
MULTIPART_THRESHOLD = 100 * MIB  # appyard's default APPYARD_MULTIPART_THRESHOLD
TRANSFER_TIMEOUT = 600.0
JOB_TIMEOUT = 900.0
DIRECTIONS = ("put", "multipart", "get", "form", "dist", "spec")
LABELS = {
    "put": "signed single PUT",
    "multipart": "multipart (10 MiB parts + complete)",
    "get": "signed download GET",
    "form": "store CI upload (multipart/form-data)",
    "dist": "distribution upload (multipart/form-data)",
    "spec": "upload-context uploadSpec PUT",
}
TARGETS = {"put": 0.8, "multipart": 0.8, "get": 0.8, "form": 0.9, "dist": 0.9, "spec": 0.9}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- HTTP clients -------------------------------------------------------------------------------
def _target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return parts.hostname or HOST, parts.port or 80, path


class Api:
    """The automation API, one short connection per call."""

    def __init__(self, base: str, key: str) -> None:
        self.base, self.key = base.rstrip("/"), key

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        host, port, _ = _target(self.base)
        conn = http.client.HTTPConnection(host, port, timeout=120)
        try:
            headers = {"Authorization": f"Bearer {self.key}"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw else {}
        except ValueError:
            return resp.status, {"error": raw[:200].decode(errors="replace")}

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, doc = self.call(method, path, body)
        if status != 200:
            raise RuntimeError(f"{method} {path} answered {status}: {doc}")
        return doc

    def request_upload(self, file_name: str, file_size: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "file_name": file_name,
            "platform": "android",
            "version": "production",
        }
        if file_size is not None:
            body["file_size"] = file_size
        return self.ok("POST", "/automate/upload", body)

    def wait_job(self, job_id: str, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
        """Poll until completed or failed."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.ok("GET", f"/automate/status/{job_id}")
            if doc.get("status") in ("completed", "failed"):
                return doc
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {doc} after {timeout:.0f} s")
            time.sleep(0.1)


def _send_file(conn: http.client.HTTPConnection, fh: Any, offset: int, count: int) -> None:
    assert conn.sock is not None
    sent = conn.sock.sendfile(fh, offset, count)
    if sent != count:
        raise RuntimeError(f"sendfile sent {sent} of {count} bytes")


def sendfile_puts(urls: list[str], path: Path, chunk: int) -> list[str]:
    """PUT consecutive ``chunk``-byte slices of ``path`` to ``urls`` on one keep-alive
    connection, the bytes going file -> socket in the kernel (no copy through Python).
    With one URL and chunk >= size it is a plain single PUT. Returns the ETags."""
    size = path.stat().st_size
    host, port, _ = _target(urls[0])
    conn = http.client.HTTPConnection(host, port, timeout=TRANSFER_TIMEOUT)
    etags = []
    try:
        with open(path, "rb") as fh:
            for n, url in enumerate(urls):
                offset = n * chunk
                count = min(chunk, size - offset)
                conn.putrequest("PUT", _target(url)[2], skip_accept_encoding=True)
                conn.putheader("Content-Type", "application/octet-stream")
                conn.putheader("Content-Length", str(count))
                conn.endheaders()
                _send_file(conn, fh, offset, count)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status not in (200, 201, 204):
                    raise RuntimeError(f"PUT part {n + 1} answered {resp.status}: {body[:200]!r}")
                etags.append(resp.getheader("ETag") or "")
    finally:
        conn.close()
    return etags


def curl_put(path: Path, url: str, headers: dict[str, str] | None = None) -> float:
    """``curl -T``: streams the file (curl sends Expect: 100-continue; both servers answer)."""
    sent = headers or {"Content-Type": "application/octet-stream"}
    flags = [arg for name, value in sent.items() for arg in ("-H", f"{name}: {value}")]
    res = curl(["-T", str(path), *flags, url], timeout=TRANSFER_TIMEOUT)
    size = path.stat().st_size
    if res.status not in (200, 201, 204) or res.uploaded != size:
        raise RuntimeError(f"PUT {url[:60]} answered {res.status}, sent {res.uploaded}/{size}")
    return mbps(size, res.seconds)


def curl_form(
    path: Path, url: str, token: str, part: str = "apk", ok: int = 201
) -> tuple[float, dict[str, Any]]:
    """``curl -F apk=@FILE`` as the store spec's CI example sends it (``build=@`` for the
    distribution API); (MB/s of the file, body)."""
    out = path.with_suffix(".response.json")
    res = curl(
        ["-F", f"{part}=@{path};type=application/vnd.android.package-archive",
         "-H", f"Authorization: Bearer {token}", "-o", str(out), url],
        timeout=TRANSFER_TIMEOUT,
    )  # fmt: skip
    size = path.stat().st_size
    body = json.loads(out.read_text() or "{}")
    out.unlink()
    if res.status != ok or res.uploaded < size:
        raise RuntimeError(f"POST {url} answered {res.status} {body}, sent {res.uploaded}/{size}")
    return mbps(size, res.seconds), body


def curl_get(url: str, size: int) -> float:
    res = curl(["-o", "/dev/null", url], timeout=TRANSFER_TIMEOUT)
    if res.status != 200 or res.downloaded != size:
        raise RuntimeError(f"GET {url[:60]} answered {res.status}, got {res.downloaded}/{size}")
    return mbps(size, res.seconds)


# -- the servers --------------------------------------------------------------------------------
NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {body_temp};
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
    server {{
        listen {host}:{port};
        root {root};
        client_max_body_size 0;
        location / {{
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw;
        }}
    }}
}}
"""


def start_nginx(work: Path, logs: Path) -> tuple[Proc, str, Path]:
    """nginx on a free loopback port; files under ``work/nginx-root`` (body temp beside it)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix, root, body_temp = work / "nginx", work / "nginx-root", work / "nginx-body-temp"
    for d in (prefix, root, body_temp):
        d.mkdir()
    port = free_port()
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            user=user, prefix=prefix, body_temp=body_temp, host=HOST, port=port, root=root
        )
    )
    proc = Proc(
        "nginx",
        [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        logs=logs,
    )
    wait_port(HOST, port, 20, proc.popen)
    return proc, f"http://{HOST}:{port}", root


@dataclass
class Appyard:
    name: str  # "granian" | "uvicorn"
    proc: Proc
    base: str
    api: Api
    sampler: RssSampler
    data: Path
    results: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # CPU seconds per transfer, per direction and side ("appyard" / "nginx")
    cpu: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    multipart_split: list[tuple[float, float]] = field(default_factory=list)
    ci_tokens: list[str] = field(default_factory=list)  # one tenant per form-upload pair
    context: Api | None = None  # the upload-context API with a context token
    app_token: str = ""  # the distribution API's app token

    def object_path(self, key: str) -> Path:
        return self.data / "blobs" / "objects" / key


def server_env(data: Path, port: int, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPYARD_")}
    env.update(
        APPYARD_DATA_DIR=str(data),
        APPYARD_HOST=HOST,
        APPYARD_PORT=str(port),
        TMPDIR=str(tmp),
        PYTHONUNBUFFERED="1",
    )
    return env


def start_granian(
    data: Path, tmp: Path, logs: Path, env_extra: dict[str, str] | None = None
) -> tuple[Proc, str, str]:
    """``appyard serve``: migrates, creates the default tenant, prints its first key."""
    port = free_port()
    env = {**server_env(data, port, tmp), **(env_extra or {})}
    env["COLUMNS"] = "400"  # the key line must not be wrapped by rich
    proc = Proc(
        "appyard-granian",
        [
            str(VENV_BIN / "appyard"),
            "serve",
            "--data-dir",
            str(data),
            "--host",
            HOST,
            "--port",
            str(port),
            "--download-port",
            str(free_port()),
        ],
        logs=logs,
        env=env,
    )
    line = proc.wait_stdout("APPTEGO_API_KEY=", 60)
    key = line.split("APPTEGO_API_KEY=", 1)[1].strip()
    base = f"http://{HOST}:{port}"
    wait_port(HOST, port, 60, proc.popen)
    wait_http_ok(f"{base}/healthz", 60)
    return proc, base, key


def start_uvicorn(data: Path, tmp: Path, logs: Path) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        "appyard-uvicorn",
        [
            str(VENV_BIN / "python"),
            "-m",
            "uvicorn",
            "appyard.app:app_from_env",
            "--factory",
            "--host",
            HOST,
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        logs=logs,
        env=server_env(data, port, tmp),
    )
    base = f"http://{HOST}:{port}"
    wait_port(HOST, port, 60, proc.popen)
    wait_http_ok(f"{base}/healthz", 60)
    return proc, base


def admin(data: Path, *args: str) -> str:
    """``appyard --data-dir DATA admin ARGS...`` (works while the server runs); its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPYARD_")}
    proc = subprocess.run(
        [str(VENV_BIN / "appyard"), "--data-dir", str(data), "admin", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"appyard admin {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def configure_tenant(data: Path) -> None:
    """Enterprise plan without concurrent or weekly build limits (every round creates a
    build), and for android/production only the zip-alignment protection: the appended asset
    invalidates the fixture's signature, which the detection controls would (rightly) block,
    and the download build must complete."""
    admin(data, "set-limits", "--tenant", "default", "--plan", "enterprise",
          "--concurrent-builds", "0", "--weekly-builds", "0", "--json")  # fmt: skip
    catalog = json.loads(admin(data, "list-controls", "--json"))
    detections = [c["id"] for c in catalog
                  if c["kind"] == "detection" and "android" in c["platforms"]]  # fmt: skip
    args = ["set-controls", "--tenant", "default", "--platform", "android",
            "--version", "production", "--enable", "protect.zipalign"]  # fmt: skip
    if detections:
        args += ["--disable", ",".join(detections)]
    admin(data, *args, "--json")


# -- the download object ------------------------------------------------------------------------
def build_apk(payload: Path, out: Path) -> None:
    """The fixture APK plus one STORED asset holding ``payload``, streamed.

    The asset's size is given up front so that zipfile writes ZIP64 records only when the
    entry needs them (over 4 GiB): ``force_zip64`` on a smaller entry writes a local header
    whose sizes sit in a ZIP64 extra field while the central directory holds them plainly,
    which appyard (like apksig, which does not do ZIP64) rejects as a size mismatch."""
    with zipfile.ZipFile(FIXTURE) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        asset = zipfile.ZipInfo("assets/bench-payload.bin", date_time=(2024, 1, 1, 0, 0, 0))
        asset.compress_type = zipfile.ZIP_STORED
        asset.file_size = payload.stat().st_size
        big = asset.file_size > 0xFFFF_0000
        with dst.open(asset, "w", force_zip64=big) as w, open(payload, "rb") as r:
            shutil.copyfileobj(r, w, MIB)


@dataclass
class Download:
    job_id: str
    key: str
    file_name: str
    size: int
    completed: bool  # False: the job failed and the URL is minted for the uploaded object
    note: str = ""


def prepare_download(srv: Appyard, payload: Path, work: Path) -> Download:
    """Upload a valid 1 GiB-ish APK once and wait for its build.

    If the build does not complete (the pipeline refuses or crashes), the bench still measures
    the same byte path: it signs a GET URL for the *uploaded* object with the data directory's
    URL secret, exactly as the server would (appyard.backends.storage.local), and says so.
    """
    apk = work / "bench-download.apk"
    log(f"building {apk.name} (fixture + {payload.stat().st_size / MIB:.0f} MiB stored asset)")
    build_apk(payload, apk)
    ticket = srv.api.request_upload("bench-download.apk")
    with srv.sampler.phase("setup: upload"):
        curl_put(apk, ticket["upload_url"])
    apk.unlink()
    log(f"uploaded; waiting for job {ticket['job_id']} (processing a large APK)")
    t0 = time.monotonic()
    with srv.sampler.phase("setup: build job"):
        status = srv.api.wait_job(ticket["job_id"])
    log(f"job {status['status']} after {time.monotonic() - t0:.1f} s")
    job_id = ticket["job_id"]
    if status["status"] == "completed":
        outputs = list((srv.data / "blobs" / "objects").glob(f"*/outputs/*/*/{job_id}/*"))
        if len(outputs) != 1:
            raise RuntimeError(f"cannot find the output object of job {job_id}: {outputs}")
        key = outputs[0].relative_to(srv.data / "blobs" / "objects").as_posix()
        srv.object_path(ticket["file_path"]).unlink(missing_ok=True)  # the input: disk space
        return Download(job_id, key, status["file_name"], outputs[0].stat().st_size, True)
    note = (
        f"the build job failed ({status.get('error_message')!r}); GET measured on a URL "
        "signed locally for the uploaded object (same /_blob GET path)"
    )
    log("WARNING: " + note)
    key = ticket["file_path"]
    return Download(
        job_id, key, "bench-download.apk", srv.object_path(key).stat().st_size, False, note
    )


def download_url(srv: Appyard, dl: Download) -> str:
    if dl.completed:
        return str(srv.api.ok("GET", f"/automate/download/{dl.job_id}")["download_url"])
    from appyard.backends.storage.local import LocalBlobStore

    secret = (srv.data / "secret.key").read_text().strip().encode()
    store = LocalBlobStore(srv.data / "blobs", public_url=srv.base, secret=secret)
    return store.presign_get(dl.key, file_name=dl.file_name, expires_in=3600).url


# -- the measurements -------------------------------------------------------------------------
class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        work: Path,
        payload: Path,
        nginx: Proc,
        nginx_base: str,
        nginx_root: Path,
        deadline: Deadline,
    ) -> None:
        self.args = args
        self.work = work
        self.payload = payload
        self.size = payload.stat().st_size
        self.nginx = nginx
        self.nginx_base = nginx_base
        self.nginx_root = nginx_root
        self.deadline = deadline
        self.download: Download | None = None
        self.loads: list[float] = []  # 1-minute load average before each transfer
        self.nginx_download: Path | None = None
        self.form_apk: Path | None = None

    def quiesce(self) -> None:
        """Untimed, before every transfer: flush dirty pages so the previous round's
        writeback does not land in this round's time."""
        os.sync()
        time.sleep(0.2)
        self.loads.append(os.getloadavg()[0])

    def _finish_build(self, srv: Appyard, ticket: dict[str, Any]) -> None:
        """Untimed: wait for the build the upload started (it fails inspection: the bytes are
        random), then delete its object to keep disk use bounded."""
        with srv.sampler.phase("jobs (random bytes, failing inspection)"):
            srv.api.wait_job(ticket["job_id"])
        srv.object_path(ticket["file_path"]).unlink(missing_ok=True)

    # A: appyard -----------------------------------------------------------------------------
    def appyard_put(self, srv: Appyard) -> Callable[[int], float]:
        def run(i: int) -> float:
            ticket = srv.api.request_upload(f"bench-put-{i}.apk")
            with srv.sampler.phase("put"), self._cpu(srv, "put", "appyard"):
                speed = curl_put(self.payload, ticket["upload_url"])
            self._finish_build(srv, ticket)
            return speed

        return run

    def appyard_multipart(self, srv: Appyard) -> Callable[[int], float]:
        def run(i: int) -> float:
            ticket = srv.api.request_upload(f"bench-mp-{i}.apk", self.size)
            if not ticket.get("multipart"):
                raise RuntimeError(f"expected multipart instructions, got {ticket}")
            with srv.sampler.phase("multipart"), self._cpu(srv, "multipart", "appyard"):
                t0 = time.perf_counter()
                etags = sendfile_puts(ticket["part_urls"], self.payload, ticket["chunk_size"])
                t1 = time.perf_counter()
                srv.api.ok(
                    "POST",
                    "/automate/upload/complete",
                    {
                        "file_path": ticket["file_path"],
                        "upload_id": ticket["upload_id"],
                        "parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)],
                    },
                )
                t2 = time.perf_counter()
            srv.multipart_split.append((t1 - t0, t2 - t1))
            self._finish_build(srv, ticket)
            return mbps(self.size, t2 - t0)

        return run

    def appyard_get(self, srv: Appyard) -> Callable[[int], float]:
        assert self.download is not None
        dl = self.download

        def run(i: int) -> float:
            url = download_url(srv, dl)
            with srv.sampler.phase("get"), self._cpu(srv, "get", "appyard"):
                return curl_get(url, dl.size)

        return run

    @contextlib.contextmanager
    def _cpu(self, srv: Appyard, direction: str, side: str) -> Iterator[None]:
        """Record the CPU seconds the side's server tree spends on one transfer."""
        meter = CpuMeter(srv.proc.pid if side == "appyard" else self.nginx.pid)
        with meter:
            yield
        srv.cpu.setdefault(direction, {}).setdefault(side, []).append(meter.seconds)

    def setup_form(self, srv: Appyard, pairs: int) -> None:
        """Untimed: a 1 GiB-ish APK that carries a signature (the store refuses unsigned
        uploads with 422) and one tenant with a CI token per pair, since a versionCode can be
        uploaded once per app."""
        if self.form_apk is None:
            self.form_apk = self.work / "bench-form.apk"
            log(f"building {self.form_apk.name} (fixture + stored asset) for the store upload")
            build_apk(self.payload, self.form_apk)
        for i in range(pairs):
            tenant = f"bench-{srv.name}-{i}"
            admin(srv.data, "create-tenant", tenant, "--plan", "team", "--json")
            made = json.loads(admin(srv.data, "create-key", "--tenant", tenant, "--kind", "ci",
                                    "--json"))  # fmt: skip
            srv.ci_tokens.append(made["key"])

    def appyard_form(self, srv: Appyard) -> Callable[[int], float]:
        assert self.form_apk is not None
        apk = self.form_apk

        def run(i: int) -> float:
            url = f"{srv.base}/portal/api/uploads/ci"
            with srv.sampler.phase("form"), self._cpu(srv, "form", "appyard"):
                speed, body = curl_form(apk, url, srv.ci_tokens[i])
            with srv.sampler.phase("jobs (store validation of the upload)"):
                self._wait_validation(srv, srv.ci_tokens[i], body["version"]["id"])
            if self.args.regime == "delete":
                for stored in (srv.data / "blobs" / "objects").glob("*/uploads/*/*/*/*.apk"):
                    stored.unlink()
            return speed

        return run

    def appyard_dist(self, srv: Appyard) -> Callable[[int], float]:
        """The distribution API's form upload, with an app token (the same app every pair:
        its builds may repeat a version code)."""
        assert self.form_apk is not None
        apk = self.form_apk
        if not srv.app_token:
            made = json.loads(admin(srv.data, "create-key", "--tenant", "default", "--kind",
                                    "app", "--app", "bench", "--json"))  # fmt: skip
            srv.app_token = made["key"]

        def run(i: int) -> float:
            url = f"{srv.base}/v1/integrations/builds"
            with srv.sampler.phase("dist"), self._cpu(srv, "dist", "appyard"):
                speed, body = curl_form(apk, url, srv.app_token, part="build", ok=200)
            with srv.sampler.phase("jobs (inspection of the upload)"):
                self._wait_distribution(srv, body["data"]["id"])
            if self.args.regime == "delete":
                for stored in (srv.data / "blobs" / "objects").glob("*/uploads/*/*/*/*.apk"):
                    stored.unlink()
            return speed

        return run

    def _wait_distribution(self, srv: Appyard, build_id: str) -> None:
        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline:
            res = curl(["-o", str(self.work / "dist.json"), "-H",
                        f"Authorization: Bearer {srv.app_token}",
                        f"{srv.base}/v1/integrations/builds/{build_id}"])  # fmt: skip
            data = json.loads((self.work / "dist.json").read_text()).get("data", {})
            if res.status == 200 and data.get("status") != "pending":
                return
            time.sleep(0.3)
        raise RuntimeError(f"distribution build {build_id} did not finish")

    def _wait_validation(self, srv: Appyard, token: str, version_id: str) -> None:
        """Untimed: the validation run the upload started, so it does not overlap the next."""
        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline:
            res = curl(["-o", str(self.work / "validation.json"), "-H",
                        f"Authorization: Bearer {token}",
                        f"{srv.base}/portal/api/versions/{version_id}/validation"])  # fmt: skip
            runs = json.loads((self.work / "validation.json").read_text())["runs"]
            if res.status == 200 and runs and runs[-1]["status"] != "running":
                return
            time.sleep(0.5)
        raise RuntimeError(f"validation of {version_id} did not finish")

    def appyard_spec(self, srv: Appyard) -> Callable[[int], float]:
        if srv.context is None:
            made = json.loads(admin(srv.data, "create-key", "--tenant", "default", "--kind",
                                    "context", "--json"))  # fmt: skip
            srv.context = Api(srv.base, made["key"])
        api = srv.context

        def run(i: int) -> float:
            context = api.ok("POST", "/api/v1/projects/bench/build-uploads")
            body = api.ok(
                "POST",
                "/api/v1/projects/bench/builds",
                {"contextId": context["id"], "buildType": "APK",
                 "buildFileName": f"bench-spec-{i}.apk"},
            )  # fmt: skip
            spec = body["uploadSpec"]
            if spec["method"] != "PUT":
                raise RuntimeError(f"unexpected uploadSpec {spec}")
            with srv.sampler.phase("spec"), self._cpu(srv, "spec", "appyard"):
                speed = curl_put(self.payload, spec["url"], spec["headers"])
            number = body["build"]["id"]
            found = list((srv.data / "blobs" / "objects").glob(f"*/uploads/*/*/{number}/*"))
            key = found[0].relative_to(srv.data / "blobs" / "objects").as_posix() if found else ""
            self._finish_build(srv, {"job_id": str(number), "file_path": key})
            return speed

        return run

    # B: nginx --------------------------------------------------------------------------------
    def nginx_form(self, srv: Appyard, direction: str = "form") -> Callable[[int], float]:
        """The same APK as one PUT to nginx (the issue's baseline for the form uploads)."""
        assert self.form_apk is not None
        apk = self.form_apk

        def run(i: int) -> float:
            name = f"{direction}-{srv.name}-{i}.bin"
            try:
                with self._cpu(srv, direction, "nginx"):
                    return curl_put(apk, f"{self.nginx_base}/{name}")
            finally:
                if self.args.regime == "delete":
                    (self.nginx_root / name).unlink(missing_ok=True)

        return run

    def nginx_put(self, srv: Appyard, direction: str = "put") -> Callable[[int], float]:
        def run(i: int) -> float:
            name = f"{direction}-{i}.bin"
            try:
                with self._cpu(srv, direction, "nginx"):
                    return curl_put(self.payload, f"{self.nginx_base}/{name}")
            finally:
                (self.nginx_root / name).unlink(missing_ok=True)

        return run

    def nginx_single_sendfile(self, srv: Appyard) -> Callable[[int], float]:
        def run(i: int) -> float:
            name = f"mp-{i}.bin"
            try:
                with self._cpu(srv, "multipart", "nginx"):
                    t0 = time.perf_counter()
                    sendfile_puts([f"{self.nginx_base}/{name}"], self.payload, self.size)
                    return mbps(self.size, time.perf_counter() - t0)
            finally:
                (self.nginx_root / name).unlink(missing_ok=True)

        return run

    def nginx_get(self, srv: Appyard) -> Callable[[int], float]:
        assert self.download is not None
        size = self.download.size

        def run(i: int) -> float:
            with self._cpu(srv, "get", "nginx"):
                return curl_get(f"{self.nginx_base}/download.apk", size)

        return run

    # series ----------------------------------------------------------------------------------
    def series(self, srv: Appyard, direction: str, pairs: int) -> None:
        if direction in ("form", "dist"):
            self.setup_form(srv, pairs if direction == "form" else 0)
        a = {
            "put": self.appyard_put,
            "multipart": self.appyard_multipart,
            "get": self.appyard_get,
            "form": self.appyard_form,
            "dist": self.appyard_dist,
            "spec": self.appyard_spec,
        }[direction](srv)
        b = {
            "spec": lambda srv: self.nginx_put(srv, "spec"),
            "put": self.nginx_put,
            "multipart": self.nginx_single_sendfile,
            "get": self.nginx_get,
            "form": self.nginx_form,
            "dist": lambda srv: self.nginx_form(srv, "dist"),
        }[direction](srv)
        log(f"{srv.name}: {LABELS[direction]}, {pairs} pairs (A = appyard, B = nginx)")

        def show(i: int, x: float, y: float) -> None:
            print(
                f"    pair {i + 1:2d}: appyard {x:7.0f} MB/s   nginx {y:7.0f} MB/s   "
                f"ratio {x / y:5.2f}",
                flush=True,
            )

        xs, ys = interleave(
            pairs, a, b, between=self.quiesce, stop=lambda: self.deadline.expired, on_pair=show
        )
        if len(xs) < pairs:
            log(f"time budget spent: {len(xs)} of {pairs} pairs")
        srv.results[direction] = {"appyard": xs, "nginx": ys}

    def setup_download(self, srv: Appyard) -> None:
        self.download = prepare_download(srv, self.payload, self.work)
        target = self.nginx_root / "download.apk"
        # the same file (a hard link: one inode, one set of page-cache pages), so both servers
        # send identical bytes from identical memory; a copy would lay its pages out
        # differently (the kernel's large folios), and that, not the server, moved the figure
        os.link(srv.object_path(self.download.key), target)
        self.nginx_download = target


# -- report -------------------------------------------------------------------------------------
def report(
    servers: list[Appyard],
    size: int,
    args: argparse.Namespace,
    download: Download | None,
    loads: list[float],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "load_average_1min": loads,
        "size_bytes": size,
        "pairs": args.pairs,
        "regime": args.regime,
        "servers": {},
    }
    print()
    print(
        f"=== {size / MIB:.0f} MiB, loopback, {os.cpu_count()} CPUs, "
        f"{out['date']} ===   MB/s = 10^6 bytes/s; median (min..max, n)"
    )
    if loads:
        print(
            f"1-min load average before the transfers: median {statistics.median(loads):.1f}, "
            f"max {max(loads):.1f} (other work on the machine: throughput is noisy, the "
            "paired ratios and the CPU seconds less so)"
        )
    for srv in servers:
        entry: dict[str, Any] = {"directions": {}}
        print(f"\nappyard under {srv.name}:")
        for direction in DIRECTIONS:
            res = srv.results.get(direction)
            if not res or not res["appyard"]:
                continue
            ratio = paired_ratio(res["appyard"], res["nginx"])
            print(f"  {LABELS[direction]:38s}")
            print(f"      appyard {summary(res['appyard'])}")
            print(f"      nginx   {summary(res['nginx'])}")
            print(f"      median ratio appyard/nginx: {ratio:.2f}")
            cpu = srv.cpu.get(direction, {})
            per_gib = {side: statistics.median(v) * GIB / size for side, v in cpu.items() if v}
            if per_gib:
                print(
                    "      server CPU per GiB (median): "
                    + ", ".join(f"{side} {sec:.2f} s" for side, sec in per_gib.items())
                )
            entry["directions"][direction] = {**res, "median_ratio": ratio, "cpu_seconds": cpu}
        if srv.multipart_split:
            parts = statistics.median(p for p, _ in srv.multipart_split)
            done = statistics.median(c for _, c in srv.multipart_split)
            print(
                f"  multipart time split (median): parts {parts:.2f} s, "
                f"complete (assembly) {done:.2f} s"
            )
            entry["multipart_split_seconds"] = srv.multipart_split
        s = srv.sampler
        print(
            f"  peak RSS, sum over the process tree (sampled every "
            f"{s.interval * 1000:.0f} ms, {s.samples} samples):"
        )
        for label, peak in sorted(s.peaks.items(), key=lambda kv: -kv[1]):
            print(f"      {label:40s} {peak / MB:6.1f} MB")
        transfer = max((s.peaks.get(d, 0) for d in DIRECTIONS), default=0)
        print(
            f"      -> during transfers {transfer / MB:.1f} MB; overall {s.peak / MB:.1f} MB; "
            f"sum of VmHWM {s.hwm_sum / MB:.1f} MB "
            f"({', '.join(f'{pid}: {v / MB:.1f}' for pid, v in sorted(s.hwm.items()))}); "
            f"peak PSS sum {s.pss_peak / MB:.1f} MB"
        )
        entry["rss_peaks_bytes"] = dict(s.peaks)
        entry["rss_peak_transfers_bytes"] = transfer
        entry["rss_peak_bytes"] = s.peak
        entry["pss_peak_bytes"] = s.pss_peak
        entry["vmhwm_bytes"] = {str(k): v for k, v in s.hwm.items()}
        out["servers"][srv.name] = entry
    if download is not None and download.note:
        print(f"\nNOTE: {download.note}")
        out["download_note"] = download.note
    granian = out["servers"].get("granian", {}).get("directions", {})
    if granian:
        print("\ntargets (issues 2, 6 and 10, Granian): ", end="")
        checks = []
        for direction in DIRECTIONS:
            if direction in granian:
                r = granian[direction]["median_ratio"]
                want = TARGETS[direction]
                checks.append(f"{direction} {r:.2f} {'ok' if r >= want else 'MISSED'} (>= {want})")
        peak = out["servers"]["granian"]["rss_peak_transfers_bytes"]
        checks.append(f"RSS {peak / MB:.0f} MB {'ok' if peak < 150 * MB else 'MISSED'} (< 150)")
        print("; ".join(checks))
    return out


# -- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--pairs", type=int, default=10, help="A B pairs per direction")
    parser.add_argument(
        "--uvicorn-pairs",
        type=int,
        default=3,
        help="pairs per direction for appyard under uvicorn (0: skip)",
    )
    parser.add_argument(
        "--directions",
        default=",".join(DIRECTIONS),
        help="comma-separated subset of put,multipart,get,form,dist,spec",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="parent of the temporary directory (default: $TMPDIR or /tmp)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=60,
        help="time budget; series stop early when it is spent",
    )
    parser.add_argument(
        "--regime",
        choices=("delete", "keep"),
        default="delete",
        help="form uploads: both sides delete what they stored after each pair, or both keep it",
    )
    parser.add_argument(
        "--prefault-gib",
        type=float,
        default=None,
        help="write to this much fresh memory once before the first pair (default: what the "
        "run will fill with page cache, up to the memory available; 0: skip); see "
        "bench/README.md, 'Fresh memory'",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)

    directions = [d.strip() for d in args.directions.split(",") if d.strip()]
    unknown = set(directions) - set(DIRECTIONS)
    if unknown:
        parser.error(f"unknown directions: {', '.join(sorted(unknown))}")
    size = args.size_mib * MIB
    if "multipart" in directions and size < MULTIPART_THRESHOLD:
        print(
            f"--size-mib {args.size_mib} is under the 100 MiB multipart threshold: "
            "skipping multipart"
        )
        directions.remove("multipart")
    for tool in ("curl",):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    parent = args.dir or Path(os.environ.get("TMPDIR", "/tmp"))
    need = 8 * size + 2 * 1024 * MIB
    if free_bytes(parent) < need:
        parser.error(
            f"{parent} has {free_bytes(parent) / 2**30:.1f} GiB free; this run needs "
            f"about {need / 2**30:.1f} GiB (use --dir or a smaller --size-mib)"
        )

    deadline = Deadline(args.max_minutes * 60)
    procs: list[Proc] = []
    servers: list[Appyard] = []
    bench: Bench | None = None
    with (
        terminate_on_sigterm(),
        temp_dir("appyard-bench-", parent, keep=args.keep) as work,
        contextlib.ExitStack() as stack,
    ):
        logs, data, tmp = work / "logs", work / "appyard-data", work / "tmp"
        for d in (logs, tmp):
            d.mkdir()
        try:
            payload = work / "payload.bin"
            log(f"writing {args.size_mib} MiB of random bytes to {payload}")
            write_random_file(payload, size)
            forms = len({"form", "dist"} & set(directions))
            # objects kept at once: every form upload of both sides in the keep regime
            kept = args.pairs * 2 * forms if args.regime == "keep" and forms else 4
            want = args.prefault_gib if args.prefault_gib is not None else (kept + 2) * size / 2**30
            log(stack.enter_context(freed_memory_kept()))
            if want > 0:
                touched, seconds = prefault_memory(want)
                log(
                    f"fresh memory: wrote to {touched / 2**30:.1f} GiB once in {seconds:.1f} s "
                    f"(MemAvailable {mem_available() / 2**30:.1f} GiB)"
                )
            nginx, nginx_base, nginx_root = start_nginx(work, logs)
            procs.append(nginx)
            log(f"nginx {nginx_base} (pid {nginx.pid}), root {nginx_root}")

            proc, base, key = start_granian(data, tmp, logs)
            procs.append(proc)
            proc.remember_tree()
            sampler = RssSampler(proc.pid).start()
            granian = Appyard("granian", proc, base, Api(base, key), sampler, data)
            servers.append(granian)
            log(f"appyard serve (Granian) {base}, pids {proc.remember_tree()}")
            configure_tenant(data)

            bench = Bench(args, work, payload, nginx, nginx_base, nginx_root, deadline)
            if "get" in directions:
                bench.setup_download(granian)
            for direction in directions:
                bench.series(granian, direction, args.pairs)
            sampler.stop()
            proc.remember_tree()
            proc.stop()
            procs.remove(proc)

            if args.uvicorn_pairs > 0 and not deadline.expired:
                uproc, ubase = start_uvicorn(data, tmp, logs)
                procs.append(uproc)
                usampler = RssSampler(uproc.pid).start()
                uvicorn = Appyard("uvicorn", uproc, ubase, Api(ubase, key), usampler, data)
                servers.append(uvicorn)
                log(f"appyard under uvicorn {ubase}, pids {uproc.remember_tree()}")
                for direction in directions:
                    bench.series(uvicorn, direction, args.uvicorn_pairs)
                usampler.stop()
        except BaseException:
            for p in procs:
                print(f"--- {p.name} stderr (last lines) ---\n{p.tail()}", file=sys.stderr)
            raise
        finally:
            for srv in servers:
                srv.sampler.stop()
            for p in reversed(procs):
                p.stop()
        figures = report(
            servers, size, args, bench.download if bench else None, bench.loads if bench else []
        )
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
            log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
