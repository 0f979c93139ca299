"""Build the FusionServe images with buildah and check them for real, without a Docker engine.

Steps (each timed): pick a base image (the public one if it can be pulled, else a local
Debian bookworm base made with debootstrap and cached); build the CPU image (chroot isolation,
Docker format so HEALTHCHECK is kept); check its config (non-root numeric user, exec-form CMD,
HEALTHCHECK on /livez, FUSIONSERVE_* env) and its contents (onnxruntime, no torch, no
compilers); start its CMD from the mounted image root as PID 1 of a new PID namespace under
chroot, as the image's user with the image's env, on a read-only root with a tmpfs /tmp; probe
/readyz, /livez, the HEALTHCHECK command and a real /classify on a sample image over loopback;
send SIGTERM and require exit status 0.
Then the same for the GPU target on the same base as a stand-in for the CUDA one: it must
refuse to start with FUSIONSERVE_DEVICE=cuda on a machine without CUDA, and serve with cpu.

Usage: ``python3 deploy/verify_image.py [--skip-gpu] [--base IMAGE] [--report FILE]``.
Standard library only. Needs root (chroot, mounts, namespaces), buildah, util-linux's unshare,
and debootstrap when the public base cannot be pulled. Prints a JSON report on stdout and exits
0 only if every check passed. See docs/docker.md.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_BASE = "docker.io/library/python:3.11-slim-bookworm"
LOCAL_BASE = "localhost/fusionserve-base:bookworm-v1"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
HOST_EXTRA_CAS = Path("/usr/local/share/ca-certificates")
DEFAULT_WHEELS = Path("/opt/wheels")
PYPI = "https://pypi.org/simple"
WHEELS_PORT = 38517
CPU_TAG = "localhost/fusionserve:verify"
GPU_TAG = "localhost/fusionserve:verify-gpu"
COMPILERS = ("gcc", "cc", "g++", "c++", "clang", "x86_64-linux-gnu-gcc-12")
READY_TIMEOUT_S = 180.0
EXIT_TIMEOUT_S = 60.0


class VerifyError(Exception):
    """A check failed; the message says which and why."""


def log(message: str) -> None:
    print(f"[verify-image] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, timeout: float = 1800, quiet: bool = False) -> str:
    """Run a command; raise VerifyError with its output's tail if it fails."""
    if not quiet:
        log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise VerifyError(f"{cmd[0]} {cmd[1]} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


class Report:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {"ok": False, "steps": [], "checks": {}}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        log(f"step {name} ...")
        started = time.monotonic()
        entry: dict[str, Any] = {"name": name, "ok": False}
        self.data["steps"].append(entry)
        try:
            yield
            entry["ok"] = True
        finally:
            entry["seconds"] = round(time.monotonic() - started, 1)
            log(f"step {name}: {'ok' if entry['ok'] else 'FAILED'} in {entry['seconds']} s")

    def check(self, name: str, value: Any) -> None:
        self.data["checks"][name] = value


# --- base image -------------------------------------------------------------------------------


def image_exists(name: str) -> bool:
    probe = ["buildah", "inspect", "--type", "image", name]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def debootstrap_tar(tar: Path) -> None:
    """A bookworm root with python3 and venv, trusting the host's extra CAs (for a TLS proxy)."""
    tar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tar.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}"]
            + ["bookworm", str(rootfs), DEBIAN_MIRROR],
            timeout=1200,
        )
        for cert in sorted(HOST_EXTRA_CAS.glob("*.crt")):
            shutil.copy2(cert, rootfs / "usr/local/share/ca-certificates" / cert.name)
        run(["chroot", str(rootfs), "update-ca-certificates"])
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        partial = tar.with_suffix(".partial")
        run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."])
        partial.replace(tar)


def import_base(tar: Path, name: str) -> None:
    container = run(["buildah", "from", "scratch"]).strip()
    try:
        run(["buildah", "add", "--quiet", container, str(tar), "/"])
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        run(["buildah", "config", "--env", f"PATH={path}", "--env", "LANG=C.UTF-8"] + [container])
        run(["buildah", "config", "--cmd", '["/bin/bash"]', container])
        run(["buildah", "commit", "--quiet", container, name])
    finally:
        run(["buildah", "rm", container], quiet=True)


def choose_base(args: argparse.Namespace, report: Report) -> tuple[str, bool]:
    """Return (image, is_local_debootstrap_base)."""
    if args.base:
        return args.base, False
    if not args.local_base:
        pulled = subprocess.run(
            ["buildah", "pull", "--quiet", PUBLIC_BASE], capture_output=True, text=True, check=False
        )
        if pulled.returncode == 0:
            report.check("base_source", "pulled")
            return PUBLIC_BASE, False
        log(f"cannot pull {PUBLIC_BASE}: {pulled.stderr.strip()[-300:]}")
    if image_exists(LOCAL_BASE):
        report.check("base_source", "cached image")
        return LOCAL_BASE, True
    tar = args.cache_dir / "bookworm-v1.tar"
    if tar.is_file():
        report.check("base_source", "cached rootfs")
    else:
        report.check("base_source", "debootstrap")
        debootstrap_tar(tar)
    import_base(tar, LOCAL_BASE)
    return LOCAL_BASE, True


# --- build ------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def wheel_server(directory: Path) -> Iterator[str]:
    """Serve a wheels directory on loopback for pip's --find-links (chroot builds share the
    host's network)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    try:
        # A fixed port: the URL is a build argument, and a new one would miss the layer cache.
        server = http.server.ThreadingHTTPServer(("127.0.0.1", WHEELS_PORT), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def build_args(base: str, local_base: bool, find_links: str | None) -> list[str]:
    values = {"BASE_IMAGE": base, "CUDA_BASE_IMAGE": base}
    if find_links:
        # torch's "+cpu" wheel from the local directory, everything else from PyPI.
        values |= {"PIP_FIND_LINKS": find_links, "TORCH_INDEX_URL": PYPI}
    if local_base:
        values["PIP_CERT"] = "/etc/ssl/certs/ca-certificates.crt"
    return [arg for key, value in values.items() for arg in ("--build-arg", f"{key}={value}")]


def build(target: str, tag: str, extra: list[str]) -> None:
    cmd = ["buildah", "build", "--isolation", "chroot", "--layers", "--format", "docker"]
    cmd += ["--target", target, "-t", tag, "-f", str(ROOT / "Dockerfile"), *extra, str(ROOT)]
    run(cmd, timeout=3600)


# --- static checks ----------------------------------------------------------------------------


def image_config(tag: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(run(["buildah", "inspect", "--type", "image", tag]))
    return dict(config["Docker"]["config"])


def env_of(config: dict[str, Any]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in config.get("Env") or [])


def check_config(config: dict[str, Any], device: str) -> dict[str, Any]:
    user = str(config.get("User") or "")
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or int(uid) == 0 or (gid and not gid.isdigit()):
        raise VerifyError(f"image user must be a numeric non-root uid[:gid], got {user!r}")
    cmd = config.get("Cmd") or []
    if config.get("Entrypoint") or not cmd or cmd[0] in ("/bin/sh", "sh"):
        entrypoint = config.get("Entrypoint")
        raise VerifyError(f"CMD must be exec form with no entrypoint: {entrypoint} {cmd}")
    health = (config.get("Healthcheck") or {}).get("Test") or []
    if not health or health[0] != "CMD" or not any("/livez" in part for part in health):
        raise VerifyError(f"HEALTHCHECK must be exec form on /livez, got {health}")
    env = env_of(config)
    expected = {"FUSIONSERVE_HOST": "0.0.0.0", "FUSIONSERVE_DEVICE": device}
    wrong = {k: env.get(k) for k, v in expected.items() if env.get(k) != v}
    if wrong or "FUSIONSERVE_BUNDLE_PATH" not in env:
        raise VerifyError(f"FUSIONSERVE_* env: expected {expected} and a bundle path, got {env}")
    return {"user": user, "cmd": cmd, "healthcheck": health[1:], "env": env}


# The one CUDA wheel the GPU image needs: nvImageCodec's Python binding (GPU JPEG decoding).
# Its nvJPEG, like every other CUDA library, comes from the CUDA base image.
GPU_IMAGE_WHEELS = frozenset({"nvidia_nvimgcodec_cu13"})


def check_contents(
    root: Path, ort_dist: str, bundle: str, allowed_wheels: frozenset[str] = frozenset()
) -> dict[str, Any]:
    site = sorted(root.glob("opt/venv/lib/python3*/site-packages"))
    if len(site) != 1:
        raise VerifyError(f"expected one /opt/venv site-packages, found {site}")
    names = sorted(p.name for p in site[0].iterdir())
    dists = [n.split("-")[0].lower() for n in names if n.endswith(".dist-info")]
    forbidden = [
        d for d in dists if d == "torch" or (d.startswith("nvidia_") and d not in allowed_wheels)
    ]
    if "torch" in names or forbidden:
        raise VerifyError(f"the runtime image must not contain torch or CUDA wheels: {forbidden}")
    ort = [d for d in dists if d.startswith("onnxruntime")]
    if ort != [ort_dist]:
        raise VerifyError(f"expected exactly the {ort_dist} distribution, found {ort}")
    bins = ("usr/bin", "usr/local/bin")
    compilers = [f"/{d}/{c}" for d in bins for c in COMPILERS if (root / d / c).exists()]
    if compilers:
        raise VerifyError(f"compilers in the runtime image: {compilers}")
    manifest = root / bundle.lstrip("/") / "manifest.json"
    if not manifest.is_file():
        raise VerifyError(f"no bundle manifest at {bundle}/manifest.json")
    return {"distributions": len(dists), "onnxruntime": ort, "torch": False, "compilers": []}


@contextmanager
def mounted(tag: str) -> Iterator[Path]:
    """The image's root filesystem, mounted from a fresh working container."""
    container = run(["buildah", "from", "--pull-never", tag], quiet=True).strip()
    try:
        yield Path(run(["buildah", "mount", container], quiet=True).strip())
    finally:
        subprocess.run(["buildah", "umount", container], capture_output=True, check=False)
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)


# --- running the image ------------------------------------------------------------------------

# Runs on the host inside new mount and PID namespaces: the server execs as PID 1 there, on a
# read-only root with a tmpfs /tmp, as under Kubernetes' readOnlyRootFilesystem + an emptyDir.
LAUNCH = r"""
set -e
root=$1; user=$2; workdir=$3; shift 3
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t tmpfs -o mode=1777,size=64m tmpfs "$root/tmp"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mount -t proc proc "$root/proc"
exec chroot --userspec="$user" --groups="${user#*:}" "$root" \
  /bin/sh -c 'cd "$0" && exec "$@"' "$workdir" "$@"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """The image's CMD, started from its mounted root as PID 1 of a new PID namespace."""

    def __init__(self, root: Path, config: dict[str, Any], env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.env = env_of(config) | env | {"FUSIONSERVE_PORT": str(self.port)}
        user = str(config["User"])
        self.userspec = user if ":" in user else f"{user}:{user}"
        self.root, self.config, self.log_path = root, config, log_path
        launcher = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--"]
        cmd = [*launcher, "/bin/sh", "-c", LAUNCH, "launch", str(root), self.userspec]
        cmd += [config.get("WorkingDir") or "/", *config["Cmd"]]
        self.log_file = log_path.open("wb")
        # The host's unshare, sh, mount and chroot: the image's PATH is only for inside.
        host_path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        self.proc = subprocess.Popen(
            cmd, env=self.env | {"PATH": host_path + ":" + self.env.get("PATH", "")},
            stdout=self.log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_pid(self) -> int:
        """Host pid of the namespace's PID 1 once it runs the image's CMD."""
        deadline = time.monotonic() + 30
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        while time.monotonic() < deadline and self.proc.poll() is None:
            for pid in children.read_text().split():
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if cmdline and cmdline[0] != b"/bin/sh" and b"serve" in cmdline:
                    return int(pid)
            time.sleep(0.1)
        raise VerifyError(f"the server did not start: {self.log_tail()}")

    def identity(self, pid: int) -> dict[str, Any]:
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        uids = status["Uid"].split()
        nspid = status["NSpid"].split()
        return {"uids": sorted(set(uids)), "pid_in_namespace": int(nspid[-1])}

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise VerifyError(f"the server did not exit within {timeout} s") from exc

    def log_tail(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")[-2000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # unshare --kill-child takes the namespace down with it
            self.proc.wait()
        self.log_file.close()


def http_json(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_ready(server: Server) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            code = server.proc.returncode
            raise VerifyError(f"the server exited with {code}: {server.log_tail()}")
        try:
            status, body = http_json(server.url + "/readyz")
        except (urllib.error.URLError, ConnectionError, OSError):
            status, body = 0, None
        if status == 200:
            return dict(body)
        time.sleep(0.25)
    raise VerifyError(f"/readyz not 200 after {READY_TIMEOUT_S} s: {server.log_tail()}")


def multipart(fields: dict[str, str], file_field: str, path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="{path.name}"\r\nContent-Type: image/png\r\n\r\n'
    )
    parts.append(head.encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def classify_sample(server: Server) -> dict[str, Any]:
    samples = ROOT / "models" / "samples"
    sample = json.loads((samples / "samples.json").read_text())[0]
    body, content_type = multipart({"text": sample["text"]}, "image", samples / sample["file"])
    status, answer = http_json(server.url + "/classify", body, {"Content-Type": content_type})
    if status != 200 or answer.get("label") != sample["label"]:
        expected = f"{sample['file']} expected {sample['label']}"
        raise VerifyError(f"/classify {expected}, got {status} {answer}")
    return {"file": sample["file"], "label": answer["label"], "probability": answer["probability"]}


# The demo page and its script: package data (app/static/), so they must be in the image.
DEMO_FILES = {"/": "text/html", "/demo/demo.js": "text/javascript"}


def check_demo_page(server: Server) -> dict[str, int]:
    """GET the demo page and its script; their sizes in bytes."""
    sizes = {}
    for path, media_type in DEMO_FILES.items():
        try:
            with urllib.request.urlopen(server.url + path, timeout=30) as response:
                status, body = response.status, response.read()
                content_type = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raise VerifyError(f"GET {path} answered {exc.code}") from exc
        if status != 200 or not content_type.startswith(media_type) or not body:
            raise VerifyError(f"GET {path}: {status} {content_type!r}, {len(body)} bytes")
        sizes[path] = len(body)
    return sizes


def run_healthcheck(server: Server) -> None:
    """The image's HEALTHCHECK command, run inside the image as its user, against the server."""
    test = server.config["Healthcheck"]["Test"][1:]
    cmd = ["chroot", f"--userspec={server.userspec}", str(server.root), *test]
    proc = subprocess.run(cmd, env=server.env, capture_output=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise VerifyError(f"HEALTHCHECK failed (exit {proc.returncode}): {proc.stderr[-500:]!r}")


def serve_and_stop(server: Server, device: str) -> dict[str, Any]:
    """Probe a running server, then SIGTERM its PID 1 and require a clean exit."""
    pid = server.server_pid()
    ready = wait_ready(server)
    identity = server.identity(pid)
    uid = server.userspec.split(":")[0]
    if identity["uids"] != [uid] or identity["pid_in_namespace"] != 1:
        raise VerifyError(f"server must run as uid {uid} and be PID 1: {identity}")
    if ready.get("device") != device:
        raise VerifyError(f"/readyz reports device {ready.get('device')}, expected {device}")
    live_status, _ = http_json(server.url + "/livez")
    if live_status != 200:
        raise VerifyError(f"/livez answered {live_status}")
    run_healthcheck(server)
    classified = classify_sample(server)
    demo_page = check_demo_page(server)
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    code = server.wait(EXIT_TIMEOUT_S)
    if code != 0:
        raise VerifyError(f"exit status after SIGTERM is {code}, expected 0: {server.log_tail()}")
    return {
        **identity,
        "ready": ready,
        "classify": classified,
        "demo_page_bytes": demo_page,
        "healthcheck": "passed",
        "root_filesystem": "read-only, tmpfs /tmp",
        "sigterm_exit": code,
        "stop_seconds": round(time.monotonic() - started, 2),
    }


def expect_refusal(server: Server) -> dict[str, Any]:
    """FUSIONSERVE_DEVICE=cuda without CUDA: the server must fail to start, loudly."""
    code = server.wait(READY_TIMEOUT_S)
    tail = server.log_tail()
    if code == 0 or "CUDA" not in tail:
        raise VerifyError(f"device=cuda without a GPU must fail startup; exit {code}: {tail}")
    message = next(line for line in reversed(tail.splitlines()) if "CUDA" in line)
    return {"exit": code, "message": message[-400:]}


# --- main -------------------------------------------------------------------------------------


def verify_target(report: Report, target: str, tag: str, extra: list[str], workdir: Path) -> None:
    gpu = target == "runtime-gpu"
    device = "cuda" if gpu else "cpu"
    with report.step(f"build {target}"):
        build(target, tag, extra)
    results: dict[str, Any] = {}
    report.check(target, results)
    with report.step(f"inspect {target}"):
        config = image_config(tag)
        results["config"] = check_config(config, device)
    with mounted(tag) as root:
        with report.step(f"contents {target}"):
            bundle = env_of(config)["FUSIONSERVE_BUNDLE_PATH"]
            ort = "onnxruntime_gpu" if gpu else "onnxruntime"
            allowed = GPU_IMAGE_WHEELS if gpu else frozenset()
            results["contents"] = check_contents(root, ort, bundle, allowed)
        if gpu:
            with report.step(f"run {target} device=cuda (expect refusal)"):
                refused = Server(root, config, {}, workdir / "gpu-cuda.log")
                try:
                    results["device_cuda_without_gpu"] = expect_refusal(refused)
                finally:
                    refused.kill()
        with report.step(f"run {target}"):
            overrides = {"FUSIONSERVE_DEVICE": "cpu"} if gpu else {}
            server = Server(root, config, overrides, workdir / f"{target}.log")
            try:
                results["run"] = serve_and_stop(server, "cpu")
            finally:
                server.kill()


def preflight() -> None:
    if os.geteuid() != 0:
        raise VerifyError("needs root: chroot, mounts and namespaces (see docs/docker.md)")
    missing = [tool for tool in ("buildah", "unshare", "chroot") if shutil.which(tool) is None]
    if missing:
        raise VerifyError(f"missing tools: {', '.join(missing)} (apt-get install buildah)")


def verify(args: argparse.Namespace, report: Report) -> None:
    preflight()
    with report.step("base image"):
        base, local = choose_base(args, report)
        report.check("base_image", base)
    wheels: Path | None = args.wheels_dir
    if wheels is not None and not any(wheels.glob("torch-*+cpu-*.whl")):
        wheels = None
    report.check("torch_from", str(wheels) if wheels else "TORCH_INDEX_URL (Dockerfile default)")
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="verify-image-")))
        find_links = stack.enter_context(wheel_server(wheels)) if wheels else None
        extra = build_args(base, local, find_links)
        verify_target(report, "runtime", CPU_TAG, extra, workdir)
        if not args.skip_gpu:
            verify_target(report, "runtime-gpu", GPU_TAG, extra, workdir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="base image to build on (skips the pull and debootstrap)")
    parser.add_argument(
        "--local-base", action="store_true", help="do not try the public base; use debootstrap"
    )
    parser.add_argument("--skip-gpu", action="store_true", help="verify the CPU image only")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("FUSIONSERVE_IMAGE_CACHE", ROOT / ".cache" / "image")),
        help="where the debootstrapped base rootfs is kept (git-ignored)",
    )
    parser.add_argument(
        "--wheels-dir",
        type=Path,
        default=DEFAULT_WHEELS if DEFAULT_WHEELS.is_dir() else None,
        help="directory with the torch +cpu wheel, served to the build on loopback",
    )
    parser.add_argument("--report", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    report = Report()
    started = time.monotonic()
    try:
        verify(args, report)
        report.data["ok"] = True
    except (VerifyError, subprocess.TimeoutExpired, OSError) as exc:
        report.data["error"] = str(exc)
        log(f"FAILED: {exc}")
    report.data["seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(report.data, indent=2)
    if args.report:
        args.report.write_text(text + "\n", encoding="utf-8")
    print(text)
    log(f"{'ok' if report.data['ok'] else 'FAILED'} in {report.data['seconds']} s")
    return 0 if report.data["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
