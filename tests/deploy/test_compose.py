"""deploy/compose.yaml and deploy/nginx.conf, checked without a container runtime:

* ``podman-compose config`` accepts the file; the services, the start order (health checks
  and completed one-shot steps) and the settings every appyard service reads are as
  intended (the settings build a valid ``Settings``);
* deploy/nginx.conf holds the same appyard locations as docs/deploy.md, and Debian's nginx
  runs it (hosts mapped to loopback) with the certificate deploy/selfsigned.py makes, in front
  of ``appyard serve`` on S3 storage (SeaweedFS): the API over TLS and HTTP/2, and a build's
  presigned S3 upload and download through the same port, signed for the proxy's host.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from appyard.settings import Settings
from tests.backends.services import BUCKET, S3Server
from tests.conftest import FIXTURES, ROOT, free_port, need, wait_for_port
from tests.e2e.conftest import Server, start_server

DEPLOY = ROOT / "deploy"
APPYARD_SERVICES = {"tls", "migrate", "api", "worker-1", "worker-2"}


def compose_config() -> dict[str, object]:
    tool = shutil.which(
        "podman-compose", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    )
    need(tool is not None, "podman-compose is not installed (pip install podman-compose)")
    need(shutil.which("podman") is not None, "podman is not installed")
    assert tool is not None
    done = subprocess.run(
        [tool, "-f", DEPLOY / "compose.yaml", "config"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert isinstance(config, dict)
    return config


def env_file() -> dict[str, str]:
    lines = (DEPLOY / "appyard.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_compose_starts_everything_in_a_health_checked_order() -> None:
    config = compose_config()
    services = config["services"]
    assert isinstance(services, dict)

    assert set(services) == {"db", "redis", "s3", "bucket", "proxy", *APPYARD_SERVICES}
    for name in APPYARD_SERVICES:
        assert services[name]["image"] == "localhost/appyard:latest", name
        assert services[name]["build"]["dockerfile"] == "Containerfile", name
    commands = {name: services[name].get("command") for name in APPYARD_SERVICES - {"tls"}}
    assert commands == {
        "migrate": ["db", "upgrade"],
        "api": ["serve"],
        "worker-1": ["worker"],
        "worker-2": ["worker"],
    }
    for name, service in services.items():
        if name not in APPYARD_SERVICES:  # pinned, never a moving tag
            assert not service["image"].endswith(":latest") and ":" in service["image"], name

    def after(name: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in services[name].get("depends_on", {}).items()}

    assert after("migrate") == {"db": "service_healthy"}
    assert services["db"]["healthcheck"]["test"][:4] == ["CMD", "pg_isready", "-h", "127.0.0.1"]
    for name in ("api", "worker-1", "worker-2"):
        assert after(name) == {
            "migrate": "service_completed_successfully",
            "redis": "service_healthy",
            "bucket": "service_completed_successfully",
        }, name
    assert after("bucket") == {"s3": "service_healthy"}
    assert after("proxy") == {"api": "service_healthy", "tls": "service_completed_successfully"}
    assert "healthcheck" not in services["api"]  # the image's HEALTHCHECK (/readyz)
    for name in ("worker-1", "worker-2"):  # readiness on the worker's own health port
        port = services[name]["environment"]["APPYARD_WORKER_HEALTH_PORT"]
        assert f"127.0.0.1:{port}/readyz" in " ".join(services[name]["healthcheck"]["test"])
    assert services["proxy"]["ports"] == ["8443:443"]  # the one published port
    for name in ("redis", "s3"):
        assert "healthcheck" in services[name], name


def test_the_services_settings_are_valid_and_name_the_proxy() -> None:
    env = env_file()
    fields = {f"APPYARD_{name.upper()}" for name in Settings.model_fields}

    assert set(env) <= fields, set(env) - fields
    settings = Settings(**{k.removeprefix("APPYARD_").lower(): v for k, v in env.items()})
    assert settings.environment == "production"
    public = urlsplit(settings.public_url)
    storage = urlsplit(settings.storage_url)
    assert storage.scheme == "s3" and f"public_endpoint={settings.public_url}" in storage.query
    assert public.scheme == "https" and public.port == 8443
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert f"location /{storage.netloc}/ {{" in nginx  # the bucket, behind the proxy
    assert f"location {settings.download_accel_redirect} {{" in nginx
    seaweed = (DEPLOY / "seaweedfs-s3.json").read_text()
    assert (
        f'"secretKey": "{dict(p.split("=", 1) for p in storage.query.split("&"))["secret_key"]}"'
        in seaweed
    )


def block(text: str) -> str:
    start = text.index("    # --- appyard locations")
    return text[start : text.index("    # --- end of appyard locations")]


def test_the_proxy_has_the_locations_docs_deploy_md_shows() -> None:
    assert block((DEPLOY / "nginx.conf").read_text()) == block(
        (ROOT / "docs" / "deploy.md").read_text()
    )


# --- deploy/nginx.conf, run ----------------------------------------------------------------------

HTTP_CONF = """\
daemon off;
master_process off;
worker_processes 1;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{conf}
}}
"""


def nginx_version() -> tuple[int, ...]:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    assert found, out
    return tuple(int(p) for p in found.groups())


def local_conf(prefix: Path, port: int, api: str, bucket: str, data_dir: Path, tls: Path) -> Path:
    """deploy/nginx.conf with the compose hosts, paths and bucket mapped onto loopback."""
    conf = (DEPLOY / "nginx.conf").read_text()
    listen = f"listen 127.0.0.1:{port} ssl"
    if nginx_version() < (1, 25, 1):  # Debian 12's 1.22: "http2" is a listen parameter
        conf = conf.replace("    http2 on;\n", "")
        listen += " http2"
    replacements = {
        "server api:8080;": f"server {api};",
        "server s3:8333;": f"server {bucket};",
        "listen 443 ssl": listen,
        "/etc/nginx/tls/": f"{tls}/",
        "/var/lib/appyard/": f"{data_dir}/",
        "location /artifacts/ {": f"location /{BUCKET}/ {{",
    }
    for old, new in replacements.items():
        assert old in conf, old
        conf = conf.replace(old, new)
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    path = prefix / "nginx.conf"
    path.write_text(HTTP_CONF.format(user=user, prefix=prefix, conf=conf))
    return path


@dataclass
class Proxy:
    url: str
    cert: Path
    server: Server


@pytest.fixture
def proxy(tmp_path: Path, database_url: str, s3_server: S3Server) -> Iterator[Proxy]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    need(os.path.exists(nginx), "nginx is not installed")
    port = free_port()
    public = f"https://127.0.0.1:{port}"
    tls = tmp_path / "tls"
    made = subprocess.run(
        [sys.executable, DEPLOY / "selfsigned.py", tls, "localhost"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert (tls / "appyard.key").stat().st_mode & 0o077 == 0
    storage = s3_server.url(f"compose-{port}") + f"&public_endpoint={public}"
    server = start_server(
        tmp_path / "srv",
        database_url,
        env_extra={
            "APPYARD_PUBLIC_URL": public,
            "APPYARD_STORAGE_URL": storage,
            "APPYARD_DOWNLOAD_ACCEL_REDIRECT": "/_protected/",
        },
    )
    endpoint = dict(p.split("=", 1) for p in urlsplit(storage).query.split("&"))["endpoint"]
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    conf = local_conf(
        prefix, port, server.url.removeprefix("http://"), urlsplit(endpoint).netloc,
        tmp_path / "srv", tls,
    )  # fmt: skip
    proc = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc, timeout=20)
        yield Proxy(public, tls / "appyard.crt", server)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        server.stop()


def test_one_tls_port_serves_the_api_and_a_builds_presigned_upload_and_download(
    proxy: Proxy,
) -> None:
    need(shutil.which("curl") is not None, "curl is needed to check HTTP/2")
    version = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", str(proxy.cert), "-o", "/dev/null",
         "-w", "%{http_version}", f"{proxy.url}/readyz"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert version.stdout == "2", version.stderr
    apk = (FIXTURES / "fixture-release-v1v2v3.apk").read_bytes()
    trust = ssl.create_default_context(cafile=proxy.cert)
    with (
        httpx.Client(
            base_url=proxy.url,
            verify=trust,
            headers={"Authorization": f"Bearer {proxy.server.key}"},
            timeout=60,
        ) as api,
        httpx.Client(verify=trust, timeout=60) as signed,  # presigned URLs carry their own
    ):
        assert api.get("/readyz").json()["status"] == "ready"
        upload = api.post(
            "/automate/upload",
            json={
                "file_name": "app-release.apk",
                "platform": "android",
                "version": "production",
                "file_size": len(apk),
            },
        ).json()
        assert upload["upload_url"].startswith(f"{proxy.url}/{BUCKET}/")  # presigned S3
        put = signed.put(upload["upload_url"], content=apk)
        assert put.status_code == 200, put.text
        deadline = time.monotonic() + 120
        while (done := api.get(f"/automate/status/{upload['job_id']}").json())[
            "status"
        ] == "processing":
            assert time.monotonic() < deadline, done
            time.sleep(0.3)
        assert done["status"] == "completed", done
        url = api.get(f"/automate/download/{upload['job_id']}").json()["download_url"]
        assert url.startswith(f"{proxy.url}/{BUCKET}/")
        whole = signed.get(url)
        part = signed.get(url, headers={"Range": "bytes=-100"})
        forged = signed.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))

    assert whole.status_code == 200 and whole.content[:2] == b"PK"
    assert part.status_code == 206 and part.content == whole.content[-100:]
    assert forged.status_code == 403


def test_the_certificate_step_keeps_a_certificate_already_there(tmp_path: Path) -> None:
    def make() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, DEPLOY / "selfsigned.py", tmp_path, "localhost", "appyard.test"],
            capture_output=True,
            text=True,
            check=False,
        )

    first = make()
    cert = (tmp_path / "appyard.crt").read_bytes()
    second = make()

    assert first.returncode == second.returncode == 0
    assert second.stdout.startswith("keeping ")
    assert (tmp_path / "appyard.crt").read_bytes() == cert
    assert b"BEGIN CERTIFICATE" in cert
