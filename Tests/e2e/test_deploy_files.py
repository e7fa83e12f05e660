"""Checks the deployment files without a container engine or a cluster.

- docker/Dockerfile, docker/*.sh, kind/*.yaml, kind/run-test-kind.sh and
  Tests/e2e/tester.py agree on the port (8000), the sandbox root (/app), the
  user (uid/gid 1000), the image name and the file paths they hand each other;
- the kind manifests parse and use the kinds, apiVersions and fields that the
  agent-sandbox CRDs define: a small schema below, written down from the
  v1beta1 CRDs of kubernetes-sigs/agent-sandbox release v0.5.6 (k8s/crds/*.yaml;
  v1beta1 is their storage version, v1alpha1 is deprecated). Set
  AGENT_SANDBOX_CRDS to a folder holding those CRD files to validate against
  the full schemas too, and to check that the schema here still matches them;
- every script passes `bash -n` and shellcheck (skipped when shellcheck is
  not installed; CI installs the Debian package `shellcheck`).

Needs pytest and PyYAML only; it never starts sandboxd.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PYTHON_REQUIREMENTS = ROOT / "docker" / "python-requirements.txt"
PREPARE_SCRIPT = ROOT / "docker" / "prepare-base-images.sh"
DOCKER_TEST_SCRIPT = ROOT / "docker" / "run-test-docker.sh"
KIND_TEST_SCRIPT = ROOT / "kind" / "run-test-kind.sh"
SANDBOX_MANIFEST = ROOT / "kind" / "sandbox-python-kind.yaml"
WARMPOOL_MANIFEST = ROOT / "kind" / "sandbox-template-warmpool.yaml"
# The sandboxd runtime mode (the Go daemon's ports, paths and arguments), checked on its own below.
SANDBOXD_MODE_MANIFEST = ROOT / "kind" / "sandboxd-runtime-template.yaml"
TESTER = ROOT / "Tests" / "e2e" / "tester.py"
SCRIPTS = sorted([*(ROOT / "docker").glob("*.sh"), *(ROOT / "kind").glob("*.sh")])

# What every file must agree on.
PORT = 8000
SANDBOX_ROOT = "/app"
SANDBOX_UID = 1000
SANDBOXD_MODE = {"rest": 8080, "grpc": 9090, "root": "/workspace"}  # the Go daemon's defaults
IMAGE = "sandboxd:latest"
RUNTIME_BASE_IMAGE = "debian:bookworm-slim"
CRD_VERSION = "v0.5.6"  # agent-sandbox release the schema below was taken from

# --------------------------------------------------------------------------
# The agent-sandbox CRD schema (v1beta1, release v0.5.6), reduced to what these
# manifests touch. The notation is the CRDs' own (OpenAPI v3): an object lists
# its properties and required ones; a field named with ANY is defined by the
# CRD but not described further here. As in the API server, an object with
# listed properties accepts no others.

ANY: dict[str, Any] = {}
STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
QUANTITY = {
    "x-kubernetes-int-or-string": True,
    "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
}
INT_OR_STR = {"x-kubernetes-int-or-string": True}


def obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def defined(*names: str) -> dict[str, Any]:
    return {name: ANY for name in names}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def string_map() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": STR}


def enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


SECCOMP_PROFILE = obj({"localhostProfile": STR, "type": STR}, required=("type",))
PROBE = obj(
    {
        **defined("exec", "grpc", "tcpSocket", "terminationGracePeriodSeconds"),
        "httpGet": obj(
            {"host": STR, "httpHeaders": ANY, "path": STR, "port": INT_OR_STR, "scheme": STR},
            required=("port",),
        ),
        "failureThreshold": INT,
        "initialDelaySeconds": INT,
        "periodSeconds": INT,
        "successThreshold": INT,
        "timeoutSeconds": INT,
    }
)
CONTAINER = obj(
    {
        **defined(
            "command", "env", "envFrom", "lifecycle", "resizePolicy", "restartPolicy", "restartPolicyRules",
            "startupProbe", "stdin", "stdinOnce", "terminationMessagePath", "terminationMessagePolicy", "tty",
            "volumeDevices", "workingDir",
        ),
        "name": STR,
        "image": STR,
        "imagePullPolicy": STR,
        "args": array(STR),
        "ports": array(
            obj(
                {"containerPort": INT, "hostIP": STR, "hostPort": INT, "name": STR, "protocol": STR},
                required=("containerPort",),
            )
        ),
        "readinessProbe": PROBE,
        "livenessProbe": PROBE,
        "resources": obj(
            {
                "claims": ANY,
                "limits": {"type": "object", "additionalProperties": QUANTITY},
                "requests": {"type": "object", "additionalProperties": QUANTITY},
            }
        ),
        "securityContext": obj(
            {
                **defined("appArmorProfile", "procMount", "seLinuxOptions", "windowsOptions"),
                "allowPrivilegeEscalation": BOOL,
                "capabilities": obj({"add": array(STR), "drop": array(STR)}),
                "privileged": BOOL,
                "readOnlyRootFilesystem": BOOL,
                "runAsGroup": INT,
                "runAsNonRoot": BOOL,
                "runAsUser": INT,
                "seccompProfile": SECCOMP_PROFILE,
            }
        ),
        "volumeMounts": array(
            obj(
                {
                    **defined("mountPropagation", "recursiveReadOnly", "subPath", "subPathExpr"),
                    "mountPath": STR,
                    "name": STR,
                    "readOnly": BOOL,
                },
                required=("mountPath", "name"),
            )
        ),
    },
    required=("name",),
)
VOLUME = obj(
    {
        **defined(
            "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap", "csi",
            "downwardAPI", "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo",
            "glusterfs", "hostPath", "image", "iscsi", "nfs", "persistentVolumeClaim", "photonPersistentDisk",
            "portworxVolume", "projected", "quobyte", "rbd", "scaleIO", "secret", "storageos", "vsphereVolume",
        ),
        "name": STR,
        "emptyDir": obj({"medium": STR, "sizeLimit": QUANTITY}),
    },
    required=("name",),
)
POD_SPEC = obj(
    {
        **defined(
            "activeDeadlineSeconds", "affinity", "dnsConfig", "dnsPolicy", "ephemeralContainers", "hostAliases",
            "hostIPC", "hostNetwork", "hostPID", "hostUsers", "hostname", "hostnameOverride", "imagePullSecrets",
            "initContainers", "nodeName", "nodeSelector", "os", "overhead", "preemptionPolicy", "priority",
            "priorityClassName", "readinessGates", "resourceClaims", "resources", "restartPolicy",
            "runtimeClassName", "schedulerName", "schedulingGates", "schedulingGroup", "serviceAccount",
            "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace", "subdomain",
            "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints",
        ),
        "automountServiceAccountToken": BOOL,
        "enableServiceLinks": BOOL,
        "containers": array(CONTAINER),
        "securityContext": obj(
            {
                **defined(
                    "appArmorProfile", "fsGroupChangePolicy", "seLinuxChangePolicy", "seLinuxOptions",
                    "supplementalGroups", "supplementalGroupsPolicy", "sysctls", "windowsOptions",
                ),
                "fsGroup": INT,
                "runAsGroup": INT,
                "runAsNonRoot": BOOL,
                "runAsUser": INT,
                "seccompProfile": SECCOMP_PROFILE,
            }
        ),
        "volumes": array(VOLUME),
    },
    required=("containers",),
)
POD_TEMPLATE = obj(
    {"metadata": obj({"annotations": string_map(), "labels": string_map()}), "spec": POD_SPEC},
    required=("spec",),
)
VOLUME_CLAIM_TEMPLATES = array(obj({"metadata": ANY, "spec": ANY}, required=("spec",)))


def resource(spec: dict[str, Any]) -> dict[str, Any]:
    return obj({"apiVersion": STR, "kind": STR, "metadata": {"type": "object"}, "spec": spec, "status": ANY},
               required=("spec",))


SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("agents.x-k8s.io/v1beta1", "Sandbox"): resource(
        obj(
            {
                "operatingMode": enum("Running", "Suspended"),
                "podTemplate": POD_TEMPLATE,
                "service": BOOL,
                "shutdownPolicy": enum("Delete", "Retain"),
                "shutdownTime": STR,
                "volumeClaimTemplates": VOLUME_CLAIM_TEMPLATES,
            },
            required=("podTemplate",),
        )
    ),
    ("extensions.agents.x-k8s.io/v1beta1", "SandboxTemplate"): resource(
        obj(
            {
                "envVarsInjectionPolicy": enum("Allowed", "Overrides", "Disallowed"),
                "networkPolicy": obj({"egress": ANY, "ingress": ANY}),
                "networkPolicyManagement": enum("Managed", "Unmanaged"),
                "podTemplate": POD_TEMPLATE,
                "service": BOOL,
                "volumeClaimTemplates": VOLUME_CLAIM_TEMPLATES,
                "volumeClaimTemplatesPolicy": enum("Disallowed", "Allowed", "Overrides"),
            },
            required=("podTemplate",),
        )
    ),
    ("extensions.agents.x-k8s.io/v1beta1", "SandboxWarmPool"): resource(
        obj(
            {
                "replicas": {"type": "integer", "minimum": 0},
                "sandboxTemplateRef": obj({"name": STR}, required=("name",)),
                "updateStrategy": obj({"type": enum("Recreate", "OnReplenish")}),
            },
            required=("sandboxTemplateRef",),
        )
    ),
    ("extensions.agents.x-k8s.io/v1beta1", "SandboxClaim"): resource(
        obj(
            {
                "additionalPodMetadata": obj({"annotations": string_map(), "labels": string_map()}),
                "env": array(obj({"containerName": STR, "name": STR, "value": STR}, required=("name", "value"))),
                "lifecycle": obj(
                    {
                        "shutdownPolicy": enum("Delete", "DeleteForeground", "Retain"),
                        "shutdownTime": STR,
                        "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                    }
                ),
                "volumeClaimTemplates": VOLUME_CLAIM_TEMPLATES,
                "warmPoolRef": obj({"name": STR}, required=("name",)),
            },
            required=("warmPoolRef",),
        )
    ),
}

_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
}


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Errors of value against an OpenAPI v3 (structural CRD) schema: the subset CRDs use."""
    where = path or "<root>"
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return [f"{where}: {value!r} is not an integer or a string"]
        if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
            return [f"{where}: {value!r} does not match {schema['pattern']}"]
        return []
    expected = schema.get("type")
    if expected:
        python_type = _TYPES[expected]
        if (isinstance(value, bool) and expected in ("integer", "number")) or not isinstance(value, python_type):
            return [f"{where}: expected {expected}, got {type(value).__name__} {value!r}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} > maximum {schema['maximum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            errors.append(f"{where}: length of {value!r} out of bounds")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: required field {name!r} is missing")
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                errors += validate(item, properties[key], child)
            elif isinstance(extra, dict):
                errors += validate(item, extra, child)
            elif properties is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{where}: unknown field {key!r} (the CRD defines {sorted(properties)})")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors += validate(item, schema["items"], f"{path}[{index}]")
    return errors


# --------------------------------------------------------------------------
# reading the files


def manifests(path: pathlib.Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def all_manifests() -> list[tuple[pathlib.Path, dict[str, Any]]]:
    return [(path, doc) for path in (SANDBOX_MANIFEST, WARMPOOL_MANIFEST, SANDBOXD_MODE_MANIFEST)
            for doc in manifests(path)]


def one(kind: str) -> dict[str, Any]:
    """The one manifest of this kind in the legacy-runtime files (sandbox-python-kind, the warm pool)."""
    found = [doc for path, doc in all_manifests() if doc["kind"] == kind and path != SANDBOXD_MODE_MANIFEST]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continuation line"
    result = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        result.append((instruction.upper(), arguments.strip()))
    return result


def dockerfile_global_args() -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults."""
    args = {}
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            break
        if instruction == "ARG":
            key, _, default = arguments.partition("=")
            args[key] = default
    return args


def dockerfile_stages() -> dict[str, dict[str, Any]]:
    """Stage name -> {"from": base, "instructions": [...]}; the last stage is also under "<final>"."""
    global_args = dockerfile_global_args()
    stages: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            words = arguments.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else f"<stage {len(stages)}>"
            current = {"from": base, "instructions": []}
            stages[name] = current
            stages["<final>"] = current
        elif current is not None:
            current["instructions"].append((instruction, arguments))
    return stages


def stage_values(stage: dict[str, Any], instruction: str) -> list[str]:
    return [arguments for name, arguments in stage["instructions"] if name == instruction]


def shell_default(script: pathlib.Path, name: str) -> str:
    """The value a script gives a variable at its first assignment, with ${X:-default} resolved."""
    match = re.search(rf"^\s*(?:readonly\s+)?{name}=(.*)$", script.read_text(), re.MULTILINE)
    assert match, f"{script.name} does not set {name}"
    value = match.group(1).split(" #")[0].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    fallback = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return fallback.group(1) if fallback else value


def containers_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["spec"]["podTemplate"]["spec"]["containers"]


def pod_manifests() -> list[dict[str, Any]]:
    return [doc for _, doc in all_manifests() if "podTemplate" in doc.get("spec", {})]


def legacy_pod_manifests() -> list[dict[str, Any]]:
    return [doc for path, doc in all_manifests() if "podTemplate" in doc.get("spec", {})
            and path != SANDBOXD_MODE_MANIFEST]


# --------------------------------------------------------------------------
# the manifests against the CRDs


def test_manifests_parse_and_have_the_expected_kinds() -> None:
    kinds = sorted(doc["kind"] for _, doc in all_manifests())
    assert kinds == ["Sandbox", "SandboxClaim", "SandboxTemplate", "SandboxTemplate", "SandboxWarmPool"]
    assert [doc["kind"] for doc in manifests(SANDBOX_MANIFEST)] == ["Sandbox"]
    assert [doc["kind"] for doc in manifests(SANDBOXD_MODE_MANIFEST)] == ["SandboxTemplate"]


@pytest.mark.parametrize(
    "path, index",
    [(path, index) for path in (SANDBOX_MANIFEST, WARMPOOL_MANIFEST, SANDBOXD_MODE_MANIFEST)
     for index in range(len(manifests(path)))],
    ids=lambda value: value.name if isinstance(value, pathlib.Path) else str(value),
)
def test_manifest_matches_the_crd_schema(path: pathlib.Path, index: int) -> None:
    doc = manifests(path)[index]
    key = (doc.get("apiVersion"), doc.get("kind"))
    assert key in SCHEMAS, f"{path.name}: {key} is not a v1beta1 agent-sandbox kind"
    assert validate(doc, SCHEMAS[key]) == []
    name = doc.get("metadata", {}).get("name", "")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name), f"bad metadata.name {name!r}"
    assert "namespace" not in doc["metadata"], "run-test-kind.sh picks the namespace"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.update(apiVersion="agents.x-k8s.io/v1alpha2"), "not a v1beta1"),
        (lambda d: d["spec"].pop("podTemplate"), "required field 'podTemplate'"),
        (lambda d: d["spec"].update(replicas=1), "unknown field 'replicas'"),
        (lambda d: containers_of(d)[0]["securityContext"].update(readOnlyRootFileSystem=True), "unknown field"),
        (lambda d: containers_of(d)[0]["ports"][0].update(containerPort="8000"), "expected integer"),
        (lambda d: containers_of(d)[0]["resources"]["limits"].update(memory="2 gigs"), "does not match"),
        (lambda d: d["spec"].update(operatingMode="Paused"), "is not one of"),
    ],
)
def test_the_schema_rejects_broken_manifests(mutate: Any, expected: str) -> None:
    doc = json.loads(json.dumps(manifests(SANDBOX_MANIFEST)[0]))
    mutate(doc)
    key = (doc["apiVersion"], doc["kind"])
    errors = validate(doc, SCHEMAS[key]) if key in SCHEMAS else [f"{key} is not a v1beta1 agent-sandbox kind"]
    assert any(expected in error for error in errors), errors


def _crds_from_env() -> dict[tuple[str, str], dict[str, Any]]:
    folder = os.environ.get("AGENT_SANDBOX_CRDS")
    if not folder:
        pytest.skip("set AGENT_SANDBOX_CRDS to agent-sandbox's k8s/crds folder to check against the full CRDs")
    schemas = {}
    for path in sorted(pathlib.Path(folder).glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = version["schema"]["openAPIV3Schema"]
            if version.get("storage"):
                schemas[(key[1], "storage")] = {"version": version["name"]}
    return schemas


def test_manifests_match_the_full_crds() -> None:
    crds = _crds_from_env()
    for path, doc in all_manifests():
        key = (doc["apiVersion"], doc["kind"])
        assert key in crds, f"{path.name}: no CRD defines {key}"
        assert crds[(doc["kind"], "storage")]["version"] == "v1beta1", f"{doc['kind']}: v1beta1 is not stored"
        assert validate(doc, crds[key]) == [], path.name


def _same_schema(ours: dict[str, Any], theirs: dict[str, Any], path: str) -> list[str]:
    problems = []
    if "type" in ours and ours["type"] != theirs.get("type"):
        problems.append(f"{path}: type {ours['type']} here, {theirs.get('type')} in the CRD")
    if sorted(ours.get("required", [])) != sorted(theirs.get("required", [])):
        problems.append(f"{path}: required {ours.get('required')} here, {theirs.get('required')} in the CRD")
    if "enum" in ours and sorted(ours["enum"]) != sorted(theirs.get("enum", [])):
        problems.append(f"{path}: enum {ours['enum']} here, {theirs.get('enum')} in the CRD")
    if "properties" in ours:
        if sorted(ours["properties"]) != sorted(theirs.get("properties", {})):
            problems.append(f"{path}: fields differ: {sorted(set(ours['properties']) ^ set(theirs['properties']))}")
        for name, child in ours["properties"].items():
            if child and name in theirs.get("properties", {}):
                problems += _same_schema(child, theirs["properties"][name], f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(ours.get(key), dict) and ours[key]:
            problems += _same_schema(ours[key], theirs.get(key) or {}, f"{path}.{key}")
    return problems


def test_the_schema_here_matches_the_full_crds() -> None:
    crds = _crds_from_env()
    for key, schema in SCHEMAS.items():
        assert key in crds, f"no CRD defines {key}"
        theirs = crds[key]
        assert _same_schema(schema["properties"]["spec"], theirs["properties"]["spec"], f"{key[1]}.spec") == []


# --------------------------------------------------------------------------
# the manifests among themselves


def test_every_pod_is_locked_down() -> None:
    for doc in pod_manifests():
        pod = doc["spec"]["podTemplate"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == SANDBOX_UID
        assert pod["securityContext"]["runAsGroup"] == SANDBOX_UID
        (container,) = containers_of(doc)
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["runAsNonRoot"] is True
        assert security.get("runAsUser", SANDBOX_UID) == SANDBOX_UID
        assert not security.get("privileged", False)


def _quantity(value: Any) -> float:
    units = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    number, unit = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value)).groups()
    return float(number) * units[unit]


def test_every_pod_has_requests_within_limits() -> None:
    for doc in pod_manifests():
        (container,) = containers_of(doc)
        requests, limits = container["resources"]["requests"], container["resources"]["limits"]
        for resource_name in ("cpu", "memory"):
            assert resource_name in requests and resource_name in limits, f"{doc['kind']}: {resource_name}"
        for resource_name, request in requests.items():
            if resource_name in limits:
                assert _quantity(request) <= _quantity(limits[resource_name]), f"{doc['kind']}: {resource_name}"


def test_every_pod_serves_port_8000_with_probes_on_get_root() -> None:
    for doc in legacy_pod_manifests():
        (container,) = containers_of(doc)
        ports = {port.get("name"): port["containerPort"] for port in container["ports"]}
        assert list(ports.values()) == [PORT]
        for probe_name in ("readinessProbe", "livenessProbe"):
            http_get = container[probe_name]["httpGet"]
            assert http_get.get("path", "/") == "/", probe_name
            assert ports.get(http_get["port"], http_get["port"]) == PORT, probe_name
            assert http_get.get("scheme", "HTTP") == "HTTP"


def test_every_pod_runs_the_image_with_writable_app_and_tmp() -> None:
    for doc in legacy_pod_manifests():
        pod = doc["spec"]["podTemplate"]["spec"]
        (container,) = containers_of(doc)
        assert container["image"] == IMAGE
        assert container["imagePullPolicy"] in ("IfNotPresent", "Never"), "the image only exists after kind load"
        if "args" in container:
            assert container["args"] == dockerfile_cmd()
        assert "command" not in container, "the image's ENTRYPOINT starts sandboxd"
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
        for mount_path in (SANDBOX_ROOT, "/tmp"):
            assert mount_path in mounts, f"{doc['kind']}: nothing mounted at {mount_path}"
            assert not mounts[mount_path].get("readOnly", False)
            assert "emptyDir" in volumes[mounts[mount_path]["name"]]


def sandboxd_mode_args() -> dict[str, str]:
    """The sandboxd-mode container's `--name=value` arguments, by name."""
    (doc,) = manifests(SANDBOXD_MODE_MANIFEST)
    (container,) = containers_of(doc)
    args = {}
    for arg in container["args"]:
        name, _, value = arg.removeprefix("--").partition("=")
        assert arg.startswith("--") and value, f"expected --name=value, got {arg!r}"
        args[name] = value
    return args


def test_the_sandboxd_mode_template_is_the_go_daemons_pod() -> None:
    """The Go daemon's ports, probes, workspace and arguments (its own flag names), running this image."""
    (doc,) = manifests(SANDBOXD_MODE_MANIFEST)
    pod = doc["spec"]["podTemplate"]["spec"]
    (container,) = containers_of(doc)
    assert container["image"] == IMAGE and "command" not in container
    assert container["imagePullPolicy"] in ("IfNotPresent", "Never")
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"rest": SANDBOXD_MODE["rest"], "grpc": SANDBOXD_MODE["grpc"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/health", "port": SANDBOXD_MODE["rest"]}
    assert container["livenessProbe"]["httpGet"]["port"] == SANDBOXD_MODE["rest"]
    args = sandboxd_mode_args()
    assert args == {"listen-host": "0.0.0.0", "rest-port": str(SANDBOXD_MODE["rest"]),
                    "grpc-port": str(SANDBOXD_MODE["grpc"]), "root-dir": SANDBOXD_MODE["root"],
                    "shutdown-timeout": "10s"}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    for mount_path in (SANDBOXD_MODE["root"], "/tmp"):
        assert mount_path in mounts and not mounts[mount_path].get("readOnly", False)
        assert "emptyDir" in volumes[mounts[mount_path]["name"]]


def test_the_readme_documents_the_flags_the_template_uses() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in sandboxd_mode_args():
        assert f"--{name}" in readme, name


def test_the_warm_pool_serves_the_same_pod_as_the_sandbox() -> None:
    sandbox, template = one("Sandbox"), one("SandboxTemplate")
    assert template["spec"]["podTemplate"]["spec"] == sandbox["spec"]["podTemplate"]["spec"]


def test_the_claim_pool_and_template_reference_each_other() -> None:
    template, pool, claim = one("SandboxTemplate"), one("SandboxWarmPool"), one("SandboxClaim")
    assert pool["spec"]["sandboxTemplateRef"]["name"] == template["metadata"]["name"]
    assert claim["spec"]["warmPoolRef"]["name"] == pool["metadata"]["name"]
    assert pool["spec"].get("replicas", 1) >= 1


# --------------------------------------------------------------------------
# the Dockerfile


def dockerfile_cmd() -> list[str]:
    (cmd,) = stage_values(dockerfile_stages()["runtime"], "CMD")
    return json.loads(cmd)


def test_dockerfile_stages() -> None:
    stages = dockerfile_stages()
    assert stages["<final>"] is stages["runtime"], "the runtime stage must be the image's last stage"
    assert re.fullmatch(r"swift:6\.\d+(\.\d+)?-bookworm", stages["build"]["from"]), stages["build"]["from"]
    assert stages["runtime"]["from"] == RUNTIME_BASE_IMAGE
    # FROM binary-${SANDBOXD_BINARY_FROM}: the build argument picks the binary's stage.
    assert ("FROM", "binary-${SANDBOXD_BINARY_FROM} AS binary") in dockerfile_instructions()
    assert stages["binary"]["from"] == "binary-build", "by default the binary is built in the Swift image"
    assert {"binary-build", "binary-host"} <= set(stages)
    assert dockerfile_global_args().get("SANDBOXD_BINARY_FROM") == "build"

    build = " ".join(stage_values(stages["build"], "RUN"))
    assert "libmicrohttpd-dev" in build
    assert "swift build -c release --static-swift-stdlib --product sandboxd" in build
    assert stage_values(stages["binary-build"], "COPY") == ["--from=build /out/sandboxd /sandboxd"]
    (host_copy,) = stage_values(stages["binary-host"], "COPY")
    assert host_copy.split()[-1] == "/sandboxd"
    assert host_copy.split()[0] == shell_default(DOCKER_TEST_SCRIPT, "STAGED_BINARY")


def test_dockerfile_runtime_stage() -> None:
    runtime = dockerfile_stages()["runtime"]
    run = " ".join(stage_values(runtime, "RUN"))
    for package in ("python3", "libgomp1"):
        assert re.search(rf"\b{re.escape(package)}\b", run), package
    # sandboxd carries libmicrohttpd in its binary (test_linked_libraries.py): the image installs no copy of it.
    assert "libmicrohttpd" not in run
    assert "--no-install-recommends" in run and "rm -rf /var/lib/apt/lists/*" in run
    assert "--no-cache-dir" in run and "--only-binary=:all:" in run
    assert f"useradd --uid {SANDBOX_UID} --gid {SANDBOX_UID}" in run
    assert f"groupadd --gid {SANDBOX_UID}" in run
    assert f"install -d -m 0755 -o {SANDBOX_UID} -g {SANDBOX_UID} {SANDBOX_ROOT}" in run

    assert stage_values(runtime, "USER")[-1] == f"{SANDBOX_UID}:{SANDBOX_UID}"
    assert stage_values(runtime, "WORKDIR")[-1] == SANDBOX_ROOT
    assert stage_values(runtime, "EXPOSE") == [str(PORT)]
    assert [json.loads(e) for e in stage_values(runtime, "ENTRYPOINT")] == [["sandboxd"]]
    cmd = dockerfile_cmd()
    assert cmd[cmd.index("--port") + 1] == str(PORT)
    assert cmd[cmd.index("--root") + 1] == SANDBOX_ROOT
    assert "--from=binary /sandboxd /usr/local/bin/sandboxd" in stage_values(runtime, "COPY")


def test_dockerfile_healthcheck_gets_root_on_port_8000() -> None:
    (healthcheck,) = stage_values(dockerfile_stages()["runtime"], "HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    argv = json.loads(command)
    assert argv[:2] == ["python3", "-c"], "the slim image has no curl"
    code = argv[2]
    assert "urllib.request.urlopen" in code and "http://127.0.0.1:" in code
    assert f"'{PORT}'" in code and "}/'" in code, "GET / on port 8000"
    assert "--timeout=" in options and "--interval=" in options


def test_python_requirements_are_the_reference_stack_pinned() -> None:
    pins = {}
    for line in PYTHON_REQUIREMENTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert re.fullmatch(r"\d+(\.\d+)*(\.post\d+)?", version), f"{line}: pin an exact version"
            pins[name.lower()] = version
    assert {"pandas", "scikit-learn", "lightgbm"} <= set(pins)
    copies = stage_values(dockerfile_stages()["runtime"], "COPY")
    assert any(copy.split()[-2] == "docker/python-requirements.txt" for copy in copies)


# --------------------------------------------------------------------------
# .dockerignore and .gitignore


def _dockerignore_regex(pattern: str) -> str:
    """A .dockerignore pattern as a regex: Go's filepath.Match plus Docker's `**`."""
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return regex


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        regex = _dockerignore_regex(line.lstrip("!").strip().strip("/"))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_sends_only_what_the_dockerfile_copies() -> None:
    sources = []
    for instruction, arguments in dockerfile_instructions():
        words = [word for word in arguments.split() if not word.startswith("--")]
        if instruction == "COPY" and "--from=" not in arguments:
            sources += words[:-1]
    assert sources, "the Dockerfile copies nothing from the context"
    for source in sources:
        probe = source.rstrip("/") + ("/x.swift" if (ROOT / source).is_dir() else "")
        assert not dockerignore_excludes(probe), f".dockerignore excludes {source}"
    for kept_out in (".build/release/sandboxd", ".build-release/release/sandboxd", ".git/config",
                     "Sources/sandboxd/.build/x", "Tests/e2e/tester.py", "kind/run-test-kind.sh"):
        assert dockerignore_excludes(kept_out), f".dockerignore lets {kept_out} in"


def test_gitignore_keeps_build_output_out() -> None:
    lines = [line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()]
    staged = shell_default(DOCKER_TEST_SCRIPT, "STAGED_BINARY")
    assert any(staged.startswith(line.strip("/")) for line in lines if line.startswith("/docker/dist")), lines
    scratch = shell_default(DOCKER_TEST_SCRIPT, "SCRATCH_PATH")
    assert any(fnmatch.fnmatch(scratch, line.strip("/")) for line in lines), f"{scratch} is not gitignored"


# --------------------------------------------------------------------------
# the scripts


def test_docker_test_script_agrees_with_the_image() -> None:
    script = DOCKER_TEST_SCRIPT.read_text()
    assert shell_default(DOCKER_TEST_SCRIPT, "IMAGE") == IMAGE
    assert shell_default(DOCKER_TEST_SCRIPT, "CONTAINER_PORT") == str(PORT)
    assert shell_default(DOCKER_TEST_SCRIPT, "SANDBOX_UID") == str(SANDBOX_UID)
    assert shell_default(DOCKER_TEST_SCRIPT, "TESTER") == str(TESTER.relative_to(ROOT))
    assert '"${TESTER}" 127.0.0.1 "${PORT}"' in script
    assert "--static-swift-stdlib --product sandboxd" in script
    assert "SANDBOXD_BINARY_FROM=host -f docker/Dockerfile" in script
    for podman_flag in ("--runtime runc", "--cgroup-manager=cgroupfs", "--pull=never", "nofile=", "nproc="):
        assert podman_flag in script, podman_flag
    assert "--read-only" in script and "/app:rw" in script and "/tmp:rw" in script
    assert "/proc/1/status" in script and "lightgbm" in script
    assert "trap cleanup EXIT" in script
    # The sandboxd runtime mode: the template's ports and arguments, driven by the SDK's sandboxd mode.
    assert shell_default(DOCKER_TEST_SCRIPT, "SANDBOXD_MODE_REST_PORT") == str(SANDBOXD_MODE["rest"])
    assert shell_default(DOCKER_TEST_SCRIPT, "SANDBOXD_MODE_GRPC_PORT") == str(SANDBOXD_MODE["grpc"])
    assert shell_default(DOCKER_TEST_SCRIPT, "SDK_SANDBOXD_CHECK") == "Tests/e2e/sdk_sandboxd_check.py"
    assert (ROOT / "Tests/e2e/sdk_sandboxd_check.py").is_file()
    for name in sandboxd_mode_args():
        assert f"--{name}=" in script, name


def test_kind_test_script_agrees_with_the_manifests() -> None:
    script = KIND_TEST_SCRIPT.read_text()
    assert shell_default(KIND_TEST_SCRIPT, "AGENT_SANDBOX_VERSION") == CRD_VERSION
    assert shell_default(KIND_TEST_SCRIPT, "RELEASE_URL") == (
        "https://github.com/kubernetes-sigs/agent-sandbox/releases/download/${AGENT_SANDBOX_VERSION}"
    )
    assert "${RELEASE_URL}/sandbox-with-extensions.yaml" in script
    assert shell_default(KIND_TEST_SCRIPT, "IMAGE") == IMAGE
    assert shell_default(KIND_TEST_SCRIPT, "CONTAINER_PORT") == str(PORT)
    assert shell_default(KIND_TEST_SCRIPT, "SANDBOX_UID") == str(SANDBOX_UID)
    assert shell_default(KIND_TEST_SCRIPT, "TESTER") == str(TESTER.relative_to(ROOT))
    assert shell_default(KIND_TEST_SCRIPT, "SANDBOX_MANIFEST") == str(SANDBOX_MANIFEST.relative_to(ROOT))
    assert shell_default(KIND_TEST_SCRIPT, "WARMPOOL_MANIFEST") == str(WARMPOOL_MANIFEST.relative_to(ROOT))
    assert shell_default(KIND_TEST_SCRIPT, "SANDBOX_NAME") == one("Sandbox")["metadata"]["name"]
    assert shell_default(KIND_TEST_SCRIPT, "CLAIM_NAME") == one("SandboxClaim")["metadata"]["name"]
    assert shell_default(KIND_TEST_SCRIPT, "WARMPOOL_NAME") == one("SandboxWarmPool")["metadata"]["name"]
    assert "kind load docker-image" in script and "port-forward" in script
    assert '"${TESTER}" 127.0.0.1 "${port}"' in script
    assert "trap cleanup EXIT" in script


def test_prepare_script_makes_the_runtime_base_image() -> None:
    script = PREPARE_SCRIPT.read_text()
    assert shell_default(PREPARE_SCRIPT, "IMAGE") == RUNTIME_BASE_IMAGE == dockerfile_stages()["runtime"]["from"]
    assert shell_default(PREPARE_SCRIPT, "SUITE") == "bookworm"
    (debootstrap,) = [line for line in script.splitlines() if line.strip().startswith("debootstrap ")]
    assert "--variant=minbase" in debootstrap
    assert "://" not in debootstrap, "use debootstrap's default mirror"
    assert "podman import" in script and "podman image exists" in script


def test_tester_takes_ip_and_port() -> None:
    text = TESTER.read_text()
    assert "sys.argv[1]" in text and "sys.argv[2]" in text


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_script_is_strict_bash(script: pathlib.Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_script_passes_shellcheck(script: pathlib.Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", "--shell=bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_are_scripts_to_check() -> None:
    names = {path.name for path in SCRIPTS}
    assert {"prepare-base-images.sh", "run-test-docker.sh", "run-test-kind.sh"} <= names
