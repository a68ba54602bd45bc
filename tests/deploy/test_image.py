"""The container image, built and started on a machine without a container runtime or an
image registry (CI):

1. a ``debian:bookworm-slim`` base is made with ``debootstrap --variant=minbase bookworm``,
   slimmed as Debian's own slim images are (no documentation, manual pages or locales), and
   imported with ``podman import`` (cached for the ISO week under /var/cache/appyard-ci/);
2. ``Containerfile`` is built with ``podman build --isolation=chroot --format docker``;
3. the image is mounted (``podman image mount``) and its entry point and command are started
   in a chroot of it, as the image's user, with the image's environment (the host and ports
   overridden as ``podman run -e`` would), in a mount namespace of their own holding the data
   volume, /tmp, /proc and /dev;
4. the image's HEALTHCHECK command passes, ``/readyz`` answers, an automation key made with
   ``appyard admin create-key`` inside the image uploads a build (signed PUT), the build is
   processed and downloaded from the sendfile port with a range.

Needs root, podman and debootstrap (.ci/run installs them); skipped without them locally.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES, IN_CI, ROOT, free_port, need, wait_for_port

pytestmark = pytest.mark.slow

CACHE = Path(os.environ.get("APPYARD_CI_CACHE", "/var/cache/appyard-ci"))
BASE = "localhost/debian:bookworm-slim"
IMAGE = "localhost/appyard:test"
MIRROR = "http://deb.debian.org/debian"
# What Debian's slim images leave out (debuerreotype's slimify), kept out of later packages too.
SLIM_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
"""
SOURCES = f"""\
Types: deb
URIs: {MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def run(*args: str | Path, timeout: float = 900, **kwargs: object) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    assert done.returncode == 0, f"{args[:3]} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return str(done.stdout)


def _make_base(tarball: Path, work: Path) -> None:
    """debootstrap a minbase bookworm, slim it, and tar it to ``tarball``."""
    rootfs = work / "rootfs"
    run("debootstrap", "--variant=minbase", "bookworm", rootfs, MIRROR, timeout=1200)
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker").write_text(SLIM_EXCLUDES)
    (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\n'
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n'
    )
    (rootfs / "etc/apt/sources.list").unlink()
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(SOURCES)
    for folder in ("usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt",
                   "var/lib/apt/lists", "var/log", "tmp"):  # fmt: skip
        for item in (rootfs / folder).iterdir():
            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    for item in sorted((rootfs / "usr/share/doc").rglob("*"), reverse=True):
        if item.is_dir() and not item.is_symlink():
            if not any(item.iterdir()):
                item.rmdir()
        elif item.name != "copyright":
            item.unlink()
    partial = tarball.with_suffix(".partial")
    run("tar", "--numeric-owner", "--xattrs", "-C", rootfs, "-cf", partial, ".")
    partial.rename(tarball)


@pytest.fixture(scope="session")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    need(os.geteuid() == 0, "building and chrooting into the image needs root")
    for tool in ("podman", "debootstrap", "unshare", "chroot"):
        need(shutil.which(tool) is not None, f"{tool} is not installed")
    year, week, _ = datetime.date.today().isocalendar()
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"debian-bookworm-slim-{year}-w{week:02d}.tar"
    if not tarball.exists():
        started = time.monotonic()
        _make_base(tarball, tmp_path_factory.mktemp("base"))
        print(f"base image made in {time.monotonic() - started:.0f} s")
        for old in CACHE.glob("debian-bookworm-slim-*.tar"):
            if old != tarball:
                old.unlink()
    present = subprocess.run(
        ["podman", "image", "inspect", "--format", '{{index .Labels "appyard.base"}}', BASE],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if present != tarball.name:  # import once per tarball, not once per run
        run("podman", "import", "--change", 'CMD ["bash"]', "--change",
            f"LABEL appyard.base={tarball.name}", tarball, BASE, timeout=300)  # fmt: skip
    return BASE


@dataclass(frozen=True)
class Image:
    name: str
    config: dict[str, object]
    healthcheck: dict[str, object]  # HEALTHCHECK (kept by --format docker)
    size: int
    root: Path  # the mounted image

    @property
    def env(self) -> dict[str, str]:
        pairs = self.config.get("Env") or []
        assert isinstance(pairs, list)
        return dict(str(p).split("=", 1) for p in pairs)


@pytest.fixture(scope="session")
def image(base_image: str) -> Iterator[Image]:
    host_ca = Path("/etc/ssl/certs/ca-certificates.crt")  # trusts a TLS-inspecting proxy
    trust = (
        ["--volume", f"{host_ca}:/run/host-ca.crt:ro", "--build-arg",
         "PIP_EXTRA_CA=/run/host-ca.crt"]
        if host_ca.exists()
        else []
    )  # fmt: skip
    # the previous run's image and build stage (labelled in the Containerfile) go first
    subprocess.run(["podman", "rmi", "-f", IMAGE], capture_output=True, check=False)
    started = time.monotonic()
    run(
        "podman", "build", "--isolation=chroot", "--format", "docker", "--pull=never",
        "--layers=false", *trust,
        "-f", ROOT / "Containerfile", "-t", IMAGE, ROOT,
        timeout=1800,
    )  # fmt: skip
    print(f"image built in {time.monotonic() - started:.0f} s")
    run("podman", "image", "prune", "-f", "--filter", "label=appyard.stage=build")
    (inspected,) = json.loads(run("podman", "image", "inspect", IMAGE))
    root = Path(run("podman", "image", "mount", IMAGE).strip())
    try:
        yield Image(
            IMAGE, inspected["Config"], inspected.get("Healthcheck") or {}, inspected["Size"], root
        )
    finally:
        subprocess.run(["podman", "image", "unmount", IMAGE], capture_output=True, check=False)


def test_the_image_is_configured_as_the_issue_says(image: Image) -> None:
    config = image.config
    env = image.env

    assert "bookworm" in (image.root / "etc/os-release").read_text()
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["appyard"] and config["Cmd"] == ["serve"]
    assert env["APPYARD_DATA_DIR"] == "/var/lib/appyard"
    assert env["PATH"].startswith("/opt/appyard/bin:")
    assert (env["APPYARD_HOST"], env["APPYARD_PORT"], env["APPYARD_DOWNLOAD_PORT"]) == (
        "0.0.0.0",
        "8080",
        "8081",
    )
    assert set(config["ExposedPorts"]) == {"8080/tcp", "8081/tcp"}  # type: ignore[arg-type]
    assert set(config["Volumes"]) == {"/var/lib/appyard"}  # type: ignore[arg-type]
    test = image.healthcheck.get("Test")
    assert isinstance(test, list) and test[0] == "CMD" and "/readyz" in " ".join(test)
    assert (image.root / "var/lib/appyard").stat().st_uid == 10001
    # only what it runs: no JDK, no compiler, no pip, no test tools
    site = next((image.root / "opt/appyard/lib").glob("python3*/site-packages"))
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"appyard", "granian", "boto3", "psycopg", "redis"} <= installed
    assert not installed & {
        "pip",
        "setuptools",
        "pytest",
        "mypy",
        "ruff",
        "pyjks",
    }  # runtime: httpx
    for absent in ("usr/bin/java", "usr/bin/keytool", "usr/bin/gcc", "usr/bin/cc"):
        assert not (image.root / absent).exists(), absent
    print(f"image size: {image.size / 1e6:.0f} MB")


@dataclass
class Chroot:
    """Starts commands of the image the way a container runtime would, without one."""

    image: Image
    data: Path
    tmp: Path
    overrides: dict[str, str]

    def popen(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        config = self.image.config
        uid, _, gid = str(config["User"]).partition(":")
        root = self.image.root
        workdir = str(config.get("WorkingDir") or "/")
        script = "\n".join(
            [
                "set -e",
                "mount --make-rprivate /",
                f"mount --bind {self.data} {root}/var/lib/appyard",
                f"mount --bind {self.tmp} {root}/tmp",
                f"mount -t proc proc {root}/proc",
                f"mount --bind /dev {root}/dev",
                f"exec chroot --userspec={uid}:{gid or uid} --groups={gid or uid} {root} "
                f"/usr/bin/env -C {workdir} -- {shlex.join(argv)}",
            ]
        )
        env = {"HOME": "/var/lib/appyard", **self.image.env, **self.overrides}
        # unshare execs the shell, which execs chroot, which execs the image's command:
        # the PID is the image process's, and the mounts go when it does.
        return subprocess.Popen(
            ["unshare", "--mount", "--", "/bin/sh", "-c", script],
            env=env,
            **kwargs,  # type: ignore[call-overload]
        )

    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = self.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.fixture
def chroot(image: Image, tmp_path: Path) -> Chroot:
    data, tmp = tmp_path / "volume", tmp_path / "tmp"
    data.mkdir()
    tmp.mkdir(mode=0o1777)
    tmp.chmod(0o1777)
    os.chown(data, 10001, 10001)  # a fresh volume takes the owner of the image's directory
    port, download_port = free_port(), free_port()
    return Chroot(
        image,
        data,
        tmp,
        {
            "APPYARD_HOST": "127.0.0.1",
            "APPYARD_PORT": str(port),
            "APPYARD_DOWNLOAD_PORT": str(download_port),
        },
    )


def test_the_entry_point_serves_an_upload_and_a_download_in_a_chroot_of_the_image(
    chroot: Chroot, tmp_path: Path
) -> None:
    port = int(chroot.overrides["APPYARD_PORT"])
    base = f"http://127.0.0.1:{port}"
    config = chroot.image.config
    command = [*config["Entrypoint"], *config["Cmd"]]  # type: ignore[misc]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = chroot.popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, server, timeout=90)
        status = Path(f"/proc/{server.pid}/status").read_text()
        assert "\nUid:\t10001\t" in status, status  # the image's user, not root

        healthcheck = chroot.image.healthcheck["Test"]
        assert isinstance(healthcheck, list) and healthcheck[0] == "CMD"
        checked = chroot.run([str(a) for a in healthcheck[1:]])
        assert checked.returncode == 0, checked.stderr
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "store": "ok", "queue": "ok"}

        made = chroot.run(["appyard", "admin", "create-key", "--tenant", "default",
                           "--kind", "automation", "--json"])  # fmt: skip
        assert made.returncode == 0, made.stderr
        key = json.loads(made.stdout)["key"]

        apk = (FIXTURES / "fixture-release-v1v2v3.apk").read_bytes()
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as api:
            upload = api.post(
                "/automate/upload",
                json={
                    "file_name": "app-release.apk",
                    "platform": "android",
                    "version": "production",
                    "file_size": len(apk),
                },
            ).json()
            assert httpx.put(upload["upload_url"], content=apk, timeout=60).status_code == 200
            deadline = time.monotonic() + 120
            while (done := api.get(f"/automate/status/{upload['job_id']}").json())[
                "status"
            ] == "processing":
                assert time.monotonic() < deadline, done
                time.sleep(0.2)
            assert done["status"] == "completed", done
            url = api.get(f"/automate/download/{upload['job_id']}").json()["download_url"]

        downloads = f"http://127.0.0.1:{chroot.overrides['APPYARD_DOWNLOAD_PORT']}/_blob/"
        assert url.startswith(downloads)  # the sendfile listener
        whole = httpx.get(url, timeout=60)
        part = httpx.get(url, headers={"Range": "bytes=-100"}, timeout=60)
        assert whole.status_code == 200 and whole.content[:2] == b"PK"
        assert part.status_code == 206 and part.content == whole.content[-100:]
        stored = list((chroot.data / "blobs" / "objects").rglob("*.apk"))
        assert stored and all(p.stat().st_uid == 10001 for p in stored)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if IN_CI or server.returncode not in (0, -15):
            print(log.read_text()[-4000:])
