"""The files in deploy/, checked without a Docker daemon or a cluster: linted, validated against
their schemas, and every `flowsync ...` command line in them parsed by the real command line.

deploy/README.md says which check covers which file; keep the two in step.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from sync.app.notify import ATTEMPT_TIMEOUT_S, DELIVERY_BUDGET_S
from sync.app.settings import load_settings
from sync.app.worker import STOP_POLL_S
from sync.cli.commands import cli
from sync.store.migrate import UPGRADE_LOCK_WAIT_S

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
SYSTEMD = sorted((DEPLOY / "systemd").glob("flowsync*"))
BIN = Path(sys.executable).parent
# The oldest Kubernetes whose CronJob has `timeZone` (GA in 1.27), and the newest the package knows.
KUBERNETES_VERSIONS = ["1.27.0", kubernetes_validate.utils.latest_version()]
# What a stop waits for, at most: the worker notices it (STOP_POLL_S), the run writes the batch
# in hand and records itself (seconds), then a due change alert gets its budget plus the attempt
# under way when the budget ends.
STOP_WAITS_S = STOP_POLL_S + DELIVERY_BUDGET_S + ATTEMPT_TIMEOUT_S + 10


def tool(name: str) -> str:
    """A linter of the dev extra, from this virtual environment (or PATH)."""
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[dev]'"
    return str(found)


# --- the Dockerfile and its build context ---------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            instruction, _, arguments = stripped.partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    """hadolint, down to its style rules, has nothing to say about deploy/Dockerfile."""
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_mistake(tmp_path: Path) -> None:
    """The lint above can fail: the same file running as root with a floating base image does."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER root") + "\nFROM python\n")
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "DL3002" in result.stdout  # last USER should not be root
    assert "DL3006" in result.stdout  # always tag the image explicitly


def test_the_image_is_built_as_the_issue_asks() -> None:
    """Multi-stage, a slim base, both server drivers, a non-root user, a health check and `run`."""
    instructions = dockerfile_instructions()
    stages = [arguments for instruction, arguments in instructions if instruction == "FROM"]
    assert len(stages) >= 2
    base = next(arguments for instruction, arguments in instructions if instruction == "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.\d+-slim(-\w+)?", base)
    assert any(
        ".[postgres,mysql]" in arguments for instruction, arguments in instructions if instruction == "RUN"
    )
    user = [arguments for instruction, arguments in instructions if instruction == "USER"]
    assert user
    assert not user[-1].startswith(("root", "0"))
    assert [instruction for instruction, _ in instructions].count("HEALTHCHECK") == 1
    assert ("CMD", '["run"]') in instructions
    assert ("ENTRYPOINT", '["flowsync"]') in instructions
    # Nothing secret in the image: no ENV or ARG names the key, the secret or the database.
    for instruction, arguments in instructions:
        if instruction in ("ENV", "ARG"):
            assert not re.search(r"API_KEY|API_SECRET|DATABASE_URL|AUDIT_KEY", arguments), arguments


def ignored_by_dockerignore(path: str, patterns: list[str]) -> bool:
    """Docker's rule for one path: the last pattern matching it, or one of its parent folders, wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = (
            re.escape(pattern.removeprefix("!").rstrip("/"))
            .replace(r"\*\*/", "(.*/)?")
            .replace(r"\*", "[^/]*")
        )
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def test_the_build_context_holds_what_the_image_copies_and_no_local_secrets() -> None:
    """Every file a COPY needs passes the root .dockerignore; local settings and databases do not."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "COPY" and not arguments.startswith("--from"):
            *sources, _destination = arguments.split()
            copied.extend(sources)
    assert copied
    for source in copied:
        files = (
            [p for p in (ROOT / source).rglob("*") if p.is_file()]
            if (ROOT / source).is_dir()
            else [ROOT / source]
        )
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" not in relative:
                assert not ignored_by_dockerignore(relative, patterns), relative
    for path in (
        "flowsync.toml",
        ".env",
        "flowsync.db",
        ".venv/bin/python",
        ".git/config",
        "deploy/secrets/x",
    ):
        assert ignored_by_dockerignore(path, patterns), path


@pytest.mark.slow
def test_the_files_the_image_copies_are_enough_to_build_flowsync(tmp_path: Path) -> None:
    """The build stage's COPY lines, and nothing else of the repository, build a wheel with the migrations."""
    context = tmp_path / "context"
    for instruction, arguments in dockerfile_instructions():
        if instruction == "COPY" and not arguments.startswith("--from"):
            *sources, _destination = arguments.split()
            for source in sources:
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    context.mkdir(exist_ok=True)
                    shutil.copy2(ROOT / source, context / source)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(tmp_path),
            str(context),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("flowsync-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "sync/cli/commands.py" in names
    assert "sync/migrations/env.py" in names


# --- Compose -----------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_file_matches_the_compose_specification() -> None:
    """check-jsonschema validates compose.yaml against the Compose Specification's schema it ships."""
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_upgrades_the_schema_before_the_worker_starts_and_keeps_secrets_out() -> None:
    """The worker waits for a successful `db upgrade`; no secret is written in the file itself."""
    services = compose()["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"][-2:] == ["db", "upgrade"]
    for name, service in services.items():
        environment = service.get("environment", {})
        assert not any(re.search("SECRET|PASSWORD$|API_KEY|DATABASE_URL", key) for key in environment), name
    assert set(compose()["secrets"]) == {"postgres_password", "flowsync.toml"}
    assert all("file" in secret for secret in compose()["secrets"].values())


def test_the_example_settings_file_is_accepted() -> None:
    """The TOML that compose.yaml mounts as a secret has only keys flowsync knows, with valid values."""
    settings = load_settings({}, {}, DEPLOY / "flowsync.example.toml")
    assert settings.database_url.startswith("postgresql://")


# --- Kubernetes --------------------------------------------------------------------------


def kubernetes_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in KUBERNETES:
        for document in yaml.safe_load_all(path.read_text()):
            yield path, document


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", KUBERNETES, ids=lambda p: p.name)
def test_kubernetes_manifests_validate_strictly(path: Path, version: str) -> None:
    """kubernetes-validate (the API's own schemas, unknown fields refused) accepts each manifest."""
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, version, strict=True)


def test_kubernetes_validation_would_catch_a_misspelt_field() -> None:
    """The check above can fail: a misspelt field is refused."""
    (_, cronjob) = next((p, d) for p, d in kubernetes_documents() if d["kind"] == "CronJob")
    cronjob["spec"]["concurencyPolicy"] = cronjob["spec"].pop("concurrencyPolicy")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cronjob, KUBERNETES_VERSIONS[-1], strict=True)


def by_kind() -> dict[str, dict[str, Any]]:
    return {document["kind"]: document for _, document in kubernetes_documents()}


def pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    spec = document["spec"]
    if document["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template: dict[str, Any] = spec["template"]["spec"]
    return template


def test_kubernetes_workloads_are_as_the_issue_asks() -> None:
    """CronJob: no overlap, a deadline, history limits. Deployment: liveness by `check`. Plus a Job
    for the schema and a Secret example."""
    kinds = by_kind()
    assert set(kinds) == {"CronJob", "Deployment", "Job", "Secret"}
    cronjob = kinds["CronJob"]["spec"]
    assert cronjob["concurrencyPolicy"] == "Forbid"
    assert cronjob["startingDeadlineSeconds"] > 0
    assert cronjob["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0
    assert cronjob["successfulJobsHistoryLimit"] >= 1
    assert cronjob["failedJobsHistoryLimit"] >= 1
    worker = pod_spec(kinds["Deployment"])
    assert worker["containers"][0]["livenessProbe"]["exec"]["command"] == ["flowsync", "check"]
    assert pod_spec(kinds["Job"])["containers"][0]["command"] == ["flowsync", "db", "upgrade"]
    assert kinds["Job"]["spec"]["activeDeadlineSeconds"] > UPGRADE_LOCK_WAIT_S
    for kind in ("CronJob", "Deployment", "Job"):
        pod = pod_spec(kinds[kind])
        assert pod["securityContext"]["runAsNonRoot"] is True, kind
        for container in pod["containers"]:
            for variable in container.get("env", []):
                if re.search("SECRET|API_KEY|DATABASE_URL", variable["name"]):
                    assert "value" not in variable, f"{kind}: {variable['name']} is written inline"


def test_kubernetes_settings_given_inline_are_valid() -> None:
    """The plain FLOWSYNC_* values of each container are accepted by flowsync's own validation."""
    for kind in ("CronJob", "Deployment"):
        for container in pod_spec(by_kind()[kind])["containers"]:
            environ = {v["name"]: v["value"] for v in container.get("env", []) if "value" in v}
            assert environ
            load_settings({}, environ)


# --- How long a stop may take ------------------------------------------------------------


def grace_periods_s() -> dict[str, float]:
    """The time each file gives a stopping flowsync before it is killed."""
    found: dict[str, float] = {}
    for kind in ("CronJob", "Deployment"):
        found[kind] = float(pod_spec(by_kind()[kind])["terminationGracePeriodSeconds"])
    grace = compose()["services"]["worker"]["stop_grace_period"]
    found["compose"] = float(re.fullmatch(r"(\d+)s", grace).group(1))  # type: ignore[union-attr]
    for unit in SYSTEMD:
        if unit.suffix == ".service":
            value = re.search(r"^TimeoutStopSec=(\d+)$", unit.read_text(), re.MULTILINE)
            assert value, unit.name
            found[unit.name] = float(value.group(1))
    return found


def test_every_grace_period_covers_what_a_stop_waits_for() -> None:
    """SIGTERM to kill: long enough for the batch in hand, the run's record and a due change alert."""
    periods = grace_periods_s()
    assert len(set(periods.values())) == 1, periods
    assert all(period >= STOP_WAITS_S for period in periods.values()), (periods, STOP_WAITS_S)


# --- systemd -----------------------------------------------------------------------------


def units_for_verify(tmp_path: Path) -> list[Path]:
    """The units, with ExecStart pointing at this environment's flowsync: verify checks the binary."""
    copies = []
    for unit in SYSTEMD:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/flowsync/bin/flowsync", str(BIN / "flowsync")))
        copies.append(copy)
    return copies


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed on this machine (the units are not verified)",
)


@needs_systemd_analyze
def test_systemd_units_verify_cleanly(tmp_path: Path) -> None:
    """`systemd-analyze verify` loads the three units with no warning (it only warns on unknown keys)."""
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *map(str, units_for_verify(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@needs_systemd_analyze
def test_systemd_verify_would_catch_a_misspelt_key(tmp_path: Path) -> None:
    """The check above can fail: a misspelt hardening key is reported."""
    assert SYSTEMD_ANALYZE is not None
    (worker,) = [unit for unit in units_for_verify(tmp_path) if unit.name == "flowsync.service"]
    worker.write_text(worker.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(worker)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert "ProtectSytem" in result.stderr


def unit_settings(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.mark.parametrize("name", ["flowsync.service", "flowsync-sync.service"])
def test_systemd_services_are_hardened(name: str) -> None:
    """No fixed root user, a read-only system, no privilege gain, no capabilities."""
    unit = unit_settings(name)
    assert unit.get("DynamicUser") == ["yes"] or unit.get("User", ["root"]) != ["root"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert "ExecReload" not in unit  # SIGHUP stops flowsync: a "reload" would end the worker


def test_the_timer_catches_up_and_starts_the_one_shot_service() -> None:
    """Persistent=true runs a sync missed while the machine was down; the service is a oneshot."""
    assert unit_settings("flowsync-sync.timer")["Persistent"] == ["true"]
    assert unit_settings("flowsync-sync.service")["Type"] == ["oneshot"]
    assert unit_settings("flowsync.service")["ExecStart"] == ["/opt/flowsync/bin/flowsync run"]


@needs_systemd_analyze
def test_systemd_rates_the_worker_well_exposed(tmp_path: Path) -> None:
    """`systemd-analyze security --offline` rates the worker's exposure low (below 2.0 of 10)."""
    assert SYSTEMD_ANALYZE is not None
    (worker,) = [unit for unit in units_for_verify(tmp_path) if unit.name == "flowsync.service"]
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(worker)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    if "--offline" in result.stderr:
        pytest.skip(f"this systemd-analyze has no offline security check: {result.stderr.strip()}")
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert level, result.stdout + result.stderr
    assert float(level.group(1)) < 2.0


# --- Every command line, parsed by the real CLI --------------------------------------------


def shell_command(text: str) -> list[str]:
    """The flowsync part of a shell line such as `flowsync check || exit 1`."""
    return shlex.split(re.split(r"\|\||&&|;|\|", text)[0])


CommandLines = list[tuple[str, list[str]]]


def dockerfile_command_lines() -> tuple[list[str], CommandLines]:
    """The image's ENTRYPOINT, and its default command and health check."""
    lines: CommandLines = []
    entrypoint: list[str] = []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "ENTRYPOINT":
            entrypoint = yaml.safe_load(arguments)
        elif instruction == "CMD":
            lines.append(("Dockerfile CMD", entrypoint + yaml.safe_load(arguments)))
        elif instruction == "HEALTHCHECK":
            command = yaml.safe_load(arguments.partition(" CMD ")[2])
            assert command[:2] == ["sh", "-c"]
            lines.append(("Dockerfile HEALTHCHECK", shell_command(command[2])))
    return entrypoint, lines


def compose_command_lines(entrypoint: list[str]) -> CommandLines:
    lines: CommandLines = []
    for name, service in compose()["services"].items():
        if str(service.get("image", "")).startswith("flowsync"):
            lines.append((f"compose {name}", service.get("entrypoint", entrypoint) + service["command"]))
            test = service.get("healthcheck", {}).get("test")
            if test:
                assert test[0] == "CMD-SHELL"
                lines.append((f"compose {name} healthcheck", shell_command(test[1])))
    return lines


def kubernetes_command_lines() -> CommandLines:
    lines: CommandLines = []
    for path, document in kubernetes_documents():
        if document["kind"] in ("CronJob", "Deployment", "Job"):
            for container in pod_spec(document)["containers"]:
                lines.append((path.name, container["command"] + container.get("args", [])))
                probe = container.get("livenessProbe", {}).get("exec")
                if probe:
                    lines.append((f"{path.name} livenessProbe", probe["command"]))
    return lines


def command_lines() -> CommandLines:
    """Every flowsync command line in deploy/, with where it was found."""
    entrypoint, lines = dockerfile_command_lines()
    lines += compose_command_lines(entrypoint) + kubernetes_command_lines()
    for unit in SYSTEMD:
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                lines.append((unit.name, shlex.split(line.removeprefix("ExecStart="))))
    return lines


def quoted_command_lines() -> CommandLines:
    """The `flowsync ...` commands that the comments and deploy/README.md quote."""
    lines: CommandLines = []
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        for quoted in re.findall(r"`(flowsync [^`]*)`", path.read_text()):
            if quoted != "flowsync ...":
                lines.append((f"{path.name} quotes", shlex.split(quoted)))
    return lines


def words(argv: list[str]) -> list[str]:
    """The command's words: neither options, their values with a path, nor the program."""
    return [arg for arg in argv[1:] if not arg.startswith("-") and "/" not in arg]


def parse_command_line(argv: list[str]) -> click.Command:
    """Resolve `argv` to its command and parse its arguments as `flowsync` would, without running it."""
    assert Path(argv[0]).name == "flowsync", argv
    context = cli.make_context("flowsync", argv[1:])
    command: click.Command = cli
    while isinstance(command, click.Group):
        rest = [*context._protected_args, *context.args]
        name, found, rest = command.resolve_command(context, rest)
        assert found is not None
        assert name is not None
        context = found.make_context(name, rest, parent=context)
        command = found
    return command


def test_deploy_files_hold_every_kind_of_command_line() -> None:
    """The collector below finds the worker, the one-shot sync, the upgrade and the health check."""
    found = {
        " ".join(arg for arg in argv[1:] if not arg.startswith("-") and "/" not in arg)
        for _, argv in command_lines()
    }
    assert {"run", "sync", "db upgrade", "check"} <= found


@pytest.mark.parametrize(
    ("where", "argv"),
    command_lines() + quoted_command_lines(),
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_every_command_line_in_deploy_parses_with_the_real_cli(where: str, argv: list[str]) -> None:
    """Each command resolves and its options parse (types and ranges included), as when it runs."""
    command = parse_command_line(argv)
    assert command.name == words(argv)[-1]


@pytest.mark.parametrize(
    "argv",
    [
        ["flowsync", "upgrade"],  # the group is missing
        ["flowsync", "run", "--intervall", "60"],  # a misspelt option
        ["flowsync", "check", "--max-age", "0"],  # out of range (more than 0)
        ["flowsync", "sync", "-q"],  # a global option after the command
    ],
)
def test_a_wrong_command_line_does_not_parse(argv: list[str]) -> None:
    """The check above can fail."""
    with pytest.raises(click.UsageError):
        parse_command_line(argv)
