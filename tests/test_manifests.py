"""The cluster manifests in cluster/ are valid for the APIs they target and safe to apply.

KubeRay manifests are validated against the CRD schemas of the KubeRay release the project
targets (`shared/kuberay-crds/` beside the clone), made strict the way `kubectl apply` with strict
field validation is: a misspelt or misplaced field fails here instead of being dropped silently
by the API server. The Ray cluster-launcher YAML is checked against the schema Ray ships for
`ray up`. Every YAML file the repository ships must parse. No Ray, no network, no cluster.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
CRD_DIR = REPO.parent / "shared" / "kuberay-crds"
CRD_FILES = {"RayJob": "ray.io_rayjobs.yaml", "RayCluster": "ray.io_rayclusters.yaml"}
KUBERAY_MANIFESTS = {"rayjob.yaml": "RayJob", "raycluster.yaml": "RayCluster"}
LAUNCHER = CLUSTER / "launcher-aws.yaml"
README = CLUSTER / "README.md"

# Directories that hold no shipped files: environments, caches, run outputs.
NOT_SHIPPED = {".git", ".venv", "venv", "runs", "ray_results", "node_modules", "__pycache__",
               ".pytest_cache", ".hypothesis", "build", "dist"}
PUBLIC_SERVICE_TYPES = {"LoadBalancer", "NodePort"}
ALL_INTERFACES = {"0.0.0.0", "::", "[::]"}
CREDENTIAL_NAME = re.compile(r"(^|_)(SECRET|TOKEN|PASSWORD|PRIVATE_KEY|ACCESS_KEY)(_|$)", re.I)
AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
AWS_SECRET_VALUE = re.compile(r"(?i)aws_secret_access_key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{30,}")


# ---------------------------------------------------------------- loading


def load_yaml(path: Path) -> Any:
    """The single YAML document in `path`."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def manifest(name: str) -> dict:
    path = CLUSTER / name
    assert path.is_file(), f"cluster/{name} is missing"
    return load_yaml(path)


def cluster_docs() -> list[tuple[str, dict]]:
    """(file name, document) for every YAML document under cluster/ that parses.

    Tests are parametrized with these at collection, where one broken file would hide every
    test; test_shipped_yaml_parses names the broken file instead.
    """
    docs = []
    for path in sorted(CLUSTER.glob("*.y*ml")):
        with open(path, encoding="utf-8") as f:
            try:
                docs += [(path.name, doc) for doc in yaml.safe_load_all(f) if doc is not None]
            except yaml.YAMLError:
                continue
    return docs


# ---------------------------------------------------------------- strict CRD schemas


def strict_schema(schema: Any) -> Any:
    """A copy of an OpenAPI v3 CRD schema that jsonschema validates like Kubernetes.

    - Objects with `properties` reject unlisted fields (`additionalProperties: false`), as strict
      field validation does, except where the CRD keeps unknown fields on purpose
      (`x-kubernetes-preserve-unknown-fields`).
    - `x-kubernetes-int-or-string` fields (resource quantities, ports) accept an integer or a
      string, whatever else the schema says about their type.
    - `nullable: true` admits null.
    """
    schema = copy.deepcopy(schema)
    _make_strict(schema)
    return schema


def _make_strict(schema: Any) -> None:
    if not isinstance(schema, dict):
        return
    if schema.get("x-kubernetes-int-or-string"):
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema.setdefault("additionalProperties", False)
    for sub in schema.get("properties", {}).values():
        _make_strict(sub)
    for key in ("items", "additionalProperties", "not"):
        _make_strict(schema.get(key))
    for key in ("anyOf", "allOf", "oneOf"):
        for sub in schema.get(key, []):
            _make_strict(sub)


@functools.cache
def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    """A strict validator for `kind` from the served v1 version of its KubeRay CRD."""
    if not CRD_DIR.is_dir():
        pytest.fail(f"KubeRay CRD schemas not found at {CRD_DIR}: the manifests cannot be "
                    f"validated. Check out shared/ beside the repository (it holds kuberay-crds/).")
    # The CRDs are megabytes of YAML: libyaml, where present, loads them 20x faster.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(CRD_DIR / CRD_FILES[kind], encoding="utf-8") as f:
        crd = yaml.load(f, Loader=loader)
    assert crd["spec"]["names"]["kind"] == kind
    served_v1 = [v for v in crd["spec"]["versions"] if v["name"] == "v1" and v.get("served")]
    assert served_v1, f"{CRD_FILES[kind]} serves no ray.io/v1 version"
    schema = strict_schema(served_v1[0]["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def validation_errors(doc: dict) -> list[str]:
    """Every way `doc` violates its CRD, as `path: message` lines (empty when valid)."""
    assert doc.get("apiVersion") == "ray.io/v1", f"apiVersion {doc.get('apiVersion')!r}"
    assert doc.get("kind") in CRD_FILES, f"no CRD schema for kind {doc.get('kind')!r}"
    errors = crd_validator(doc["kind"]).iter_errors(doc)
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


# ---------------------------------------------------------------- walking manifests


def cluster_spec(doc: dict) -> dict:
    """The RayCluster spec of a RayCluster, or the one a RayJob creates."""
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def pod_specs(doc: dict) -> Iterator[tuple[str, dict]]:
    """(group name, pod spec) for the head group and every worker group."""
    spec = cluster_spec(doc)
    yield "head", spec["headGroupSpec"]["template"]["spec"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["groupName"], group["template"]["spec"]


def containers(doc: dict) -> Iterator[tuple[str, dict]]:
    for group, pod in pod_specs(doc):
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            yield f"{group}/{container['name']}", container


def gpu_count(container: dict, kind: str = "limits") -> int:
    return int(str(container.get("resources", {}).get(kind, {}).get("nvidia.com/gpu", 0)))


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) for every mapping value and list item under `node`."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        child = f"{path}.{key}" if path else str(key)
        yield child, value
        yield from walk(value, child)


def ray_image_version(image: str) -> str | None:
    """`2.60.0` for `rayproject/ray:2.60.0-py311-gpu`; None for images that are not Ray's."""
    match = re.fullmatch(r"(?:docker\.io/)?rayproject/ray(?:-ml)?:(\d+\.\d+\.\d+)(?:-.*)?", image)
    return match.group(1) if match else None


# ---------------------------------------------------------------- the validator itself


def test_strict_schema_rejects_unknown_fields_except_where_preserved():
    schema = strict_schema({
        "type": "object",
        "properties": {
            "known": {"type": "string"},
            "open": {"type": "object", "properties": {"a": {"type": "string"}},
                     "x-kubernetes-preserve-unknown-fields": True},
            "quantity": {"x-kubernetes-int-or-string": True, "type": "string"},
        },
    })
    validator = jsonschema.Draft7Validator(schema)
    assert validator.is_valid({"known": "x", "open": {"a": "y", "anything": 1}})
    assert not validator.is_valid({"known": "x", "unknown": 1})
    for quantity in ("1", 1, "500m", "64Gi"):
        assert validator.is_valid({"quantity": quantity}), quantity
    for not_quantity in (True, 1.5, [1], {"n": 1}):
        assert not validator.is_valid({"quantity": not_quantity}), not_quantity


def test_shipped_kuberay_manifests_exist():
    for name, kind in KUBERAY_MANIFESTS.items():
        assert manifest(name)["kind"] == kind, f"cluster/{name} should be a {kind}"


@pytest.mark.parametrize(
    "name, doc",
    [pytest.param(name, doc, id=f"{name}:{doc.get('kind')}")
     for name, doc in cluster_docs() if str(doc.get("apiVersion", "")).startswith("ray.io/")],
)
def test_kuberay_manifest_matches_crd(name, doc):
    errors = validation_errors(doc)
    assert not errors, f"cluster/{name} fails the {doc['kind']} CRD:\n" + "\n".join(errors)


def _node(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def changed(doc: dict, path: tuple, value: Any) -> dict:
    """A copy of `doc` with the field at `path` (keys and list indices) set to `value`."""
    doc = copy.deepcopy(doc)
    _node(doc, path[:-1])[path[-1]] = value
    return doc


def without(doc: dict, path: tuple) -> dict:
    """A copy of `doc` without the field at `path`."""
    doc = copy.deepcopy(doc)
    del _node(doc, path[:-1])[path[-1]]
    return doc


RAYJOB_CLUSTER = ("spec", "rayClusterSpec")
RAYJOB_HEAD = (*RAYJOB_CLUSTER, "headGroupSpec")
RAYJOB_WORKER = (*RAYJOB_CLUSTER, "workerGroupSpecs", 0)
RAYJOB_WORKER_LIMITS = (*RAYJOB_WORKER, "template", "spec", "containers", 0, "resources", "limits")

BROKEN_RAYJOBS = {
    "misspelt spec field": lambda d: changed(d, ("spec", "entryPoint"), "python x.py"),
    "field in the wrong place": lambda d: changed(d, (*RAYJOB_HEAD, "maxReplicas"), 1),
    "unknown container field": lambda d: changed(d, (*RAYJOB_WORKER_LIMITS[:-2], "gpus"), 1),
    "replicas as a string": lambda d: changed(d, (*RAYJOB_WORKER, "minReplicas"), "1"),
    "rayStartParams value not a string": lambda d: changed(
        d, (*RAYJOB_HEAD, "rayStartParams"), {"num-cpus": 0}),
    "quantity neither int nor string": lambda d: changed(
        d, (*RAYJOB_WORKER_LIMITS, "nvidia.com/gpu"), True),
    "worker group without groupName": lambda d: without(d, (*RAYJOB_WORKER, "groupName")),
    "autoscaler version out of enum": lambda d: changed(
        d, (*RAYJOB_CLUSTER, "autoscalerOptions"), {"version": "v3"}),
}


@pytest.mark.parametrize("breakage", list(BROKEN_RAYJOBS))
def test_validator_rejects_broken_manifest(breakage):
    broken = BROKEN_RAYJOBS[breakage](manifest("rayjob.yaml"))
    assert validation_errors(broken), f"a RayJob with a {breakage} passed validation"


@pytest.mark.parametrize("resource, quantity", [
    pytest.param(resource, quantity, id=f"{resource}={quantity!r}")
    for resource, quantity in [("nvidia.com/gpu", 1), ("nvidia.com/gpu", "1"), ("cpu", 8),
                               ("cpu", "500m"), ("memory", 68719476736), ("memory", "64Gi")]
])
def test_quantities_accept_integers_and_strings(resource, quantity):
    rayjob = changed(manifest("rayjob.yaml"), (*RAYJOB_WORKER_LIMITS, resource), quantity)
    assert not validation_errors(rayjob), f"{resource}: {quantity!r} was rejected"


# ---------------------------------------------------------------- what the KubeRay manifests offer


@pytest.fixture(params=list(KUBERAY_MANIFESTS), name="kuberay")
def _kuberay(request) -> tuple[str, dict]:
    return request.param, manifest(request.param)


def test_head_takes_no_work(kuberay):
    name, doc = kuberay
    params = cluster_spec(doc)["headGroupSpec"].get("rayStartParams", {})
    assert params.get("num-cpus") == "0", f"cluster/{name}: head num-cpus must be the string \"0\""


def test_autoscaling_gpu_worker_group(kuberay):
    name, doc = kuberay
    spec = cluster_spec(doc)
    assert spec.get("enableInTreeAutoscaling") is True, f"cluster/{name}: autoscaling is off"
    groups = spec.get("workerGroupSpecs", [])
    for group in groups:
        low, high = group["minReplicas"], group["maxReplicas"]
        assert 0 <= low <= high, f"cluster/{name}: {group['groupName']} min {low} > max {high}"
        assert low <= group.get("replicas", low) <= high, f"cluster/{name}: replicas out of range"
    gpu_groups = [group for group in groups
                  if any(gpu_count(c) > 0 for c in group["template"]["spec"]["containers"])]
    assert gpu_groups, f"cluster/{name}: no worker group requests nvidia.com/gpu"
    for group in gpu_groups:
        for container in group["template"]["spec"]["containers"]:
            requested = container.get("resources", {}).get("requests", {})
            if "nvidia.com/gpu" in requested:  # Kubernetes refuses extended requests != limits
                assert gpu_count(container, "requests") == gpu_count(container), container["name"]


def test_containers_size_their_resources(kuberay):
    """Ray advertises each pod's limits as its resources; without them it guesses from the node."""
    name, doc = kuberay
    for where, container in containers(doc):
        limits = container.get("resources", {}).get("limits", {})
        assert {"cpu", "memory"} <= limits.keys(), f"cluster/{name}: {where} lacks cpu/memory"


def test_s3_credentials_come_from_a_secret(kuberay):
    name, doc = kuberay
    for where, container in containers(doc):
        env = {e["name"]: e for e in container.get("env", [])}
        for required in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert required in env, f"cluster/{name}: {where} lacks {required}"
            assert "secretKeyRef" in env[required].get("valueFrom", {}), (
                f"cluster/{name}: {where} {required} must come from a secretKeyRef")
        for var in env.values():
            if CREDENTIAL_NAME.search(var["name"]):
                assert "value" not in var, f"cluster/{name}: {where} sets {var['name']} literally"


def test_rayjob_runs_a_growth_plan():
    spec = manifest("rayjob.yaml")["spec"]
    entrypoint = spec["entrypoint"].split()
    assert entrypoint[:4] == ["python", "jobs/pretrain.py", "--plan", entrypoint[3]]
    assert entrypoint[3].startswith("jobs/plans/") and entrypoint[3].endswith(".yaml")
    storage = entrypoint[entrypoint.index("--storage") + 1]
    assert storage.startswith("s3://"), storage
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0


def test_rayjob_runtime_env_is_valid_and_holds_no_credentials():
    runtime_env = yaml.safe_load(manifest("rayjob.yaml")["spec"]["runtimeEnvYAML"])
    assert isinstance(runtime_env, dict) and "working_dir" in runtime_env
    env_vars = runtime_env.get("env_vars", {})
    # Ray refuses a runtime env whose env_vars values are not strings.
    assert all(isinstance(v, str) for v in env_vars.values()), env_vars
    leaked = [k for k in env_vars if CREDENTIAL_NAME.search(k)]
    assert not leaked, f"runtimeEnvYAML env_vars carry credentials {leaked}; use the Secret"


def test_secret_named_in_readme_is_the_one_manifests_read():
    read = {value["name"] for name in KUBERAY_MANIFESTS
            for path, value in walk(manifest(name)) if path.endswith(".secretKeyRef")}
    assert len(read) == 1, f"manifests read different Secrets: {sorted(read)}"
    assert f"kubectl create secret generic {read.pop()}" in README.read_text(encoding="utf-8")


def test_no_literal_secrets_in_cluster_files():
    for path in sorted(CLUSTER.iterdir()):
        text = path.read_text(encoding="utf-8")
        assert not AWS_KEY_ID.search(text), f"cluster/{path.name} contains an AWS access key id"
        assert not AWS_SECRET_VALUE.search(text), f"cluster/{path.name} contains an AWS secret key"


# ---------------------------------------------------------------- nothing published outside


def _binds_all_interfaces(text: str) -> bool:
    return bool(re.search(r"dashboard[-_]host[= ]+['\"]?(0\.0\.0\.0|::|\[::\])", text))


@pytest.mark.parametrize("name, doc", [pytest.param(n, d, id=f"{n}:{d.get('kind', 'launcher')}")
                                       for n, d in cluster_docs()])
def test_dashboard_not_exposed(name, doc):
    for path, value in walk(doc):
        if path.endswith(("serviceType", "spec.type")) and value in PUBLIC_SERVICE_TYPES:
            pytest.fail(f"cluster/{name}: {path} is {value}; keep services ClusterIP")
        if path.endswith("enableIngress"):
            assert value is not True, f"cluster/{name}: {path} publishes the dashboard"
        if path.endswith("dashboard-host"):
            assert value not in ALL_INTERFACES, f"cluster/{name}: {path} binds every interface"
        if isinstance(value, str):
            assert not _binds_all_interfaces(value), f"cluster/{name}: {path} binds the dashboard"
    if doc.get("kind") == "Service":
        assert doc.get("spec", {}).get("type", "ClusterIP") not in PUBLIC_SERVICE_TYPES


# ---------------------------------------------------------------- one Ray version everywhere


def test_ray_version_matches_every_image():
    images: list[tuple[str, str]] = []
    expected = manifest("rayjob.yaml")["spec"]["rayClusterSpec"]["rayVersion"]
    for name in KUBERAY_MANIFESTS:
        doc = manifest(name)
        assert cluster_spec(doc)["rayVersion"] == expected, f"cluster/{name}: rayVersion differs"
        images += [(f"{name} {where}", c["image"]) for where, c in containers(doc)]
    launcher = load_yaml(LAUNCHER)
    images += [(f"{LAUNCHER.name} docker.{k}", v) for k, v in launcher.get("docker", {}).items()
               if k.endswith("image")]
    assert images
    for where, image in images:
        assert ray_image_version(image) == expected, f"{where}: image {image} is not Ray {expected}"


def test_ray_version_is_the_one_the_project_installs():
    """The cluster runs the Ray release the client installs (pyproject pins `ray==X.Y.*`): job
    submission needs it, and a pip runtime env built on the image's Ray must not replace it."""
    try:
        installed = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("ray is not installed here, so there is no client version to compare")
    ray_version = manifest("rayjob.yaml")["spec"]["rayClusterSpec"]["rayVersion"]
    assert ray_version.split(".")[:2] == installed.split(".")[:2], (
        f"manifests run Ray {ray_version}, the project installs Ray {installed}")


# ---------------------------------------------------------------- the cluster-launcher YAML


def test_launcher_has_head_without_work_and_gpu_workers():
    config = load_yaml(LAUNCHER)
    required = {"cluster_name", "max_workers", "provider", "available_node_types",
                "head_node_type", "setup_commands", "head_start_ray_commands",
                "worker_start_ray_commands"}
    assert required <= config.keys(), f"missing {sorted(required - config.keys())}"
    assert config["provider"]["type"] == "aws" and config["provider"].get("region")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "the head must advertise CPU: 0"
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    gpu_workers = [t for t in workers if t.get("resources", {}).get("GPU", 0) > 0]
    assert gpu_workers, "no worker type advertises GPUs"
    for worker in workers:
        assert 0 <= worker.get("min_workers", 0) <= worker["max_workers"] <= config["max_workers"]
    assert any("pip install" in c and "raygrow" in c for c in config["setup_commands"])
    assert any("ray start --head" in c for c in config["head_start_ray_commands"])
    assert any("ray start --address" in c for c in config["worker_start_ray_commands"])


def test_launcher_matches_rays_cluster_schema():
    spec = importlib.util.find_spec("ray")  # finds the package without importing Ray
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ray is not installed, so its cluster-launcher schema is not available")
    schema_path = Path(list(spec.submodule_search_locations)[0]) / "autoscaler" / "ray-schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    errors = jsonschema.Draft7Validator(schema).iter_errors(load_yaml(LAUNCHER))
    messages = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
    assert not messages, "\n".join(messages)


# ---------------------------------------------------------------- every shipped YAML parses


def shipped_yaml_files() -> list[Path]:
    """YAML files the repository ships: tracked or addable per git, else a walk of the tree."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
             "--", "*.yaml", "*.yml"],
            cwd=REPO, capture_output=True, check=True, timeout=30,
        ).stdout.decode().split("\0")
        return sorted({REPO / p for p in listed if p and (REPO / p).is_file()})
    except (OSError, subprocess.SubprocessError):
        found = []
        for root, dirs, files in os.walk(REPO):
            dirs[:] = [d for d in dirs if d not in NOT_SHIPPED
                       and not (Path(root, d) / "pyvenv.cfg").exists()]
            found += [Path(root, f) for f in files if f.endswith((".yaml", ".yml"))]
        return sorted(found)


def test_shipped_yaml_list_includes_the_manifests():
    shipped = set(shipped_yaml_files())
    for name in [*KUBERAY_MANIFESTS, LAUNCHER.name]:
        assert CLUSTER / name in shipped, f"cluster/{name} is not among the shipped YAML files"


@pytest.mark.parametrize("path", shipped_yaml_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_yaml_parses(path):
    with open(path, encoding="utf-8") as f:
        try:
            list(yaml.safe_load_all(f))  # a file may hold several documents (---)
        except yaml.YAMLError as error:
            pytest.fail(f"{path.relative_to(REPO)} is not valid YAML: {error}")
