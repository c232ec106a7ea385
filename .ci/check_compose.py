#!/usr/bin/env python3
"""Checks the compose files in docker/ for syntax and structure.

The files are add-ons to Immich's own docker-compose.yml, so each one is checked as compose would see
it: merged over a stub of Immich's services (immich-server, immich-machine-learning, redis, database;
names as in Immich's docker/docker-compose.yml). Checks:

- valid YAML (anchors and ``<<`` merge keys resolved), a ``services`` mapping, known top-level keys;
- every service key is a compose service attribute (catches typos such as ``depend_on``);
- every service ends up with ``image`` or ``build``;
- every ``depends_on`` target exists, with a valid condition;
- every named volume a service mounts is declared under ``volumes``;
- ``command``/``entrypoint`` are a string or a list of strings, ``ports`` entries are well formed,
  ``${...}`` interpolations are well formed;
- when a compose CLI is available (``docker compose`` or ``docker-compose``; or the path in
  $DOCKER_COMPOSE), ``config --quiet`` over the stub plus the file, with a throw-away .env.

Usage: check_compose.py [FILE ...]     (default: docker/compose*.yml)
Exits 1 on any finding. Needs PyYAML.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# Immich's services as its docker-compose.yml declares them (v1.137+ through v3.x).
IMMICH_STUB = {
    "services": {
        "immich-server": {"image": "ghcr.io/immich-app/immich-server:release", "env_file": [".env"]},
        "immich-machine-learning": {"image": "ghcr.io/immich-app/immich-machine-learning:release"},
        "redis": {"image": "docker.io/valkey/valkey:8-bookworm"},
        "database": {"image": "ghcr.io/immich-app/postgres:14-vectorchord0.4.3-pgvectors0.2.0"},
    },
    "volumes": {"model-cache": None},
}
# What Immich's .env provides, for the compose CLI check only.
STUB_ENV = {
    "UPLOAD_LOCATION": "./library",
    "DB_DATA_LOCATION": "./postgres",
    "DB_PASSWORD": "postgres",
    "DB_USERNAME": "postgres",
    "DB_DATABASE_NAME": "immich",
    "IMMICH_VERSION": "release",
}

TOP_LEVEL_KEYS = {"version", "name", "services", "volumes", "networks", "configs", "secrets", "include"}
SERVICE_KEYS = set(
    """
    annotations attach blkio_config build cap_add cap_drop cgroup cgroup_parent command configs
    container_name cpu_count cpu_percent cpu_period cpu_quota cpu_rt_period cpu_rt_runtime cpu_shares
    cpus cpuset credential_spec depends_on deploy develop device_cgroup_rules devices dns dns_opt
    dns_search domainname driver_opts entrypoint env_file environment expose extends external_links
    extra_hosts gpus group_add healthcheck hostname image init ipc isolation labels label_file links
    logging mac_address mem_limit mem_reservation mem_swappiness memswap_limit network_mode networks
    oom_kill_disable oom_score_adj pid pids_limit platform ports post_start pre_stop privileged profiles
    provider pull_policy read_only restart runtime scale secrets security_opt shm_size stdin_open
    stop_grace_period stop_signal storage_opt sysctls tmpfs tty ulimits use_api_socket user userns_mode
    uts volumes volumes_from working_dir
    """.split()
)
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
RESTART_POLICIES = re.compile(r"^(no|always|unless-stopped|on-failure(:\d+)?)$")
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, ${VAR+alt}; $$ escapes.
INTERPOLATION = re.compile(r"\$\$|\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[-?+])[^}]*)?\}|\$[A-Za-z_][A-Za-z0-9_]*")
PORT = re.compile(r"^(?:(?:[\w.\-\[\]:]+:)?[\d${}A-Za-z_:\-]+:)?\d+(?:-\d+)?(?:/(?:tcp|udp|sctp))?$")


class Findings:
    """Collects findings as "where: what" lines."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        """Records one finding."""
        self.items.append(f"{where}: {message}")


def walk_strings(node, path: str):
    """Yields (path, string) for every string scalar below node."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk_strings(value, f"{path}[{index}]")


def check_interpolation(doc: dict, where: str, findings: Findings) -> None:
    """Flags a `$` that is not part of a well-formed interpolation or a `$$` escape."""
    for path, text in walk_strings(doc, ""):
        rest = INTERPOLATION.sub("", text)
        if "$" in rest:
            message = f"malformed interpolation (write $$ for a literal $): {text!r}"
            findings.add(f"{where}: {path.lstrip('.')}", message)


def merged(stub: dict, override: dict) -> dict:
    """Compose's merge for what these checks need: override's service keys replace stub's."""
    services = {name: dict(spec) for name, spec in stub["services"].items()}
    for name, spec in (override.get("services") or {}).items():
        services[name] = {**services.get(name, {}), **(spec or {})}
    volumes = {**(stub.get("volumes") or {}), **(override.get("volumes") or {})}
    return {"services": services, "volumes": volumes}


def check_service(name: str, spec: dict, project: dict, where: str, findings: Findings) -> None:
    """Checks one service as merged over the Immich stub."""
    unknown = sorted(key for key in spec if key not in SERVICE_KEYS and not key.startswith("x-"))
    for key in unknown:
        findings.add(where, f"unknown service attribute {key!r}")
    if not spec.get("image") and not spec.get("build"):
        findings.add(where, "neither image nor build is set")
    build = spec.get("build")
    if isinstance(build, dict) and not build.get("context"):
        findings.add(where, "build without context")
    for key in ("command", "entrypoint"):
        value = spec.get(key)
        if value is not None and not (
            isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            findings.add(where, f"{key} must be a string or a list of strings")
    restart = spec.get("restart")
    if restart is not None and not (isinstance(restart, str) and RESTART_POLICIES.match(restart)):
        findings.add(where, f'restart {restart!r} is not a restart policy (quote "no")')
    depends = spec.get("depends_on") or {}
    if isinstance(depends, list):
        depends = {target: {"condition": "service_started"} for target in depends}
    if not isinstance(depends, dict):
        findings.add(where, "depends_on must be a list or a mapping")
        depends = {}
    for target, options in depends.items():
        if target not in project["services"]:
            findings.add(where, f"depends_on {target!r}, which no file defines")
        if target == name:
            findings.add(where, "depends on itself")
        condition = (options or {}).get("condition", "service_started")
        if condition not in DEPENDS_CONDITIONS:
            findings.add(where, f"depends_on {target!r}: unknown condition {condition!r}")
    for port in spec.get("ports") or []:
        text = str(port) if not isinstance(port, dict) else str(port.get("target", ""))
        if not PORT.match(text):
            findings.add(where, f"port {port!r} is not HOST:CONTAINER[/proto]")
    for mount in spec.get("volumes") or []:
        source = mount.get("source") if isinstance(mount, dict) else str(mount).split(":", 1)[0]
        if not source or source.startswith(("/", ".", "~", "$")):
            continue  # bind mount (or interpolated path)
        if source not in project["volumes"]:
            findings.add(where, f"named volume {source!r} is not declared under volumes")
    env_files = spec.get("env_file") or []
    for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
        if not isinstance(entry, (str, dict)):
            findings.add(where, f"env_file entry {entry!r} is neither a path nor a mapping")


def check_file(path: Path, findings: Findings) -> dict | None:
    """Parses and checks one compose file; returns the document, or None when it cannot be read."""
    where = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        findings.add(where, f"invalid YAML: {error}")
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict) or not doc["services"]:
        findings.add(where, "no services mapping")
        return None
    for key in doc:
        if key not in TOP_LEVEL_KEYS and not str(key).startswith("x-"):
            findings.add(where, f"unknown top-level key {key!r}")
    check_interpolation(doc, where, findings)
    project = merged(IMMICH_STUB, doc)
    for name, spec in doc["services"].items():
        if not isinstance(spec, dict):
            findings.add(f"{where}: services.{name}", "service is not a mapping")
            continue
        check_service(name, project["services"][name], project, f"{where}: services.{name}", findings)
    return doc


def compose_cli() -> list[str] | None:
    """The compose v2 command line to use, or None when there is none."""
    explicit = os.environ.get("DOCKER_COMPOSE")
    if explicit:
        return explicit.split()
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone:
        out = subprocess.run([standalone, "version"], capture_output=True, text=True).stdout
        if "v1." not in out and "version 1." not in out:
            return [standalone]
    return None


def check_with_cli(cli: list[str], paths: list[Path], findings: Findings) -> None:
    """Runs `config --quiet` over the Immich stub plus each file, and plus all files together."""
    with tempfile.TemporaryDirectory(prefix="check-compose-") as tmp:
        stub = Path(tmp) / "docker-compose.yml"
        stub.write_text(yaml.safe_dump(IMMICH_STUB, sort_keys=False), encoding="utf-8")
        (Path(tmp) / ".env").write_text("".join(f"{k}={v}\n" for k, v in STUB_ENV.items()), encoding="utf-8")
        # Add-ons are used together (example + zhparser override), and each one alone.
        combos = [[p] for p in paths] + ([paths] if len(paths) > 1 else [])
        for combo in combos:
            args = [*cli, "--project-directory", tmp, "-f", str(stub)]
            for path in combo:
                args += ["-f", str(path)]
            result = subprocess.run([*args, "config", "--quiet"], capture_output=True, text=True)
            label = " + ".join(p.name for p in combo)
            if result.returncode != 0:
                findings.add(f"{' '.join(cli)} config ({label})", result.stderr.strip() or "failed")
            else:
                print(f"ok: {' '.join(cli[-2:] if len(cli) > 1 else cli)} config, Immich stub + {label}")


def main(argv: list[str]) -> int:
    """Checks the given compose files (default docker/compose*.yml); returns the exit status."""
    paths = [Path(a).resolve() for a in argv] or sorted((ROOT / "docker").glob("compose*.yml"))
    if not paths:
        print("no compose files found", file=sys.stderr)
        return 1
    findings = Findings()
    for path in paths:
        before = len(findings.items)
        if check_file(path, findings) is not None and len(findings.items) == before:
            print(f"ok: structure of {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    cli = compose_cli()
    if cli and not findings.items:
        check_with_cli(cli, paths, findings)
    elif not cli:
        print("note: no compose CLI found (docker compose / docker-compose v2); skipped `config` check")
    for item in findings.items:
        print(f"FINDING {item}", file=sys.stderr)
    return 1 if findings.items else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
