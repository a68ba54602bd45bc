"""X-Accel-Redirect mode behind Debian's nginx, on loopback: ``appyard serve`` with
``APPYARD_DOWNLOAD_ACCEL_REDIRECT=/_protected/`` behind nginx configured as docs/deploy.md
shows. A build goes up and comes back through nginx alone (one port: API, signed PUT and
signed GET); appyard checks each download URL and nginx sends the file, with ranges and
validators. The nginx server block below is the one in docs/deploy.md."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from appyard.backends.storage.local import LocalBlobStore
from tests.backends.test_local_conditional import CASES, DATE, ETAG, KEY, MTIME, SIZE, answer
from tests.conftest import FIXTURES, ROOT, free_port, need, wait_for_port
from tests.e2e.conftest import Server, start_server

SECRET = "accel-test-secret-key"
APK_TYPE = "application/vnd.android.package-archive"
NGINX_CONF = """\
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
    upstream appyard {{ server 127.0.0.1:{api_port}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
{server_block}
    }}
}}
"""


def deploy_server_block() -> str:
    """The ``location`` blocks of docs/deploy.md's nginx snippet (between its markers)."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    start = text.index("    # --- appyard locations")
    end = text.index("    # --- end of appyard locations")
    return text[start:end]


@dataclass
class Proxy:
    url: str
    server: Server
    prefix: Path


@pytest.fixture
def proxy(tmp_path: Path, database_url: str) -> Iterator[Proxy]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    need(os.path.exists(nginx), "nginx is not installed")
    port = free_port()
    data_dir = tmp_path / "srv"
    server = start_server(
        data_dir,
        database_url,
        env_extra={
            "APPYARD_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "APPYARD_DOWNLOAD_ACCEL_REDIRECT": "/_protected/",
            "APPYARD_SECRET_KEY": SECRET,
        },
    )
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    block = deploy_server_block().replace("/var/lib/appyard/blobs/", f"{data_dir}/blobs/")
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            user=user, prefix=prefix, port=port, api_port=server.url.rsplit(":", 1)[1],
            server_block=block,
        )
    )  # fmt: skip
    proc = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc, timeout=20)
        yield Proxy(f"http://127.0.0.1:{port}", server, prefix)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        server.stop()


def test_a_build_goes_up_and_comes_back_through_nginx_with_a_range(proxy: Proxy) -> None:
    apk = (FIXTURES / "fixture-release-v1v2v3.apk").read_bytes()
    with httpx.Client(
        base_url=proxy.url, headers={"Authorization": f"Bearer {proxy.server.key}"}, timeout=60
    ) as api:
        started = api.post(
            "/automate/upload",
            json={
                "file_name": "app-release.apk",
                "platform": "android",
                "version": "production",
                "file_size": len(apk),
            },
        )
        assert started.status_code == 200, started.text
        upload = started.json()
        assert upload["upload_url"].startswith(f"{proxy.url}/_blob/")
        put = httpx.put(upload["upload_url"], content=apk, timeout=60)
        assert put.status_code == 200, put.text
        deadline = time.monotonic() + 120
        while (status := api.get(f"/automate/status/{upload['job_id']}").json())[
            "status"
        ] == "processing":
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status["status"] == "completed", status
        url = api.get(f"/automate/download/{upload['job_id']}").json()["download_url"]
    assert url.startswith(f"{proxy.url}/_blob/")

    whole = httpx.get(url, timeout=60)
    part = httpx.get(url, headers={"Range": "bytes=100-199"}, timeout=60)
    tail = httpx.get(url, headers={"Range": "bytes=-1000", "If-Range": whole.headers["etag"]})
    tampered = httpx.get(url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB"))

    assert whole.status_code == 200 and whole.content[:2] == b"PK"
    assert whole.headers["server"].startswith("nginx")
    assert "x-accel-redirect" not in whole.headers  # consumed by nginx
    assert whole.headers["content-type"] == APK_TYPE
    assert whole.headers["content-disposition"] == 'attachment; filename="app-release.apk"'
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    assert tail.status_code == 206 and tail.content == whole.content[-1000:]
    assert tampered.status_code == 403 and "error" in tampered.json()
    direct = httpx.get(f"{proxy.url}/_protected/{KEY}")
    assert direct.status_code == 404  # the internal location is not reachable from outside


# nginx tests If-Modified-Since and If-None-Match together (both must say "not modified"),
# where RFC 9110 lets If-None-Match decide alone; the sendfile listener and the API route
# follow the RFC. No client sends a matching ETag with an older date.
NGINX_DIFFERS = {"inm-etag-ims-earlier": 200}


def test_nginx_answers_every_conditional_request_like_appyard(proxy: Proxy) -> None:
    store = LocalBlobStore(
        proxy.server.data_dir / "blobs", public_url=proxy.url, secret=SECRET.encode()
    )
    store.write(KEY, [os.urandom(SIZE)])
    os.utime(store.path(KEY), (MTIME, MTIME))
    body = store.path(KEY).read_bytes()
    url = store.presign_get(KEY, file_name="app.apk", expires_in=60).url

    for case, (method, headers, expected) in sorted(CASES.items()):
        response = httpx.request(method, url, headers=headers)

        status, seen = answer(response)
        assert status == NGINX_DIFFERS.get(case, expected), case
        if status in (200, 206, 304):
            assert seen["etag"] == ETAG, case  # nginx's format is appyard's
        if status in (200, 206):
            assert seen["last-modified"] == DATE, case
            wanted = body[10:20] if status == 206 else body
            assert response.content == (b"" if method == "HEAD" else wanted), case


def test_the_type_and_file_name_are_appyards(proxy: Proxy) -> None:
    store = LocalBlobStore(
        proxy.server.data_dir / "blobs", public_url=proxy.url, secret=SECRET.encode()
    )
    store.write("t1/builds/b2/App Store build (1).ipa", [b"ipa bytes"])

    for name, media in [("Renamed.ipa", "application/octet-stream"), ("x.apk", APK_TYPE)]:
        url = store.presign_get(
            "t1/builds/b2/App Store build (1).ipa", file_name=name, expires_in=60
        ).url
        response = httpx.get(url)

        assert response.status_code == 200 and response.content == b"ipa bytes"
        assert response.headers["content-type"] == media
        assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
