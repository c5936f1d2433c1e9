"""docker/: the compose stack, the image, the gateway's config and the broker's, without Docker.

CI has no Docker engine, so nothing here builds or starts the stack. compose.yaml is checked
against the Compose Specification's JSON Schema (tests/data/compose-spec.json) and against the
repository: mounted paths, service names, ports, healthchecks, the commands parsed by the
gateway's own command line and docker/campusgw.toml loaded by the gateway's own config loader.
tests/integration/test_docker_configs.py runs the healthchecks against real servers.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.cli import build_parser
from gateway.config import ENV_PREFIX, Settings, load_settings
from simulators.servers import MOSQUITTO_TEMPLATE, mosquitto_conf
from tests.unit.schema_subset import Validator, unknown_keywords

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SCHEMA = json.loads((REPO / "tests" / "data" / "compose-spec.json").read_text(encoding="utf-8"))
# The services that run our image (built from docker/Dockerfile) rather than a public one.
OURS = sorted(name for name, svc in SERVICES.items() if "build" in svc)
MIN_QUEUE = 10_000  # mosquitto's default of 1000 loses messages while the gateway restarts


def dockerfile() -> list[tuple[str, str]]:
    """The final stage of docker/Dockerfile as (INSTRUCTION, arguments), continuations joined."""
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    steps = [line.strip().split(maxsplit=1) for line in joined.splitlines() if line.strip()]
    final = max(i for i, step in enumerate(steps) if step[0].upper() == "FROM")
    return [(step[0].upper(), step[1] if len(step) > 1 else "") for step in steps[final:]]


def instruction(name: str) -> str:
    """The arguments of the last `name` instruction of the final stage."""
    found = [args for step, args in dockerfile() if step == name]
    assert found, f"docker/Dockerfile has no {name} in its final stage"
    return found[-1]


def image_healthcheck() -> list[str]:
    """The exec-form command of the Dockerfile's HEALTHCHECK."""
    args = instruction("HEALTHCHECK")
    return list(json.loads(args[args.index("CMD ") + 4 :]))


def healthcheck(name: str) -> list[str] | None:
    """The command Docker runs to check a service: its own, else its image's; None: none."""
    own = SERVICES[name].get("healthcheck", {})
    if own.get("disable"):
        return None
    if "test" in own:
        test = own["test"]
        return shlex.split(test) if isinstance(test, str) else list(test[1:])
    return image_healthcheck() if name in OURS else None


def volumes(name: str) -> list[tuple[str, str]]:
    """(source, target) of a service's mounts, short syntax."""
    pairs = [entry.split(":") for entry in SERVICES[name].get("volumes", [])]
    return [(pair[0], pair[1]) for pair in pairs]


def is_bind(source: str) -> bool:
    """A host path (bind mount) rather than a named volume."""
    return source.startswith((".", "/", "~"))


def container_ports(name: str) -> set[int]:
    """The container ports a service publishes."""
    return {int(entry.rsplit(":", 1)[1].split("/")[0]) for entry in SERVICES[name].get("ports", [])}


def command(name: str) -> list[str]:
    """The argv after `campusgw` that a service of our image runs."""
    return SERVICES[name].get("command") or json.loads(instruction("CMD"))


def mounted_file(service: str, target: str) -> Path:
    """The repository file a service mounts at target."""
    sources = [src for src, dst in volumes(service) if dst == target and is_bind(src)]
    assert sources, f"{service} mounts nothing at {target}"
    return (DOCKER / sources[0]).resolve()


def broker_settings(text: str) -> list[tuple[str, str]]:
    """A mosquitto config's effective lines as (option, value), comments and blanks dropped."""
    pairs = [line.strip().split(maxsplit=1) for line in text.splitlines()]
    return [(p[0], p[1] if len(p) > 1 else "") for p in pairs if p and not p[0].startswith("#")]


def broker_conf() -> dict[str, str]:
    """docker/mosquitto.conf as option -> value (its options appear once each)."""
    settings = broker_settings(MOSQUITTO_TEMPLATE.read_text(encoding="utf-8"))
    return {key: value for key, value in settings if key != "log_type"}


@pytest.fixture
def gateway_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """docker/campusgw.toml through the gateway's loader, with no CAMPUSGW_* override of ours."""
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    config = mounted_file("gateway", json.loads(instruction("CMD"))[-1])
    return load_settings(config)


# --- the file itself --------------------------------------------------------------------------


def test_the_vendored_schema_uses_only_keywords_the_validator_checks() -> None:
    assert unknown_keywords(SCHEMA) == set()


def test_compose_file_follows_the_compose_specification() -> None:
    assert Validator(SCHEMA).errors(COMPOSE) == []


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (("services", "gateway", "imagee"), "x", "gateway.imagee: not allowed"),
        (("services", "mosquitto", "ports"), "1883:1883", "ports: '1883:1883' is not of type"),
        (("services", "fleet", "depends_on", "gateway", "condition"), "healthy", "branches"),
        (("services", "influxdb", "healthcheck", "test"), 5, "test: 5 is not of type"),
        (("volumez",), {}, "volumez: not allowed"),
    ],
)
def test_the_schema_check_rejects_a_broken_file(
    path: tuple[str, ...], value: Any, error: str
) -> None:
    broken = json.loads(json.dumps(COMPOSE))
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert error in "\n".join(Validator(SCHEMA).errors(broken))


def test_interpolations_work_without_an_env_file() -> None:
    # Compose replaces $NAME and ${NAME}; `$$` is a literal `$`. Each variable needs a default.
    text = json.dumps(COMPOSE).replace("$$", "")
    found = re.findall(r"\$\{?[^}\s\"]*\}?", text)
    assert [var for var in found if not re.fullmatch(r"\$\{\w+:?-[^}]*\}", var)] == []


# --- services, mounts, ports ------------------------------------------------------------------


def test_every_service_has_an_image_or_a_build_that_exists() -> None:
    for name, svc in SERVICES.items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            context = (DOCKER / svc["build"]["context"]).resolve()
            assert (context / svc["build"]["dockerfile"]).is_file(), name


def test_bind_mounts_exist_and_named_volumes_are_declared_and_used() -> None:
    used = set()
    for name in SERVICES:
        for source, target in volumes(name):
            assert PurePosixPath(target).is_absolute(), (name, target)
            if is_bind(source):
                path = (DOCKER / source).resolve()
                assert path.exists() and path.is_relative_to(REPO), (name, source)
            else:
                used.add(source)
    assert used == set(COMPOSE.get("volumes") or {})


def test_ports_are_published_on_loopback_only() -> None:
    for name, svc in SERVICES.items():
        for entry in svc.get("ports", []):
            assert re.fullmatch(r"127\.0\.0\.1:\d+:\d+(/tcp|/udp)?", entry), (name, entry)


def test_dependencies_exist_and_awaited_health_is_checked() -> None:
    for name, svc in SERVICES.items():
        for other, how in (svc.get("depends_on") or {}).items():
            assert other in SERVICES and other != name, (name, other)
            if how.get("condition") == "service_healthy":
                assert healthcheck(other), f"{name} waits for {other}, which has no healthcheck"


@pytest.mark.parametrize("name", ["mosquitto", "influxdb", "grafana", "gateway", "linkage"])
def test_servers_have_a_healthcheck_on_a_port_they_serve(name: str) -> None:
    check = healthcheck(name)
    assert check, f"{name} has no healthcheck"
    for port in re.findall(r"//127\.0\.0\.1:(\d+)/", " ".join(check)):
        assert int(port) in container_ports(name), (name, port)


def test_only_the_gateway_keeps_the_images_healthcheck() -> None:
    # The image's HEALTHCHECK probes the gateway's API: other subcommands must replace it.
    keeps = [name for name in OURS if healthcheck(name) == image_healthcheck()]
    assert keeps == ["gateway"]


# --- the image --------------------------------------------------------------------------------


def test_image_runs_as_a_non_root_user() -> None:
    user = instruction("USER").split(":")[0]
    assert user not in ("root", "0", "")


def test_image_entry_point_is_the_campusgw_script() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert json.loads(instruction("ENTRYPOINT")) == ["campusgw"]
    assert pyproject["project"]["scripts"]["campusgw"] == "gateway.cli:main"
    assert json.loads(instruction("CMD"))[0] == "run"


def test_image_copies_every_package_and_nothing_the_context_excludes() -> None:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    sources = [s.rstrip("/") for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M)
               for s in line.split()[:-1]]  # fmt: skip
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    for source in sources:
        assert (REPO / source).exists(), source
        assert not any(fnmatch(source, pattern) for pattern in ignored), source
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= set(sources)


def test_image_puts_the_console_where_the_api_looks_for_it() -> None:
    import gateway
    from gateway.api.app import CONSOLE_DIR

    # The Dockerfile places dashboards/console beside the installed gateway package.
    assert Path(gateway.__file__).resolve().parents[1] / "dashboards" / "console" == CONSOLE_DIR
    assert "dashboards/console" in (DOCKER / "Dockerfile").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", OURS)
def test_commands_parse_with_the_gateway_command_line(name: str) -> None:
    args = build_parser().parse_args(command(name))  # argparse exits on a bad command line
    if args.command == "run":
        assert mounted_file(name, str(args.config)).is_file()
    if "host" in vars(args):  # where a simulator listens or connects
        assert args.host in ("0.0.0.0", *SERVICES), (name, args.host)


# --- docker/campusgw.toml ---------------------------------------------------------------------


def test_gateway_config_validates_with_the_gateway_loader(gateway_settings: Settings) -> None:
    # The fixture loaded the file the image's CMD names, as `campusgw check-config` would.
    assert isinstance(gateway_settings, Settings)


def test_gateway_config_reaches_the_broker_service(gateway_settings: Settings) -> None:
    assert gateway_settings.mqtt.host in SERVICES
    broker = SERVICES[gateway_settings.mqtt.host]
    assert "mosquitto" in broker["image"]
    assert gateway_settings.mqtt.port == int(broker_conf()["listener"].split()[0])


def test_gateway_config_urls_name_services_and_ports_they_serve(
    gateway_settings: Settings,
) -> None:
    urls = [str(gateway_settings.influxdb.url)]
    urls += [str(ep.url) for ep in gateway_settings.linkage.endpoints.values()]
    for url in urls:
        parts = urlsplit(url)
        assert parts.hostname in SERVICES, url
        assert parts.port in container_ports(parts.hostname), url
    linkage = build_parser().parse_args(command("linkage"))
    served = {port for _, port in linkage.endpoint}
    assert served == container_ports("linkage")


def test_gateway_api_listens_where_compose_and_the_healthcheck_expect(
    gateway_settings: Settings,
) -> None:
    assert gateway_settings.api.host == "0.0.0.0"
    assert gateway_settings.api.port in container_ports("gateway")
    assert f"127.0.0.1:{gateway_settings.api.port}/healthz" in " ".join(image_healthcheck())


def test_gateway_state_lives_on_a_named_volume(gateway_settings: Settings) -> None:
    workdir = PurePosixPath(instruction("WORKDIR"))
    stores = [src_dst for src_dst in volumes("gateway") if not is_bind(src_dst[0])]
    paths = [
        gateway_settings.store.path,
        gateway_settings.store.registry_path,
        gateway_settings.video_quality.evidence_dir,
    ]
    for path in paths:
        inside = workdir / PurePosixPath(path)
        assert any(inside.is_relative_to(dst) for _, dst in stores), path


# --- Grafana ----------------------------------------------------------------------------------


def strings(node: Any) -> list[str]:
    """Every string value in a parsed YAML document."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def test_grafana_is_provisioned_from_the_repository(gateway_settings: Settings) -> None:
    mounts = {dst: (DOCKER / src).resolve() for src, dst in volumes("grafana") if is_bind(src)}
    grafana = REPO / "dashboards" / "grafana"
    assert mounts["/etc/grafana/provisioning"] == grafana / "provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == grafana / "dashboards"
    env = SERVICES["grafana"]["environment"]
    influx = urlsplit(env["INFLUX_URL"])
    assert influx.hostname == "influxdb" and influx.port in container_ports("influxdb")
    for file in (grafana / "provisioning").glob("*/*.y*ml"):
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        # Grafana expands $NAME and ${NAME} in the values from its environment.
        for var in re.findall(r"\$\{?(\w+)", " ".join(strings(doc))):
            assert var in env, f"{file.name} reads ${var}, not set for the grafana service"
        for provider in doc.get("providers", []):
            path = PurePosixPath(provider["options"]["path"])
            assert any(path.is_relative_to(dst) for dst in mounts), (file.name, path)
        for source in doc.get("datasources", []):
            if source["type"] == "influxdb":
                assert source["database"] == gateway_settings.influxdb.database, file.name


# --- docker/mosquitto.conf --------------------------------------------------------------------


def test_broker_keeps_a_large_queue_on_disk() -> None:
    conf = broker_conf()
    assert int(conf["max_queued_messages"]) >= MIN_QUEUE
    assert conf["persistence"] == "true"
    data = PurePosixPath(conf["persistence_location"])
    stores = [dst for src, dst in volumes("mosquitto") if not is_bind(src)]
    assert any(data.is_relative_to(dst) for dst in stores)
    # The image reads /mosquitto/config/mosquitto.conf: that must be this very file.
    assert mounted_file("mosquitto", "/mosquitto/config/mosquitto.conf") == MOSQUITTO_TEMPLATE
    assert int(conf["listener"].split()[0]) in container_ports("mosquitto")


def test_the_tests_broker_runs_docker_mosquitto_conf_with_only_its_paths_changed(
    tmp_path: Path,
) -> None:
    template = MOSQUITTO_TEMPLATE.read_text(encoding="utf-8")
    rendered = mosquitto_conf(template, 12345, tmp_path, tmp_path / "m.log")
    expected = {
        "listener": "12345 127.0.0.1",
        "persistence_location": f"{tmp_path}/",
        "log_dest": f"file {tmp_path / 'm.log'}",
    }
    production = [(k, expected.get(k, v)) for k, v in broker_settings(template)]
    tests = [(k, v) for k, v in broker_settings(rendered) if k != "user"]  # added when root
    assert tests == production
