"""Static checks of the deployment files, with real linters and schemas (no Docker daemon):
hadolint on the Dockerfile, the Compose Specification's JSON schema on the compose files,
Kubernetes' own OpenAPI schemas (kubernetes-validate) on deploy/kubernetes/, and
consistency between them and the server's options."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import REPO

from earshot.cli import build_parser

DEPLOY = REPO / "deploy"
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
COMPOSE_CPU = DEPLOY / "docker-compose.cpu.yml"
KUBERNETES = DEPLOY / "kubernetes"
TEMPLATE = DEPLOY / "nginx" / "earshot.conf.template"
KUBERNETES_VERSION = "1.30.0"


def _tool(name: str) -> str:
    """A console script of this venv (the dev extra installs them), else on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not installed: pip install -e '.[dev]'")
    return found


class _ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's merge tags (``!reset``, ``!override``) read as plain values."""


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


for _tag in ("!reset", "!override"):
    _ComposeLoader.add_constructor(_tag, _tagged)


def load_compose(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=_ComposeLoader)  # a SafeLoader subclass
    assert isinstance(data, dict)
    return data


def compose_schema() -> dict[str, Any]:
    from check_jsonschema.builtin_schemas import get_builtin_schema

    schema: dict[str, Any] = get_builtin_schema("vendor.compose-spec")
    return schema


# -- Dockerfile ------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multistage_non_root_with_healthcheck_and_cuda_option() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    assert [name for _, name in stages] == ["sdk", "base", "builder", "runtime"]
    assert "ARG BASE_IMAGE=python:3.11-slim" in text
    assert "nvidia/cuda:12" in text and "cudnn" in text  # the documented CUDA base
    runtime = text[text.index("AS runtime") :]
    assert re.search(r"^USER\s+10001", runtime, re.M), "runtime must not run as root"
    assert re.search(r"^HEALTHCHECK .*\n?.*earshot\.healthcheck", runtime, re.M)
    assert "COPY --from=builder /opt/earshot /opt/earshot" in runtime
    assert "assemble_bundled" in text and "strip --strip-debug" in text
    assert re.search(r'^ENTRYPOINT \["earshot"\]', runtime, re.M)


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "allow-list: everything is ignored unless named"
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", DOCKERFILE.read_text(), re.M)
    for sources in copied:
        for source in sources.split():
            assert any(source == k or source.startswith(k + "/") for k in kept), source
            assert (REPO / source).exists(), source


def test_the_builder_stage_context_builds_the_package(tmp_path: Path) -> None:
    """What the builder stage COPYs from the context (plus the npm stage's @msgpack) is
    enough to build the wheel, with the JS SDK packaged in: the image's ``pip install .``."""
    context = tmp_path / "context"
    builder = DOCKERFILE.read_text().split(" AS builder", 1)[1].split(" AS runtime", 1)[0]
    # Every COPY mirrors its source's path under WORKDIR /src.
    for sources, _ in re.findall(r"^COPY\s+(?!--from)(.+)\s+(\S+)$", builder, re.M):
        for source in sources.split():
            destination = context / source
            if (REPO / source).is_dir():
                shutil.copytree(
                    REPO / source, destination, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / source, destination)
    msgpack = REPO / "client_js" / "node_modules" / "@msgpack"
    if msgpack.is_dir():
        shutil.copytree(msgpack, context / "client_js" / "node_modules" / "@msgpack")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", ".", "-w", str(tmp_path)],
        cwd=context,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wheel = next(tmp_path.glob("earshot-*.whl"))
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"earshot/healthcheck.py", "earshot/cli.py", "earshot/model_store.py"} <= names


def test_healthcheck_module_exits_nonzero_without_a_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from earshot import healthcheck
    from earshot.server_process import free_port

    monkeypatch.setenv("EARSHOT_PORT", str(free_port()))
    assert healthcheck.main([]) == 1


# -- docker compose -----------------------------------------------------------------------


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_CPU], ids=lambda p: p.name)
def test_compose_files_match_the_compose_spec_schema(path: Path) -> None:
    import jsonschema

    jsonschema.validate(load_compose(path), compose_schema())


def test_compose_file_passes_check_jsonschema() -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_stack_has_the_production_layout() -> None:
    services = load_compose(COMPOSE)["services"]
    assert set(services) >= {"nginx", "earshot", "worker", "redis", "prometheus", "grafana"}
    earshot, worker, nginx = services["earshot"], services["worker"], services["nginx"]
    assert earshot["command"] == ["serve"] and worker["command"] == ["worker"]
    assert str(earshot["deploy"]["replicas"]).startswith("${EARSHOT_REPLICAS")
    gpu = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert earshot["environment"]["EARSHOT_JOBS"] == worker["environment"]["EARSHOT_JOBS"]
    assert earshot["environment"]["EARSHOT_JOBS"].startswith("redis://redis:6379")
    # nginx renders the project's one config; every variable in it is given a value.
    template_mount = next(v for v in nginx["volumes"] if "earshot.conf.template" in v)
    source = template_mount.split(":")[0]
    assert (DEPLOY / source).resolve() == TEMPLATE
    needed = set(re.findall(r"\$\{(NGINX_[A-Z_]+)\}", TEMPLATE.read_text()))
    assert needed <= set(nginx["environment"]), needed - set(nginx["environment"])
    # Everything mounted from the repository exists.
    for service in services.values():
        for volume in service.get("volumes", []):
            if volume.startswith("."):
                assert (DEPLOY / volume.split(":")[0]).exists(), volume


def test_compose_prometheus_scrapes_replicas_and_grafana_gets_the_dashboard() -> None:
    prometheus = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "earshot")
    assert job["dns_sd_configs"][0]["names"] == ["earshot"]
    assert job["metrics_path"] == "/metrics"
    dashboard = json.loads((DEPLOY / "grafana" / "earshot-dashboard.json").read_text())
    assert dashboard["panels"]
    provider = yaml.safe_load(
        (DEPLOY / "compose" / "grafana" / "provisioning" / "dashboards" / "earshot.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_serve_option_has_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The images are configured by EARSHOT_* variables only: set one for every option of
    ``serve`` and each must become that option's default."""

    def serve_options() -> list[argparse.Action]:
        sub = next(a for a in build_parser()._actions if a.dest == "command")
        serve = sub.choices["serve"]  # type: ignore[index]
        return [a for a in serve._actions if a.option_strings and a.dest != "help"]

    expected: dict[str, object] = {}
    for action in serve_options():
        if action.nargs == 0:  # a flag
            raw, value = "1", True
        elif action.choices:
            choices = list(action.choices)
            value = choices[-1] if choices[-1] != action.default else choices[0]
            raw = str(value)
        elif action.type in (int, float):
            raw, value = "7", action.type("7")
        elif callable(action.type):
            raw = "/tmp/earshot-env-sample"
            value = action.type(raw)
        else:
            raw, value = "env-sample", "env-sample"
        monkeypatch.setenv(f"EARSHOT_{action.dest.upper()}", raw)
        expected[action.dest] = value
    args = build_parser().parse_args(["serve"])
    missing = [
        f"--{dest.replace('_', '-')} (EARSHOT_{dest.upper()})"
        for dest, value in expected.items()
        if getattr(args, dest) != value
    ]
    assert not missing, f"options that ignore their environment variable: {missing}"


# -- Kubernetes ---------------------------------------------------------------------------


def kubernetes_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((f"{path.name}:{document['kind']}", document))
    return documents


@pytest.mark.parametrize(
    "document", [d for _, d in kubernetes_documents()], ids=[i for i, _ in kubernetes_documents()]
)
def test_kubernetes_manifests_match_the_kubernetes_schemas(document: dict[str, Any]) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kubernetes_server_probes_drains_and_autoscales() -> None:
    documents = dict(kubernetes_documents())
    deployment = documents["earshot.yaml:Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e for e in container["env"]}
    drain = float(env["EARSHOT_DRAIN_TIMEOUT"]["value"])
    assert pod["terminationGracePeriodSeconds"] > drain + 5  # preStop sleep + drain fit
    assert env["EARSHOT_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert pod["securityContext"]["runAsNonRoot"] is True
    hpa = documents["hpa.yaml:HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    metrics = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]}
    assert metrics == {"earshot_sessions_active", "earshot_engine_busy_ratio"}
    # The custom metrics are series the server really exports.
    from earshot.metrics import Metrics

    exported = {family.name for family in Metrics().registry.collect()}
    assert metrics <= exported
    nginx = documents["nginx.yaml:Deployment"]["spec"]["template"]["spec"]["containers"][0]
    needed = set(re.findall(r"\$\{(NGINX_[A-Z_]+)\}", TEMPLATE.read_text()))
    assert needed <= {e["name"] for e in nginx["env"]}


# -- secrets, protected mode, Redis limits ------------------------------------------------
SECRET_VARIABLES = ("EARSHOT_API_KEYS", "EARSHOT_API_KEYS_FILE")


def _image_host() -> str:
    found = re.search(r"EARSHOT_HOST=(\S+)", DOCKERFILE.read_text())
    assert found, "the image sets EARSHOT_HOST"
    return found.group(1)


def assert_keys_required(env: dict[str, Any], secret_source: Any) -> None:
    """A server template must take its API keys from a secret and must not switch
    protected mode off: as it is, ``earshot serve`` in the image (``EARSHOT_HOST``
    0.0.0.0) starts only because keys are configured."""
    from earshot.access import protected_mode_refusal

    assert "EARSHOT_NO_AUTH" not in env, "a template must not turn protected mode off"
    host = str(env.get("EARSHOT_HOST", _image_host()))
    keys = [name for name in SECRET_VARIABLES if name in env]
    assert protected_mode_refusal(host, False, False), "the template's address is public"
    assert keys, f"no API keys configured (one of {SECRET_VARIABLES}): the server won't start"
    for name in keys:
        assert secret_source(name, env[name]), f"{name} must come from a secret"
    assert protected_mode_refusal(host, True, False) is None


def _from_kubernetes_secret(name: str, value: Any) -> bool:
    ref = value.get("valueFrom", {}).get("secretKeyRef") if isinstance(value, dict) else None
    return bool(ref) and ref.get("name") == "earshot-secrets" and not ref.get("optional")


def _env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def test_kubernetes_server_takes_keys_and_token_secret_from_a_secret() -> None:
    documents = dict(kubernetes_documents())
    container = documents["earshot.yaml:Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = _env_of(container)
    assert_keys_required(env, _from_kubernetes_secret)
    assert _from_kubernetes_secret("EARSHOT_TOKEN_SECRET", env["EARSHOT_TOKEN_SECRET"])
    # The proxy's LoadBalancer is public: the servers behind it must not be open.
    assert documents["nginx.yaml:Service"]["spec"]["type"] == "LoadBalancer"


def test_a_server_template_without_keys_fails_the_check() -> None:
    documents = dict(kubernetes_documents())
    container = documents["earshot.yaml:Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = _env_of(container)
    without = {k: v for k, v in env.items() if k not in SECRET_VARIABLES}
    with pytest.raises(AssertionError, match="no API keys"):
        assert_keys_required(without, _from_kubernetes_secret)
    with pytest.raises(AssertionError, match="protected mode"):
        assert_keys_required({**env, "EARSHOT_NO_AUTH": {"value": "1"}}, _from_kubernetes_secret)
    plain = {**without, "EARSHOT_API_KEYS": {"name": "EARSHOT_API_KEYS", "value": "esk_x" * 8}}
    with pytest.raises(AssertionError, match="from a secret"):
        assert_keys_required(plain, _from_kubernetes_secret)


def test_kubernetes_redis_is_bounded_password_protected_and_fenced() -> None:
    documents = dict(kubernetes_documents())
    pod = documents["redis.yaml:Deployment"]["spec"]["template"]["spec"]
    redis = pod["containers"][0]
    args = redis["args"]

    def arg(flag: str) -> str:
        return str(args[args.index(flag) + 1])

    assert arg("--maxmemory-policy") == "noeviction"
    maxmemory = arg("--maxmemory")
    assert maxmemory.endswith("gb")
    limit = redis["resources"]["limits"]["memory"]
    assert limit.endswith("Gi") and float(maxmemory[:-2]) < float(limit[:-2])
    assert arg("--requirepass") == "$(REDIS_PASSWORD)"
    redis_env = _env_of(redis)
    password = redis_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert redis_env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == password  # the probe
    # Servers and workers use that same password.
    for name in ("earshot.yaml:Deployment", "worker.yaml:Deployment"):
        container = documents[name]["spec"]["template"]["spec"]["containers"][0]
        env = _env_of(container)
        assert env["EARSHOT_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == password, name
        assert "@" not in env["EARSHOT_JOBS"]["value"], "no password in the URL"
    # Only Earshot's servers and workers may reach Redis.
    policy = documents["redis.yaml:NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == pod_labels("redis.yaml:Deployment")
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}  # no namespaceSelector/ipBlock: this namespace only

    def admitted(labels: dict[str, str]) -> bool:
        return all(
            labels.get(e["key"]) in e["values"] for e in peer["podSelector"]["matchExpressions"]
        )

    assert admitted(pod_labels("earshot.yaml:Deployment"))
    assert admitted(pod_labels("worker.yaml:Deployment"))
    assert not admitted(pod_labels("nginx.yaml:Deployment"))
    assert not admitted({"app.kubernetes.io/name": "something-else"})


def pod_labels(name: str) -> dict[str, str]:
    labels: dict[str, str] = dict(kubernetes_documents())[name]["spec"]["template"]["metadata"][
        "labels"
    ]
    return labels


def test_compose_servers_take_keys_and_secrets_from_compose_secrets() -> None:
    compose = load_compose(COMPOSE)
    secrets = compose["secrets"]
    for secret in secrets.values():
        assert secret["file"].startswith("./secrets/")
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "/deploy/secrets/" in ignored, "secret files must never be committed"
    services = compose["services"]
    earshot, worker, redis = services["earshot"], services["worker"], services["redis"]
    env = earshot["environment"]

    def mounted(service: dict[str, Any]) -> Any:
        return lambda name, path: (
            str(path).startswith("/run/secrets/")
            and path.rsplit("/", 1)[1] in service["secrets"]
            and path.rsplit("/", 1)[1] in secrets
        )

    assert_keys_required(env, mounted(earshot))
    assert mounted(earshot)("", env["EARSHOT_TOKEN_SECRET_FILE"])
    for service in (earshot, worker):
        assert mounted(service)("", service["environment"]["EARSHOT_REDIS_PASSWORD_FILE"])
    command = " ".join(redis["command"])
    assert "--maxmemory-policy noeviction" in command and "--maxmemory " in command
    assert '--requirepass "$$(cat /run/secrets/redis_password)"' in command
    assert "redis_password" in redis["secrets"]
    assert "redis_password" in " ".join(redis["healthcheck"]["test"])


def test_compose_server_without_keys_fails_the_check() -> None:
    earshot = load_compose(COMPOSE)["services"]["earshot"]
    env = {k: v for k, v in earshot["environment"].items() if k not in SECRET_VARIABLES}
    with pytest.raises(AssertionError, match="no API keys"):
        assert_keys_required(env, lambda name, value: True)


def _docker_runs(text: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if re.match(r"\s*docker run ", line)]


def test_documented_docker_runs_of_the_server_start() -> None:
    """The image listens on 0.0.0.0, so ``docker run`` of ``serve`` without keys would be
    refused by protected mode: every documented one gives keys or ``EARSHOT_NO_AUTH``."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    runs = [(p.name, run) for p in pages for run in _docker_runs(p.read_text())]
    serves = [
        (page, run)
        for page, run in runs
        if re.search(r"earshot:\w+(\s+serve\b.*)?$", run.split("#")[0].strip())
    ]
    assert serves, "the docs show how to run the image"
    for page, run in serves:
        assert re.search(r"EARSHOT_(API_KEYS(_FILE)?=|NO_AUTH=1)", run), f"{page}: {run}"
