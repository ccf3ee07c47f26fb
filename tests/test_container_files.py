"""The Dockerfile, docker-compose.yml, .env.example and docs/operations.md agree.

No container engine runs on the development machines, so these tests read the files:
the compose file parses and has the services, profiles, volumes and healthchecks
operators rely on; every variable it or .env.example names is documented; the image's
entry command is a real sub-command of the CLI; the image runs as non-root, has a
working healthcheck and bakes in no secret.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
OPERATIONS = ROOT / "docs" / "operations.md"
DOCKERIGNORE = ROOT / ".dockerignore"

SECRET_NAMES = {
    "OPENAI_API_KEY", "EMAIL_PASS", "GOOGLE_CREDENTIALS_JSON", "DATABASE_URL",
    "LEADBOX_ADMIN_TOKEN", "LEADBOX_WEBHOOK_SECRET", "GOOGLE_OAUTH_CLIENT_SECRET",
    "GOOGLE_OAUTH_REFRESH_TOKEN", "INBOX_OAUTH_TOKEN",
}
REQUIRED_ENV = SECRET_NAMES | {
    "EMAIL_USER", "LEADBOX_CONFIG", "GOOGLE_OAUTH_CLIENT_ID",
    "LEADBOX_HTTP__PORT", "LEADBOX_INBOX__ENABLED", "LEADBOX_INBOX__HOST",
    "LEADBOX_REPLY__TRANSPORT", "LEADBOX_REPLY__SMTP_HOST", "LEADBOX_SHEETS__ENABLED",
    "LEADBOX_SHEETS__SPREADSHEET", "LEADBOX_CLASSIFIER__BACKEND",
}
PG_URL = "postgresql://leadbox:leadbox@postgres:5432/leadbox"


# -- Dockerfile ---------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    """The argv of a CMD/ENTRYPOINT/HEALTHCHECK CMD; shell form is split like a shell would."""
    args = args.strip()
    if args.startswith("["):
        return json.loads(args)
    return shlex.split(args)


def env_keys(args: str) -> list[str]:
    """Names set by an ENV or ARG instruction (``A=1 B=2`` and legacy ``A 1`` forms)."""
    if "=" not in args.split()[0]:
        return [args.split()[0]]
    return [token.split("=", 1)[0] for token in shlex.split(args)]


def only(instructions: list[tuple[str, str]], word: str) -> str:
    found = [a for w, a in instructions if w == word]
    assert found, f"Dockerfile has no {word}"
    return found[-1]  # the last one is the one that counts


def test_dockerfile_base_workdir_port_volume() -> None:
    ins = dockerfile_instructions()
    assert ins[0] == ("FROM", "python:3.11-slim")
    assert only(ins, "WORKDIR") == "/app"
    assert "8000" in only(ins, "EXPOSE").split()
    assert "/app/data" in only(ins, "VOLUME")
    assert any(w == "COPY" and a.split()[0].rstrip("/") == "config" for w, a in ins)
    assert only(ins, "STOPSIGNAL") == "SIGTERM"
    assert ("LEADBOX_HTTP__HOST", "0.0.0.0") in [
        tuple(t.split("=", 1)) for w, a in ins if w == "ENV" for t in shlex.split(a) if "=" in t
    ]


def test_dependencies_are_a_cached_layer_before_the_app() -> None:
    """pyproject alone is copied and its dependencies installed before the code is copied."""
    ins = dockerfile_instructions()
    copy_pyproject = next(i for i, (w, a) in enumerate(ins) if w == "COPY" and "pyproject.toml" in a)
    copy_app = next(i for i, (w, a) in enumerate(ins) if w == "COPY" and a.split()[0].startswith("agent"))
    installs = [i for i, (w, a) in enumerate(ins) if w == "RUN" and "pip install" in a]
    assert ins[copy_pyproject][1].split()[:-1] == ["pyproject.toml"], "copy pyproject.toml alone"
    assert any(copy_pyproject < i < copy_app for i in installs), "deps installed before the app"
    app_installs = [ins[i][1] for i in installs if i > copy_app]
    assert app_installs and all("--no-deps" in a for a in app_installs)


def test_dockerfile_runs_as_non_root_before_the_entry_command() -> None:
    ins = dockerfile_instructions()
    users = [(i, a) for i, (w, a) in enumerate(ins) if w == "USER"]
    assert users, "no USER: the app would run as root"
    index, user = users[-1]
    assert user.split(":")[0] not in {"root", "0"}
    entry = max(i for i, (w, _) in enumerate(ins) if w in {"CMD", "ENTRYPOINT"})
    assert index < entry


def test_dockerfile_bakes_in_no_secret() -> None:
    ins = dockerfile_instructions()
    named = {k for w, a in ins if w in {"ENV", "ARG"} for k in env_keys(a)}
    assert not named & SECRET_NAMES, f"secret set in the image: {named & SECRET_NAMES}"
    assert not any(w == "COPY" and ".env" in a.split()[:-1] for w, a in ins)
    ignored = DOCKERIGNORE.read_text().split()
    assert ".env" in ignored and ".git" in ignored and ".venv" in ignored


def entry_argv() -> list[str]:
    ins = dockerfile_instructions()
    entrypoint = [a for w, a in ins if w == "ENTRYPOINT"]
    cmd = [a for w, a in ins if w == "CMD"]
    return (exec_form(entrypoint[-1]) if entrypoint else []) + (exec_form(cmd[-1]) if cmd else [])


def test_entry_command_is_leadbox_run() -> None:
    assert entry_argv() == ["leadbox", "run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["leadbox"] == "agent.cli:main"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the `leadbox` console script's target in a fresh interpreter, as the image does."""
    code = "import sys; from agent.cli import main; sys.argv = ['leadbox', *sys.argv[1:]]; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.slow
def test_run_is_a_real_cli_sub_command() -> None:
    if not (ROOT / "agent" / "cli.py").exists():
        pytest.skip("agent/cli.py is not written yet (another issue); this runs once it exists")
    argv = entry_argv()
    ok = run_cli(*argv[1:], "--help")
    assert ok.returncode == 0, ok.stderr
    assert "--config" in ok.stdout
    bogus = run_cli("no-such-command", "--help")
    assert bogus.returncode != 0, "the CLI accepts any sub-command, so this check proves nothing"


# -- healthchecks actually work --------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # the stdlib's name
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()
    thread.join()


def run_probe(argv: list[str], port: int) -> int:
    assert argv[0] == "python", "the slim image has no curl: the probe must use python"
    env = {**os.environ, "LEADBOX_HTTP__PORT": str(port)}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30).returncode


def dockerfile_probe() -> list[str]:
    args = only(dockerfile_instructions(), "HEALTHCHECK")
    _, _, command = args.partition("CMD ")
    return exec_form(command)


def compose_probe() -> list[str]:
    test = compose()["services"]["leadbox"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return test[1:]


@pytest.mark.slow
@pytest.mark.parametrize("probe", [dockerfile_probe, compose_probe], ids=["Dockerfile", "compose"])
def test_healthcheck_probe_follows_healthz(probe, health_server) -> None:
    port, handler = health_server
    argv = probe()
    assert any("/healthz" in a for a in argv)
    assert run_probe(argv, port) == 0
    handler.status = 503
    assert run_probe(argv, port) != 0


# -- docker-compose.yml ---------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def interpolated_env(service: dict) -> dict[str, str]:
    """The service's environment, as a mapping (compose accepts a list of NAME=value too)."""
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def assert_env_from_dotenv(service: dict) -> None:
    """Every variable leadbox reads comes from .env or the shell through ${VAR:-}, which Compose v2
    and docker-compose 1.29 both understand; env_file with `required` needs Compose 2.24."""
    assert "env_file" not in service, "env_file: [{path, required: false}] breaks docker-compose 1.29"
    env = interpolated_env(service)
    for name in env_example_vars():
        if name == "LEADBOX_DOTENV":
            continue  # how the CLI reads .env on the host; the image has no .env (.dockerignore)
        if name == "DATABASE_URL" and env.get(name) == PG_URL:
            continue  # the replicas point at the postgres service
        assert env.get(name) == f"${{{name}:-}}", f"{name} is not passed as ${{{name}:-}}"


def assert_build_on_host_network(service: dict) -> None:
    assert service["build"] == {"context": ".", "network": "host"}


def seconds(value: str) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", value)
    assert match and value, f"unexpected duration {value!r}"
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def test_compose_leadbox_service() -> None:
    doc = compose()
    svc = doc["services"]["leadbox"]
    assert_build_on_host_network(svc)
    assert "profiles" not in svc  # starts with a plain `docker compose up`
    assert_env_from_dotenv(svc)
    assert "${LEADBOX_PORT:-8000}:8000" in svc["ports"]
    assert "leadbox-data:/app/data" in svc["volumes"]
    assert "./config:/app/config:ro" in svc["volumes"]
    assert svc["restart"] == "unless-stopped"
    assert svc["healthcheck"]["test"]
    from agent.config import HttpConfig

    grace = HttpConfig().shutdown_grace
    assert seconds(svc["stop_grace_period"]) > grace, "docker would kill the drain"


def test_compose_postgres_profile() -> None:
    services = compose()["services"]
    pg = services["postgres"]
    assert pg["image"] == "postgres:16"
    assert pg["profiles"] == ["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    env = pg["environment"]
    # The replicas' DSN must match what the postgres service creates.
    assert PG_URL == (
        f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/{env['POSTGRES_DB']}"
    )
    for name, port in (("leadbox-a", 8001), ("leadbox-b", 8002)):
        svc = services[name]
        assert svc["profiles"] == ["postgres"]
        assert_build_on_host_network(svc)
        assert svc["environment"]["DATABASE_URL"] == PG_URL
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert svc["ports"] == [f"${{LEADBOX_{name[-1].upper()}_PORT:-{port}}}:8000"]
        assert svc["restart"] == "unless-stopped"
        assert svc["healthcheck"]["test"]
        assert_env_from_dotenv(svc)


def test_compose_declares_every_named_volume() -> None:
    doc = compose()
    declared = set(doc.get("volumes") or {})
    used = set()
    for svc in doc["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/", "~")):
                used.add(source)
    assert used <= declared, f"undeclared volumes: {used - declared}"
    assert "leadbox-data" in declared


# -- names documented -------------------------------------------------------------


def env_example_vars() -> dict[str, str]:
    """Variables in .env.example, set (``NAME=``) or shown commented out (``# NAME=``)."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def compose_var_names() -> set[str]:
    text = COMPOSE.read_text()
    names = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", text))  # ${VAR}, $VAR interpolation
    names |= set(re.findall(r"environ(?:\.get\(|\[)['\"]([A-Z_][A-Z0-9_]*)", text))
    for svc in compose()["services"].values():
        env = svc.get("environment") or {}
        names |= set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
    return names


def documented(name: str) -> bool:
    return f"`{name}`" in OPERATIONS.read_text()


def test_env_example_lists_every_variable_without_values() -> None:
    found = env_example_vars()
    assert REQUIRED_ENV <= set(found), f"missing from .env.example: {REQUIRED_ENV - set(found)}"
    leaked = {name: v for name, v in found.items() if name in SECRET_NAMES and v.strip()}
    assert not leaked, f".env.example must not carry secret values: {sorted(leaked)}"


def test_env_example_comments_every_variable() -> None:
    """Each variable, or the group of variables it belongs to, has a comment right above."""
    last_kind = None
    for line in ENV_EXAMPLE.read_text().splitlines():
        stripped = line.strip()
        is_var = re.match(r"^#?\s*[A-Z][A-Z0-9_]*=", stripped) is not None
        if is_var:
            assert last_kind in {"comment", "var"}, f"no comment above {stripped!r}"
            last_kind = "var"
        elif stripped.startswith("#"):
            last_kind = "comment"
        else:
            last_kind = None


def test_every_env_example_variable_is_documented() -> None:
    missing = sorted(n for n in env_example_vars() if not documented(n))
    assert not missing, f"in .env.example but not in docs/operations.md: {missing}"


def test_every_compose_variable_is_documented() -> None:
    names = compose_var_names()
    assert "DATABASE_URL" in names  # the scan finds what is there
    missing = sorted(n for n in names if not documented(n))
    assert not missing, f"in docker-compose.yml but not in docs/operations.md: {missing}"


def test_dockerfile_env_is_documented() -> None:
    names = {k for w, a in dockerfile_instructions() if w == "ENV" for k in env_keys(a)}
    leadbox_names = {n for n in names if n.startswith("LEADBOX_")}
    assert leadbox_names, "the image should set LEADBOX_HTTP__HOST"
    missing = sorted(n for n in leadbox_names if not documented(n))
    assert not missing, f"set in the Dockerfile but not in docs/operations.md: {missing}"


def test_operations_doc_covers_the_topics() -> None:
    text = OPERATIONS.read_text()
    for needle in ("/healthz", "/readyz", "503", "Retry-After", "SIGTERM", "backup", "profile postgres",
                   "leadbox_"):
        assert needle.lower() in text.lower(), needle


def test_every_metric_is_documented() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from agent.app.metrics import Metrics

    payload, _ = Metrics().render()
    documented_text = OPERATIONS.read_text()
    missing = []
    for family in text_string_to_metric_families(payload.decode()):
        if family.name.endswith("_created"):
            continue  # prometheus_client's creation timestamps, documented as a group
        shown = f"{family.name}_total" if family.type == "counter" else family.name
        if f"`{shown}`" not in documented_text:
            missing.append(shown)
    assert not missing, f"metrics missing from docs/operations.md: {missing}"


def test_compose_empty_values_count_as_unset(tmp_path: Path) -> None:
    """With no .env, compose hands every ${NAME:-} variable to the container as an empty value:
    leadbox must start on its defaults, not fail on LEADBOX_HTTP__PORT=''."""
    from agent.config import load_config

    empty = {name: "" for name in interpolated_env(compose()["services"]["leadbox"])}
    assert "LEADBOX_HTTP__PORT" in empty and "LEADBOX_INBOX__ENABLED" in empty
    config = load_config(str(ROOT / "config" / "agent.toml"), env=empty)
    defaults = load_config(str(ROOT / "config" / "agent.toml"), env={})
    assert config.settings == defaults.settings
    assert config.store_url == defaults.store_url
