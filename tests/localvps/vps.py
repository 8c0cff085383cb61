"""A local Debian 13 "VPS" for running site.yml for real: systemd-nspawn, a veth pair, SSH.

Everything here is a test-host preparation (shared/LOCAL-STAND-INS.md): the roles never know
they run in a container. Each helper registers its own cleanup on an ExitStack, so whatever
was started is stopped again, also when a later step fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scripts.host_keys import known_hosts_line, new_host_key

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE_DIR = Path(os.environ.get("LLM_VPS_CACHE", Path.home() / ".cache" / "llm-vps")) / "localvps"
ROOTFS = CACHE_DIR / "trixie-rootfs"
# Private range used only on our own veth pairs: one /30 per run, chosen free at run time.
VETH_RANGE = ipaddress.ip_network("10.213.0.0/16")
APT_CACHER_PORT = 13142
# The zone the tests deploy: Pebble issues certificates for llm. and monitoring. in it.
TEST_DOMAIN = "llmvps.test"
# Where the VPS sees its "data volume" (a bind-mounted host directory; see conftest.py).
DATA_DIR = "/srv/llm-vps-data"
# Host keys are checked strictly against the known_hosts of each VPS (LocalVPS.ssh_opts):
# the project makes the host key before the VPS boots, as scripts/host_keys.py does for a
# real server, so there is never a prompt and never an unchecked key.
SSH_OPTS = [
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=3",
    "-o",
    "BatchMode=yes",
    # Only the key given with -i, whatever an agent holds (MaxAuthTries, fail2ban).
    "-o",
    "IdentitiesOnly=yes",
]


_TERMINAL: list[object] = []


def set_terminal(config: object) -> None:
    """Write phases to pytest's terminal as they end, past its output capture."""
    _TERMINAL[:] = [config]


def log(msg: str) -> None:
    line = f"localvps: {msg}"
    if _TERMINAL:
        plugins = _TERMINAL[0].pluginmanager  # type: ignore[attr-defined]
        reporter = plugins.getplugin("terminalreporter")
        capman = plugins.getplugin("capturemanager")
        if reporter is not None and capman is not None:
            with capman.global_and_fixture_disabled():
                reporter.ensure_newline()
                reporter.write_line(line)
            return
    print(line, file=sys.stderr, flush=True)


@dataclass
class Phases:
    """Wall-clock duration of each phase, printed as it ends and summarised at the end."""

    durations: list[tuple[str, float, str]] = field(default_factory=list)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        log(f"phase {name} ...")
        start = time.monotonic()
        outcome = "failed"
        try:
            yield
            outcome = "ok"
        finally:
            took = time.monotonic() - start
            self.durations.append((name, took, outcome))
            log(f"phase {name} {outcome} in {took:.1f} s")

    def summary(self) -> str:
        lines = [f"  {name:<34} {took:7.1f} s  {outcome}" for name, took, outcome in self.durations]
        total = sum(took for _, took, _ in self.durations)
        return "\n".join([*lines, f"  {'total':<34} {total:7.1f} s"])


PHASES = Phases()


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise with its output, so the test report says why."""
    kw.setdefault("check", True)
    kw.setdefault("text", True)
    kw.setdefault("capture_output", True)
    try:
        return subprocess.run(cmd, **kw)  # type: ignore[call-overload, no-any-return]
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"{' '.join(cmd)!r} exited {exc.returncode}\n"
            f"--- stdout\n{(exc.stdout or '')[-4000:]}\n--- stderr\n{(exc.stderr or '')[-4000:]}"
        ) from None


def missing_requirements() -> str | None:
    """Why this machine cannot run the local VPS, or None when it can."""
    if sys.platform != "linux":
        return "the local VPS needs Linux (systemd-nspawn)"
    if os.geteuid() != 0:
        return "the local VPS needs root (debootstrap, systemd-nspawn, veth addresses)"
    needed = ["systemd-nspawn", "debootstrap", "nsenter", "ip", "ssh", "ssh-keygen"]
    needed += ["/usr/sbin/apt-cacher-ng"]
    absent = [p for p in needed if shutil.which(p) is None]
    if absent:
        return f"missing programs: {', '.join(absent)} (make system-deps installs them)"
    return None


def build_rootfs() -> None:
    """The pristine Debian 13 tree, cached between runs (about 80 s the first time)."""
    subprocess.run([str(HERE / "build-rootfs.sh"), str(ROOTFS)], check=True)


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = run(["ip", "-o", "-4", "addr", "show"]).stdout
    nets = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    return nets


def pick_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    subnets = list(VETH_RANGE.subnets(new_prefix=30))
    for net in random.sample(subnets, 64):
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError(f"no free /30 in {VETH_RANGE}")


def wait_for(what: str, check: object, timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def tcp_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


@dataclass
class LocalVPS:
    """One booted Debian 13 container, reachable as deploy@address with passwordless sudo."""

    name: str
    workdir: Path
    subnet: ipaddress.IPv4Network
    stack: contextlib.ExitStack
    hosts: dict[str, str] = field(default_factory=dict)
    # systemd-nspawn --bind=HOST:CONTAINER, e.g. a host directory playing the data volume.
    binds: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    leader: int = 0
    # The project's host key of this server (scripts/host_keys.py); a rebuild passes the
    # one of the server it replaces, as Terraform hands the same key to the new server.
    host_key: dict[str, str] | None = None
    # The deploy login key; a rebuild keeps the one of the server it replaces.
    login_key: Path | None = None
    # More systemd-nspawn options, e.g. --network-veth-extra for a private network.
    nspawn_extra: list[str] = field(default_factory=list)

    @property
    def host_addr(self) -> str:
        return str(self.subnet[1])

    @property
    def addr(self) -> str:
        return str(self.subnet[2])

    @property
    def rootfs(self) -> Path:
        return self.workdir / "rootfs"

    @property
    def key(self) -> Path:
        return self.login_key or self.workdir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.workdir / "known_hosts"

    @property
    def ssh_opts(self) -> list[str]:
        strict = ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}"]
        return [*strict, *SSH_OPTS]

    @property
    def veth(self) -> str:
        return f"ve-{self.name}"[:15]

    # -- preparing the copy ------------------------------------------------------------
    def prepare(self) -> None:
        """A fresh copy of the pristine tree plus what cloud-init would do on Hetzner."""
        self.workdir.mkdir(parents=True)
        self.stack.callback(self._remove_workdir)
        run(["cp", "-a", "--reflink=auto", str(ROOTFS), str(self.rootfs)])
        if self.login_key is None:
            run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "localvps",
                    "-f",
                    str(self.key),
                ]
            )
        root = self.rootfs
        self.install_host_key()
        (root / "etc/hostname").write_text(f"{self.name}\n")
        hosts = [f"127.0.1.1 {self.name}"] + [f"{ip} {n}" for n, ip in self.hosts.items()]
        with (root / "etc/hosts").open("a") as fh:
            fh.write("\n".join(hosts) + "\n")
        # No resolver is reachable from the container; names the tests use are in /etc/hosts.
        resolv = root / "etc/resolv.conf"
        resolv.unlink(missing_ok=True)
        resolv.write_text("# localvps: no DNS server, see /etc/hosts\n")
        # cloud-init's user: key-only login, passwordless sudo.
        run(["chroot", str(root), "useradd", "-m", "-s", "/bin/bash", "-G", "sudo", "deploy"])
        ssh_dir = root / "home/deploy/.ssh"
        ssh_dir.mkdir(mode=0o700)
        (ssh_dir / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        (ssh_dir / "authorized_keys").chmod(0o600)
        run(["chroot", str(root), "chown", "-R", "deploy:deploy", "/home/deploy/.ssh"])
        sudoers = root / "etc/sudoers.d/90-cloud-init-users"
        sudoers.write_text("deploy ALL=(ALL) NOPASSWD:ALL\n")
        sudoers.chmod(0o440)
        # apt goes through apt-cacher-ng on our side of the veth pair.
        (root / "etc/apt/apt.conf.d/00localvps-proxy").write_text(
            f'Acquire::http::Proxy "http://{self.host_addr}:{APT_CACHER_PORT}";\n'
        )

    def install_host_key(self) -> None:
        """What cloud-init does with Terraform's host_keys: only the project's key, known in
        advance; and what Terraform writes: the known_hosts line for the address."""
        if self.host_key is None:
            self.host_key = new_host_key(self.name)
        ssh = self.rootfs / "etc/ssh"
        for old in ssh.glob("ssh_host_*"):
            old.unlink()
        private = ssh / "ssh_host_ed25519_key"
        private.write_text(self.host_key["private"])
        private.chmod(0o600)
        (ssh / "ssh_host_ed25519_key.pub").write_text(self.host_key["public"] + "\n")
        self.known_hosts.write_text(known_hosts_line([self.addr], self.host_key["public"]))

    def _remove_workdir(self) -> None:
        if os.environ.get("LOCALVPS_KEEP"):
            log(f"keeping {self.workdir} (LOCALVPS_KEEP is set)")
            return
        run(["rm", "-rf", "--one-file-system", str(self.workdir)], check=False)

    # -- booting -------------------------------------------------------------------------
    def boot(self) -> None:
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        console = (self.workdir / "console.log").open("wb")
        self.stack.callback(console.close)
        cmd = [
            "systemd-nspawn",
            f"--directory={self.rootfs}",
            f"--machine={self.name}",
            "--boot",
            # The host's PID 1 is not systemd and there is no D-Bus.
            "--register=no",
            "--keep-unit",
            "--network-veth",
            "--capability=all",
            "--private-users=no",
            "--console=read-only",
            "--resolv-conf=off",
            "--system-call-filter=@keyring bpf",
            *(f"--bind={bind}" for bind in self.binds),
            *self.nspawn_extra,
        ]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=console, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.stack.callback(self.shutdown)
        wait_for("the container's init", self._find_leader, 30)
        wait_for(f"interface {self.veth}", lambda: Path(f"/sys/class/net/{self.veth}").exists(), 30)
        prefix = self.subnet.prefixlen
        run(["ip", "addr", "add", f"{self.host_addr}/{prefix}", "dev", self.veth])
        run(["ip", "link", "set", self.veth, "up"])
        inside = ["nsenter", "-t", str(self.leader), "-n"]
        wait_for("host0", lambda: self._inside_ok([*inside, "ip", "link", "show", "host0"]), 30)
        run([*inside, "ip", "addr", "add", f"{self.addr}/{prefix}", "dev", "host0"])
        run([*inside, "ip", "link", "set", "host0", "up"])
        run([*inside, "ip", "route", "add", "default", "via", self.host_addr])

    def _inside_ok(self, cmd: list[str]) -> bool:
        return subprocess.run(cmd, capture_output=True, check=False).returncode == 0

    def _find_leader(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}: {self.console()}")
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            for child in task.read_text().split():
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    self.leader = int(child)
                    return True
        return False

    def console(self) -> str:
        path = self.workdir / "console.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def shutdown(self) -> None:
        """Power the container off hard, as Hetzner does with a deleted server: a clean stop
        takes over a minute (systemd waits for its units) and the tests need none of it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        # Data in bind-mounted host directories (the volume) outlives the container.
        run(["sync"], check=False)
        # Its init heads its own PID namespace: killing it ends every process in it (and
        # frees the network namespace with the veth pair).
        if self.leader:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.leader, signal.SIGKILL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    # -- talking to it -----------------------------------------------------------------
    def ssh_cmd(self, *args: str) -> list[str]:
        return ["ssh", *self.ssh_opts, "-i", str(self.key), f"deploy@{self.addr}", *args]

    def ssh(self, script: str, check: bool = True, timeout: float = 900) -> str:
        result = run(self.ssh_cmd(script), check=check, timeout=timeout)
        return result.stdout

    def wait_for_ssh(self, timeout: float = 60) -> None:
        def ready() -> bool:
            probe = subprocess.run(
                self.ssh_cmd("sudo", "-n", "true"), capture_output=True, check=False
            )
            return probe.returncode == 0

        try:
            wait_for(f"ssh deploy@{self.addr} sudo true", ready, timeout, interval=1)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- console\n{self.console()}") from None


@dataclass
class AptCacher:
    """apt-cacher-ng as a plain process with its own configuration, bound to one address."""

    bind: str
    workdir: Path
    stack: contextlib.ExitStack
    port: int = APT_CACHER_PORT

    def start(self) -> None:
        conf = self.workdir / "acng"
        logs = self.workdir / "acng-log"
        cache = CACHE_DIR / "apt-cacher-ng"
        for d in (conf, logs, cache):
            d.mkdir(parents=True, exist_ok=True)
        # No Remap-* lines: it forwards exactly the URLs apt asks for.
        (conf / "acng.conf").write_text(
            f"CacheDir: {cache}\nLogDir: {logs}\nPort: {self.port}\nBindAddress: {self.bind}\n"
            f"SocketPath: {self.workdir / 'acng.socket'}\nPidFile: {self.workdir / 'acng.pid'}\n"
            "ForeGround: 1\nExThreshold: 4\n"
        )
        out = (self.workdir / "acng.out").open("wb")
        self.stack.callback(out.close)
        proc = subprocess.Popen(
            ["/usr/sbin/apt-cacher-ng", "-c", str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.stack.callback(stop_process, proc, "apt-cacher-ng")
        wait_for("apt-cacher-ng", lambda: tcp_open(self.bind, self.port), 20, 0.2)


def stop_process(proc: subprocess.Popen[bytes], what: str) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        log(f"{what} did not stop: killing it")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_directory(
    directory: Path, bind: str, stack: contextlib.ExitStack
) -> tuple[str, http.server.ThreadingHTTPServer]:
    """Serve files over plain HTTP on bind (a free port); stopped with the stack."""

    def handler(*a: object, **k: object) -> _QuietHandler:
        return _QuietHandler(*a, directory=str(directory), **k)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer((bind, 0), handler)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stack.callback(server.server_close)
    stack.callback(server.shutdown)
    return f"http://{bind}:{server.server_address[1]}", server


def md5sum(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - the role checks the md5 GPT4All publishes
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
