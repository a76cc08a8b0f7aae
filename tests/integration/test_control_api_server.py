"""The control plane as an operator runs it: ``lbcore control init``, ``lbcore control
serve`` (uvicorn, a subprocess on a free 127.0.0.1 port, with the native driver's
management TLS) and ``lbcore api ...``; and, end to end, an lbcore engine whose node
agent the control plane pushes to, with requests through it after each API call.

The ``lbcore api`` calls run in-process (``lbcore.control.client.main``) against the
real server, except a few through the installed entry point, so the suite does not
pay an interpreter start per command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("sqlalchemy")

from lbcore.control import client as api_client  # noqa: E402
from tests import tlsgen  # noqa: E402
from tests.integration.harness import ROOT, free_port, http_get  # noqa: E402
from tests.integration.test_tls_engine import served_cert  # noqa: E402
from tests.tlsgen import issue, key_pem, make_ca  # noqa: E402


def lbcore(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lbcore.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


class Server:
    """``lbcore control serve`` in a subprocess; its log is shown when a test fails."""

    def __init__(self, tmp: Path, mgmt: dict[str, str]) -> None:
        self.mgmt = mgmt
        self.db = str(tmp / "control.db")
        self.key = str(tmp / "secrets.key")
        self.log_path = tmp / "serve.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lbcore.cli", "control", "serve", "--db", self.db, "--secrets-key", self.key,
             "--listen", f"127.0.0.1:{self.port}", "--log-level", "WARNING", "--mgmt-cert", self.mgmt["cert"],
             "--mgmt-key", self.mgmt["key"], "--mgmt-ca", self.mgmt["ca"]],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"control serve exited {self.proc.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"control serve did not answer in 30 s:\n{self.log_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture(scope="module")
def mgmt(tmp_path_factory):
    """The management CA, a node certificate for the engines' agents, the control plane's client certificate."""
    d = tmp_path_factory.mktemp("mgmt")
    ca = tlsgen.make_ca("management CA")
    (d / "ca.pem").write_bytes(ca.pem)
    node = tlsgen.write_pair(d, "node", tlsgen.issue(ca, ["node.lbcore.internal"], ip_addresses=["127.0.0.1"]))
    control = tlsgen.write_pair(d, "control", tlsgen.issue(ca, [], common_name="control-plane", client=True))
    return {"ca": str(d / "ca.pem"), "cert": control[0], "key": control[1], "node_cert": node[0], "node_key": node[1]}


@pytest.fixture(scope="module")
def server(tmp_path_factory, mgmt):
    tmp = tmp_path_factory.mktemp("control")
    srv = Server(tmp, mgmt)
    init = lbcore("control", "init", "--db", srv.db, "--secrets-key", srv.key, "--tenant", "ops")
    assert init.returncode == 0, init.stderr
    srv.admin_token = init.stdout.strip()
    assert srv.admin_token.startswith("lbc_") and "\n" not in srv.admin_token
    assert "shown once" in init.stderr
    srv.start()
    yield srv
    srv.stop()
    print(f"--- control serve log ---\n{srv.log_text()}")


@pytest.fixture
def api(server, capsys, monkeypatch):
    """Run ``lbcore api ARGS`` in-process as the ops tenant (admin): (exit code, stdout, stderr)."""
    monkeypatch.setenv("LBCORE_API_URL", server.url)
    monkeypatch.setenv("LBCORE_API_TOKEN", server.admin_token)

    def run(*args: str, token: str | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        argv = (["--token", token] if token else []) + list(args)
        code = api_client.main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_init_refuses_a_second_time_and_token_makes_more(server):
    again = lbcore("control", "init", "--db", server.db, "--secrets-key", server.key, "--tenant", "ops")
    assert again.returncode == 1 and "exists" in again.stderr and again.stdout == ""
    missing = lbcore("control", "token", "--db", server.db, "--tenant", "nobody")
    assert missing.returncode == 1 and "--create" in missing.stderr
    made = lbcore("control", "token", "--db", server.db, "--tenant", "ops", "--admin")
    assert made.returncode == 0 and made.stdout.startswith("lbc_")
    assert oct(os.stat(server.key).st_mode & 0o777) == "0o600"


def test_cli_drives_the_api_tables_json_dry_run_and_if_match(api):
    code, out, err = api("pool", "create", "--name", "www", "--algorithm", "leastconn", "-o", "json")
    assert code == 0, err
    pool = json.loads(out)
    code, out, err = api("member", "create", "--pool", pool["id"], "--address", "127.0.0.1", "--port", "9001")
    assert code == 0, err
    assert "address              127.0.0.1" in out and 'etag                 "1"' in out
    api("member", "create", "--pool", pool["id"], "--address", "127.0.0.1", "--port", "9002", "--name", "m2",
        "--backup", "true")

    code, out, _ = api("member", "list", "--pool", pool["id"], "--sort=-port")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ID", "NAME", "POOL_ID", "ADDRESS"]
    assert "9002" in lines[1] and "m2" in lines[1] and "9001" in lines[2]
    code, out, _ = api("-o", "json", "member", "list", "--filter", f"pool_id={pool['id']}", "--limit", "1")
    page = json.loads(out)
    assert page["total"] == 2 and len(page["items"]) == 1
    code, out, _ = api("member", "list", "--pool", pool["id"], "--limit", "1")
    assert "(1 of 2; --offset 1 for more)" in out

    code, out, _ = api("pool", "update", pool["id"], "--algorithm", "roundrobin", "--dry-run")
    assert code == 0 and out.startswith("dry run: nothing changed")
    assert "no cluster's Spec would change" in out  # the pool serves no listener yet
    code, _, err = api("pool", "update", pool["id"], "--algorithm", "source", "--if-match", '"9"')
    assert code == 1 and "HTTP 412" in err
    code, out, _ = api("pool", "update", pool["id"], "--algorithm", "source", "--if-match", "1", "-o", "json")
    assert code == 0 and json.loads(out)["algorithm"] == "source"

    code, _, err = api("member", "create", "--pool", pool["id"], "--address", "127.0.0.1", "--port", "99999")
    assert code == 1 and "HTTP 422: port: must be 1..65535" in err
    code, _, err = api("pool", "delete", "00000000-0000-0000-0000-000000000000")
    assert code == 1 and "HTTP 404" in err


def test_cli_builds_a_listener_and_shows_effective_values_status_and_diffs(api, tmp_path):
    def make(*args: str) -> dict:
        code, out, err = api(*args, "-o", "json")
        assert code == 0, err
        return json.loads(out)

    cluster = make("cluster", "create", "--name", "edge", "--attrs", '{"timeout_client": "12s"}')
    instance = make("instance", "create", "--cluster", cluster["id"], "--address", "127.0.0.1")
    listener = make("listener", "create", "--instance", instance["id"], "--port", "18080", "--protocol", "http")
    pool = make("pool", "create", "--name", "web")
    make("member", "create", "--pool", pool["id"], "--address", "127.0.0.1", "--port", "9001")

    code, out, _ = api("acl", "create", "--listener", listener["id"], "--pool", pool["id"], "--dry-run")
    assert code == 0
    assert f"cluster {cluster['id']}:" in out and "+ listeners[" in out
    make("acl", "create", "--listener", listener["id"], "--pool", pool["id"])

    code, out, _ = api("listener", "effective", listener["id"])
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "12.0" in rows["timeout_client"] and f"cluster edge ({cluster['id']})" in rows["timeout_client"]
    assert rows["timeout_keepalive"].rstrip().endswith("default")

    code, out, _ = api("cluster", "status", cluster["id"])
    lines = out.splitlines()
    assert lines[0].startswith(f"cluster edge ({cluster['id']})") and "ACTIVE" in lines[0]
    assert any(line.startswith("    listener") and ":18080" in line for line in lines)
    assert any(line.strip().startswith("member") and "127.0.0.1:9001" in line for line in lines)

    # A certificate from files: the key goes in, never comes back.
    https = make("listener", "create", "--instance", instance["id"], "--port", "18443", "--protocol", "HTTPS")
    ca = make_ca()
    leaf = issue(ca, ["www.example.com"])
    (tmp_path / "www.pem").write_bytes(leaf.pem)
    (tmp_path / "www.key").write_bytes(key_pem(leaf.key))
    cert = make("tls-certificate", "create", "--listener", https["id"], "--certificate", f"@{tmp_path / 'www.pem'}",
                "--private-key", f"@{tmp_path / 'www.key'}")
    assert cert["hostnames"] == ["www.example.com"] and "private_key" not in cert
    for args in (("tls-certificate", "show", cert["id"]), ("tls-certificate", "list"),
                 ("cluster", "status", cluster["id"])):
        for output in ("json", "table"):
            code, out, _ = api(*args, "-o", output)
            assert code == 0 and "PRIVATE KEY" not in out


def test_legacy_vip_and_tenant_isolation_through_the_server(api, server):
    code, out, err = api("pool", "create", "--name", "legacy", "-o", "json")
    pool = json.loads(out)
    code, out, err = api("vip", "create", "--pool", pool["id"], "--address", "127.0.0.9", "--port", "18081",
                         "--protocol", "HTTP")
    assert code == 0, err
    kinds = [line.split()[0] for line in out.splitlines()[1:]]
    assert kinds[:4] == ["cluster", "instance", "listener", "acl"]

    code, out, err = api("tenant", "create", "other", "-o", "json")
    assert code == 0, err
    other = json.loads(out)
    code, token, err = api("tenant", "token", other["id"])
    token = token.strip()
    assert code == 0 and token.startswith("lbc_"), err
    code, _, err = api("pool", "show", pool["id"], token=token)
    assert code == 1 and "HTTP 404" in err
    code, out, _ = api("pool", "list", "-o", "json", token=token)
    assert json.loads(out)["total"] == 0
    code, _, err = api("tenant", "list", token=token)
    assert code == 1 and "HTTP 403: admin only" in err
    code, out, _ = api("token", "revoke", token)
    assert code == 0
    code, _, err = api("pool", "list", token=token)
    assert code == 1 and "HTTP 401" in err


def test_the_entry_point_reads_url_and_token_from_the_environment(server, api):
    env = {"LBCORE_API_URL": server.url, "LBCORE_API_TOKEN": server.admin_token}
    made = lbcore("api", "pool", "create", "--name", "from-env", "-o", "json", env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["name"] == "from-env"
    refused = lbcore("api", "pool", "list", env={**env, "LBCORE_API_TOKEN": "lbc_x_y"})
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
    code, out, _ = api("pool", "list", "--filter", "name=from-env")
    assert code == 0 and "from-env" in out
    code, _, err = api("pool", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and "cannot reach the API" in err


def test_a_restarted_control_plane_has_lost_nothing(server, api, monkeypatch):
    code, out, _ = api("pool", "create", "--name", "durable", "-o", "json")
    pool = json.loads(out)
    api("member", "create", "--pool", pool["id"], "--address", "127.0.0.1", "--port", "9009")
    server.stop()
    server.start()  # a new port, the same database and key file
    monkeypatch.setenv("LBCORE_API_URL", server.url)
    code, out, err = api("-o", "json", "member", "list", "--pool", pool["id"])
    assert code == 0, err
    assert [m["port"] for m in json.loads(out)["items"]] == [9009]


def test_each_api_change_reaches_a_real_engine_through_its_node_agent(api, engine, members, mgmt):
    a, b = members("a"), members("b")
    agent, port = f"127.0.0.1:{free_port()}", free_port()
    boot = {"version": 1, "listeners": [{"name": "boot", "bind": f"127.0.0.1:{free_port()}", "protocol": "http",
                                         "default_pool": "p"}],
            "pools": [{"name": "p", "members": [{"name": "a", "address": a.address}]}]}
    node = engine(boot, start=False)
    node.extra_args = ["--agent", agent, "--agent-cert", mgmt["node_cert"], "--agent-key", mgmt["node_key"],
                       "--agent-ca", mgmt["ca"]]
    node.start()
    node.wait_for_log("node agent on")

    def make(*args: str) -> dict:
        code, out, err = api(*args, "-o", "json")
        assert code == 0, err
        return json.loads(out)

    def member_seen() -> str:
        return json.loads(http_get(port)[2])["member"]

    cluster = make("cluster", "create", "--name", "edge")
    instance = make("instance", "create", "--cluster", cluster["id"], "--address", "127.0.0.1")
    listener = make("listener", "create", "--instance", instance["id"], "--port", str(port), "--protocol", "HTTP")
    pool = make("pool", "create", "--name", "web")
    first = make("member", "create", "--pool", pool["id"], "--address", a.address.split(":")[0],
                 "--port", a.address.split(":")[1])
    make("acl", "create", "--listener", listener["id"], "--pool", pool["id"])
    lb = make("loadbalancer", "create", "--cluster", cluster["id"], "--management-address", agent)
    assert lb["provisioning_status"] == "ACTIVE", lb
    assert member_seen() == "a"  # serving when the API answered

    host, member_port = b.address.split(":")
    make("member", "create", "--pool", pool["id"], "--address", host, "--port", member_port)
    code, _, err = api("member", "delete", first["id"])
    assert code == 0, err
    assert {member_seen() for _ in range(4)} == {"b"}

    # Certificates through the API: two on one HTTPS listener, chosen by SNI; the keys
    # travel encrypted at rest, then over the management channel only.
    tls_port = free_port()
    https = make("listener", "create", "--instance", instance["id"], "--port", str(tls_port), "--protocol", "HTTPS")
    make("acl", "create", "--listener", https["id"], "--pool", pool["id"])
    ca = tlsgen.make_ca("site CA", slot=3)
    shop, api_cert = tlsgen.issue(ca, ["shop.example.com"]), tlsgen.issue(ca, ["api.example.com"], key_type="ecdsa")
    for leaf, default in ((shop, "true"), (api_cert, "false")):
        make("tls-certificate", "create", "--listener", https["id"], "--certificate", leaf.pem.decode(),
             "--private-key", leaf.key_pem().decode(), "--is-default", default)
    assert served_cert(tls_port, "api.example.com")[0] == api_cert.der
    assert served_cert(tls_port, "shop.example.com")[0] == shop.der
    assert served_cert(tls_port, None)[0] == shop.der  # the default

    node_state = make("loadbalancer", "show", lb["id"])
    assert node_state["provisioning_status"] == "ACTIVE"
    assert node_state["revision"] == make("cluster", "show", cluster["id"])["revision"]


def test_serve_needs_a_key_file(tmp_path):
    result = lbcore("control", "serve", "--db", str(tmp_path / "c.db"), env={"LBCORE_SECRETS_KEY": ""})
    assert result.returncode == 2 and "--secrets-key" in result.stderr
