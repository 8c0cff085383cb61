"""Grafana's one login, at the real Traefik: the grafana-auth chain hands the backend the user
name basic auth checked (X-Webauth-User, what Grafana's auth.proxy trusts) and never a copy
the client sent. No Grafana binary is reachable here: an echo server stands behind
monitoring.<domain> and reports the headers it received; grafana.ini is checked by structure.
"""

from __future__ import annotations

import configparser
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.edge.conftest import MONITORING_HOST, PASSWORD, USER, Edge, start_pebble, start_traefik
from tests.edge.render import render

pytestmark = pytest.mark.slow

HEADER = "X-Webauth-User"


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({k.lower(): self.headers.get_all(k) for k in self.headers}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def grafana_edge(edge_dir: Path, users_file: Path) -> Iterator[Edge]:
    """Its own Pebble and Traefik, with the header echo behind both host names."""
    echo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    port = echo.server_address[1]
    workdir = edge_dir / "grafana-login"
    (workdir / "traefik").mkdir(parents=True)
    shutil.copy(users_file, workdir / "traefik" / "users")
    try:
        with (
            start_pebble(workdir / "pebble") as pebble,
            start_traefik(
                workdir / "traefik", pebble, f"http://127.0.0.1:{port}", port, "http"
            ) as edge,
        ):
            yield edge
    finally:
        echo.shutdown()
        echo.server_close()


def received(edge: Edge, headers: dict[str, str], auth: tuple[str, str] | None) -> object:
    with edge.client() as client:
        response = client.get(edge.https_url(MONITORING_HOST), headers=headers, auth=auth)
    if response.status_code != 200:
        return response.status_code
    return response.json().get(HEADER.lower())


def test_grafana_login_the_checked_user_name_reaches_grafana(grafana_edge: Edge) -> None:
    assert received(grafana_edge, {}, (USER, PASSWORD)) == [USER]


@pytest.mark.parametrize("name", [HEADER, HEADER.upper(), HEADER.lower()])
def test_grafana_login_a_client_sent_user_header_does_not_pass_through(
    grafana_edge: Edge, name: str
) -> None:
    assert received(grafana_edge, {name: "admin"}, (USER, PASSWORD)) == [USER]


def test_grafana_login_without_credentials_the_header_gets_nowhere(grafana_edge: Edge) -> None:
    assert received(grafana_edge, {HEADER: "admin"}, None) == 401


def test_grafana_login_the_password_does_not_reach_grafana(grafana_edge: Edge) -> None:
    with grafana_edge.client() as client:
        response = client.get(grafana_edge.https_url(MONITORING_HOST), auth=(USER, PASSWORD))
    assert "authorization" not in response.json()


# --- grafana.ini and the Traefik configuration agree (structure: no Grafana binary here) ---


def grafana_ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(
        render("monitoring/grafana/grafana.ini.j2", grafana_domain="monitoring.example.com")
    )
    return parser


@pytest.mark.parametrize(
    ("key", "value"),
    [("enabled", "true"), ("header_name", HEADER), ("header_property", "username")],
)
def test_grafana_login_grafana_trusts_the_header_traefik_sets(key: str, value: str) -> None:
    assert grafana_ini()["auth.proxy"][key] == value


def test_grafana_login_grafana_shows_no_second_login_form() -> None:
    assert grafana_ini()["auth"]["disable_login_form"] == "true"


def test_grafana_login_traefik_writes_the_same_header_grafana_reads() -> None:
    middlewares = yaml.safe_load(render("traefik/dynamic/middlewares.yml.j2"))["http"][
        "middlewares"
    ]
    assert middlewares["grafana-basic-auth"]["basicAuth"]["headerField"] == HEADER
    assert middlewares["strip-webauth-user"]["headers"]["customRequestHeaders"] == {HEADER: ""}
