"""The kubelet's live mode: each pod's container runs as a local process on loopback.

    fake_kubernetes.run_pods(launch, claims={"model-artifacts": str(artifact_dir)})

`launch(container)` gets a `Container`: the pod's name, the container as its spec says, its
environment (from `value`, `secretKeyRef` and `fieldRef`, and `envFrom` Secrets), its volume
mounts as host directories, and the loopback port standing for its first containerPort; it returns
the command line and the environment to start. A mount path at the start of an environment value or
of an argument (not of the program, which is the host's) is rewritten to its host directory: a
Secret volume is the Secret's keys written as files (written again when the Secret changes, as the
kubelet's sync does), an emptyDir a fresh directory, a persistentVolumeClaim the directory `claims`
gives for the claim.

Each poll the kubelet looks at each process: running and answering its readinessProbe (httpGet or
tcpSocket on its port; without a probe, running is ready) is Ready; one that exited is reported
with its exit code (lastState.terminated, restartCount + 1, CrashLoopBackOff) and started again on
the next poll. What it prints is the pod's log. A removed pod's process is stopped (SIGTERM, then
SIGKILL). `service_url` reaches a Service's Ready pods (proxy.py). A container the kubelet cannot
set up (a Secret or claim missing) waits with CreateContainerConfigError. Only a pod's first
container runs.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tests.fakes.kubernetes_api.kubelet import Run
from tests.fakes.kubernetes_api.proxy import ServiceProxy

if TYPE_CHECKING:
    from tests.fakes.kubernetes_api.workloads import Workloads

STOP_SECONDS = 5.0
PROBE_SECONDS = 1.0


@dataclass
class Container:
    pod: str
    namespace: str
    spec: dict
    env: dict[str, str]
    mounts: dict[str, str]  # mountPath -> host directory
    port: int


Launch = Callable[[Container], tuple[list[str], dict[str, str]]]


class SetupError(Exception):
    """The container cannot be set up (what the kubelet reports as CreateContainerConfigError)."""


@dataclass
class Process:
    port: int
    root: Path
    popen: subprocess.Popen | None = None
    restarts: int = 0
    exit_code: int | None = None
    down: bool = False  # exited, waiting for its restart
    secrets: dict[str, Path] = field(default_factory=dict)  # Secret name -> its volume's directory


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveKubelet:
    def __init__(self, workloads: Workloads, launch: Launch, claims: dict[str, str]):
        self.workloads = workloads
        self.cluster = workloads.cluster
        self.launch = launch
        self.claims = claims
        self.processes: dict[str, Process] = {}  # pod uid -> its process
        self.proxy = ServiceProxy(self)

    def run(self, pod: dict) -> Run:
        """Start, watch or restart the pod's process; its state as the kubelet reports it."""
        uid = pod["metadata"]["uid"]
        process = self.processes.get(uid)
        if process is None:
            process = self.processes[uid] = Process(
                port=free_port(), root=Path(tempfile.mkdtemp(prefix="pod-"))
            )
        if process.popen is not None and not process.down and process.popen.poll() is not None:
            process.down, process.exit_code = True, process.popen.returncode
            process.restarts += 1
            return Run(failure="CrashLoopBackOff", restarts=process.restarts, exit_code=process.exit_code)
        try:
            if process.popen is None or process.down:
                self._start(pod, process)
            self._refresh_secrets(pod, process)
        except SetupError as error:
            return Run(failure="CreateContainerConfigError", message=str(error), restarts=process.restarts)
        ready = self._probe(pod["spec"]["containers"][0], process.port)
        return Run(started=True, ready=ready, restarts=process.restarts, exit_code=process.exit_code)

    def url(self, uid: str) -> str:
        return f"http://127.0.0.1:{self.processes[uid].port}"

    def stop(self, uid: str) -> None:
        process = self.processes.pop(uid, None)
        if process is None:
            return
        if process.popen is not None and process.popen.poll() is None:
            process.popen.terminate()
            try:
                process.popen.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        shutil.rmtree(process.root, ignore_errors=True)

    def stop_all(self) -> None:
        self.proxy.stop_all()
        for uid in list(self.processes):
            self.stop(uid)

    # --- setting a container up ----------------------------------------------------------------

    def _start(self, pod: dict, process: Process) -> None:
        spec = pod["spec"]["containers"][0]
        mounts = self._mounts(pod, spec, process)
        env = {name: _rewrite(value, mounts) for name, value in self._environment(pod, spec).items()}
        argv, env = self.launch(
            Container(pod["metadata"]["name"], pod["metadata"]["namespace"], spec, env, mounts, process.port)
        )
        program, *args = argv  # the host's program (the image's, as the launcher has it here) ...
        process.popen = subprocess.Popen(
            [program, *(_rewrite(arg, mounts) for arg in args)],  # ... given the container's paths
            env=env,
            cwd=process.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        process.down = False
        uid, name = pod["metadata"]["uid"], spec["name"]
        threading.Thread(target=self._read_output, args=(process.popen, uid, name), daemon=True).start()

    def _read_output(self, popen: subprocess.Popen, uid: str, container: str) -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            with self.cluster.lock:
                self.workloads.write_log(uid, container, (line.rstrip("\n"),))
        popen.stdout.close()

    def _secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        secret = self.cluster.objects.get(("Secret", namespace, name))
        if secret is None:
            raise SetupError(f'secret "{name}" not found')
        return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}

    def _environment(self, pod: dict, spec: dict) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in spec.get("envFrom") or []:
            if "secretRef" not in source:
                raise SetupError("only Secrets are supported in envFrom")
            data = self._secret_data(namespace, source["secretRef"]["name"])
            env.update({source.get("prefix", "") + key: value.decode() for key, value in data.items()})
        fields = {
            "metadata.name": pod["metadata"]["name"],
            "metadata.namespace": namespace,
            "status.podIP": "127.0.0.1",
            "spec.nodeName": pod["spec"].get("nodeName", ""),
        }
        for item in spec.get("env") or []:
            origin = item.get("valueFrom") or {}
            if "secretKeyRef" in origin:
                ref = origin["secretKeyRef"]
                data = self._secret_data(namespace, ref["name"])
                if ref["key"] not in data:
                    raise SetupError(f"couldn't find key {ref['key']} in Secret {namespace}/{ref['name']}")
                env[item["name"]] = data[ref["key"]].decode()
            elif "fieldRef" in origin:
                env[item["name"]] = fields.get(origin["fieldRef"]["fieldPath"], "")
            elif origin:
                raise SetupError(f"{item['name']}: only value, secretKeyRef and fieldRef are supported")
            else:
                env[item["name"]] = item.get("value", "")
        return env

    def _mounts(self, pod: dict, spec: dict, process: Process) -> dict[str, str]:
        volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes") or []}
        mounts = {}
        for mount in spec.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if claim not in self.claims:
                    raise SetupError(f'persistentvolumeclaim "{claim}" not found')
                directory = Path(self.claims[claim])
            else:
                directory = process.root / "volumes" / mount["name"]
                directory.mkdir(parents=True, exist_ok=True)
                if "secret" in volume:
                    process.secrets[volume["secret"]["secretName"]] = directory
                elif "emptyDir" not in volume:
                    raise SetupError(
                        f"volume {mount['name']}: only secret, emptyDir and persistentVolumeClaim"
                    )
            mounts[mount["mountPath"]] = str(directory / mount.get("subPath", ""))
        return mounts

    def _refresh_secrets(self, pod: dict, process: Process) -> None:
        for name, directory in process.secrets.items():
            data = self._secret_data(pod["metadata"]["namespace"], name)
            for key, value in data.items():
                path = directory / key
                if not path.exists() or path.read_bytes() != value:
                    staged = directory / f".{key}.new"
                    staged.write_bytes(value)
                    staged.replace(path)
            for stale in set(p.name for p in directory.iterdir()) - set(data):
                (directory / stale).unlink()

    # --- readiness -----------------------------------------------------------------------------

    def _probe(self, spec: dict, port: int) -> bool:
        probe = spec.get("readinessProbe") or {}
        if "httpGet" in probe:
            path = probe["httpGet"].get("path", "/")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}{path}", timeout=PROBE_SECONDS
                ) as answer:
                    return 200 <= answer.status < 400
            except (urllib.error.URLError, OSError):
                return False
        if "tcpSocket" in probe:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=PROBE_SECONDS).close()
                return True
            except OSError:
                return False
        return True


def _rewrite(value: str, mounts: dict[str, str]) -> str:
    """`value` with a mount path at its start replaced by the mount's host directory."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            return mounts[mount_path] + value[len(mount_path.rstrip("/")) :]
    return value
