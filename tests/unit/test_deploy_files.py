"""docker/: the invariants of the image and of the compose files, checked without a Docker
engine (none in CI): every command a container runs is a real `hub` command, every HUB_*
variable is a setting the hub reads, one beat, migrations before everything, health checks,
a non-root image without compilers, and a proxy that reaches the API. Also `hub beat` and
`hub serve`'s command lines (behind a proxy, they pass on which addresses to believe)."""
from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from hub import cli

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
HUB_SERVICES = {"migrate", "api", "worker", "beat", "dispatcher"}
ONE_OFF = {"migrate", "seed"}


def _compose(*names: str) -> dict:
    """The compose files merged as `docker compose -f a -f b` merges services (maps per key)."""
    merged: dict = {"services": {}}
    for name in names:
        doc = yaml.safe_load((DOCKER / name).read_text())
        for service, spec in doc["services"].items():
            into = merged["services"].setdefault(service, {})
            for key, value in spec.items():
                into[key] = {**into.get(key, {}), **value} if isinstance(value, dict) else value
        merged.update({k: v for k, v in doc.items() if k != "services"})
    return merged


@pytest.fixture(scope="module")
def compose() -> dict:
    return _compose("compose.yaml", "compose.demo.yaml")


def _stages(dockerfile: str) -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped) per stage,
    each FROM with the global ARGs' defaults filled in."""
    text = re.sub(r"\\\n", " ", dockerfile)
    stages: list[list[str]] = []
    args: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not stages and line.startswith("ARG ") and "=" in line:
            name, _, default = line[4:].partition("=")
            args[name.strip()] = default.strip()
        if line.upper().startswith("FROM "):
            line = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], line)
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def resolve(command: list[str]) -> click.Command:
    """The click command `hub <command...>` runs, or a failure naming what does not exist."""
    group, ctx = cli.main, click.Context(cli.main)
    words = list(command)
    while isinstance(group, click.Group) and words and not words[0].startswith("-"):
        name = words.pop(0)
        found = group.get_command(ctx, name)
        assert found is not None, f"`hub {' '.join(command)}`: no command {name!r}"
        group = found
    assert not isinstance(group, click.Group), f"`hub {' '.join(command)}` names a group, not a command"
    options = {opt for param in group.params for opt in getattr(param, "opts", [])
               + getattr(param, "secondary_opts", [])}
    for word in words:
        if word.startswith("-"):
            assert word in options, f"`hub {' '.join(command)}`: {group.name} has no option {word}"
    return group


def known_variables() -> set[str]:
    """Every HUB_* variable the hub reads: hub/settings.py's, and the CLI options' envvars.
    HUB_PROVIDER_ is a prefix (HUB_PROVIDER_<NAME>_<KEY>)."""
    source = (ROOT / "hub" / "settings.py").read_text()
    names = {f"HUB_{name}" for name in re.findall(r'_env\("([A-Z0-9_]+)"', source)}
    names |= set(re.findall(r'"(HUB_[A-Z0-9_]+)"', source))

    def walk(command: click.Command):
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            names.update([envvar] if isinstance(envvar, str) else envvar or [])
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(cli.main)
    return names


def _hub_variables(compose: dict) -> set[str]:
    """HUB_* names a container gets, or compose interpolates, or docker/.env.example sets."""
    text = "\n".join((DOCKER / name).read_text() for name in ("compose.yaml", "compose.demo.yaml", ".env.example"))
    used = set(re.findall(r"\$\{(HUB_[A-Z0-9_]+)", text))
    used |= set(re.findall(r"^#?\s*(HUB_[A-Z0-9_]+)=", text, re.M))
    for spec in compose["services"].values():
        used |= {name for name in spec.get("environment", {}) if name.startswith("HUB_")}
    return used


def test_image_is_multi_stage_slim_and_runs_hub_as_non_root():
    stages = _stages((DOCKER / "Dockerfile").read_text())
    assert len(stages) >= 2, "a build stage and a runtime stage"
    assert all("slim" in stage[0] for stage in stages), "every stage on a slim base"
    final = stages[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the final stage runs as a fixed non-root uid"
    assert users[-1].split(":")[0].isdigit(), "a numeric uid (Kubernetes' runAsNonRoot can verify it)"
    body = "\n".join(final)
    for tool in ("build-essential", "gcc", "g++", "make ", "apt-get install"):
        assert tool not in body, f"the runtime stage installs {tool.strip()}"
    assert "--no-index" in body and "from=build" in body, "the runtime installs the build stage's wheels only"
    assert 'ENTRYPOINT ["hub"]' in body and any(line.startswith("HEALTHCHECK") for line in final)
    assert not re.search(r"(?i)^(ENV|ARG)\s.*(SECRET|PASSWORD|_KEY)", body, re.M), "no secret baked in"
    cmd = next(line for line in reversed(final) if line.startswith("CMD "))
    resolve(yaml.safe_load(cmd[4:]))  # a JSON array is YAML


def test_every_container_command_is_a_real_hub_command(compose):
    hub_images = {svc for svc, spec in compose["services"].items() if str(spec.get("image", "")).startswith("${IMAGE")}
    assert HUB_SERVICES <= hub_images
    for service in hub_images:
        resolve(compose["services"][service]["command"])


def test_resolve_refuses_a_renamed_command_or_option():
    with pytest.raises(AssertionError, match="no command 'upgrad'"):
        resolve(["db", "upgrad"])
    with pytest.raises(AssertionError, match="no option --ports"):
        resolve(["sandbox", "--ports", "8090"])
    with pytest.raises(AssertionError, match="names a group"):
        resolve(["db"])


def test_every_hub_variable_is_one_the_hub_reads(compose):
    known = known_variables()
    assert {"HUB_DATABASE_URL", "HUB_WORKER_CONCURRENCY", "HUB_FORWARDED_ALLOW_IPS"} <= known
    unknown = {name for name in _hub_variables(compose)
               if name not in known and not name.startswith("HUB_PROVIDER_")}
    assert not unknown, f"not settings of the hub (typo?): {sorted(unknown)}"
    assert "HUB_DB_POOLSIZE" not in known  # the check itself can fail


def test_migrations_run_once_before_every_hub_process(compose):
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"] and migrate["restart"] == "no"
    for name in HUB_SERVICES - {"migrate"} | {"seed"}:
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    for name in ("api", "worker", "beat", "dispatcher"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_exactly_one_beat_and_only_there(compose):
    services = compose["services"]
    beats = [name for name, spec in services.items() if spec.get("command", [None])[0] == "beat"
             or "--beat" in spec.get("command", [])]
    assert beats == ["beat"]
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_every_long_running_service_has_a_health_check(compose):
    for name, spec in compose["services"].items():
        check = spec.get("healthcheck", {})
        if name in ONE_OFF:
            assert spec["restart"] == "no", name
            continue
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"


def test_api_replicas_sit_behind_the_proxy_which_alone_is_believed(compose):
    services = compose["services"]
    api, proxy = services["api"], services["proxy"]
    assert "ports" not in api, "the API is reached through the proxy only"
    conf = (DOCKER / "nginx.conf").read_text()
    upstream = re.search(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf)
    server = re.search(r"server\s+([\w.-]+):(\d+)", upstream.group(2))
    assert server.group(1) == "api" and server.group(2) == api["environment"]["HUB_PORT"]
    assert f"proxy_pass http://{upstream.group(1)};" in conf
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf
    mounted = [v for v in proxy["volumes"] if v.startswith("./nginx.conf:")]
    assert mounted, "the proxy runs docker/nginx.conf"
    assert api["environment"]["HUB_FORWARDED_ALLOW_IPS"] == proxy["networks"]["hub"]["ipv4_address"]
    assert str(api["deploy"]["replicas"]).startswith("${API_REPLICAS")


def test_secrets_come_from_the_environment_never_the_files(compose):
    example = (DOCKER / ".env.example").read_text()
    for name in ("HUB_SECRET_KEY", "POSTGRES_PASSWORD"):
        assert re.search(rf"^{name}=$", example, re.M), f"{name} is left empty in the example"
    env = compose["services"]["api"]["environment"]
    assert env["HUB_SECRET_KEY"].startswith("${HUB_SECRET_KEY:?"), "compose refuses to start without it"
    assert "docker/.env" in (ROOT / ".gitignore").read_text().split()


def _exec(calls: list, argv: list[str]):
    """os.execvp, recorded: like the real one, it does not return."""
    calls.append(argv)
    raise SystemExit(0)


def test_hub_beat_runs_celery_beat_alone_with_its_schedule_file(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cli.os, "execvp", lambda file, argv: _exec(calls, argv))
    monkeypatch.setenv("HUB_SECRET_KEY", "test-only")
    monkeypatch.setenv("HUB_BEAT_SCHEDULE", str(tmp_path / "schedule"))
    result = CliRunner().invoke(cli.main, ["beat"])
    assert result.exit_code == 0, result.output
    (argv,) = calls
    assert argv[1:6] == ["-m", "celery", "-A", "hub.tasks:celery", "beat"]
    assert argv[argv.index("--schedule") + 1] == str(tmp_path / "schedule")
    assert "--enable-remote-control" in argv  # its health check pings it


def test_hub_serve_believes_forwarded_headers_only_from_the_configured_proxy(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.os, "execvp", lambda file, argv: _exec(calls, argv))
    monkeypatch.setenv("HUB_SECRET_KEY", "test-only")
    monkeypatch.setenv("HUB_FORWARDED_ALLOW_IPS", "172.28.0.10")
    monkeypatch.setenv("HUB_WORKERS", "3")
    assert CliRunner().invoke(cli.main, ["serve"]).exit_code == 0
    (argv,) = calls
    assert argv[argv.index("--forwarded-allow-ips") + 1] == "172.28.0.10"
    assert argv[argv.index("--workers") + 1] == "3"

    import uvicorn

    runs = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append(options))
    monkeypatch.setenv("HUB_WORKERS", "1")
    assert CliRunner().invoke(cli.main, ["serve"]).exit_code == 0
    assert runs[0]["forwarded_allow_ips"] == "172.28.0.10"
