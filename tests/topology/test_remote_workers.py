"""Remote process workers: the code comes from git, not from the project directory.

The Prefect server listens on the test bridge's root address; a ``git daemon`` there serves a
bare clone of this repository; ``deploy/remote/prefect.yaml`` is deployed (its ``git_clone``
pull step pointing at the daemon). Two process workers run in two network namespaces, each
with its own hostname and with the project directory hidden (a tmpfs over it; only the
environment is mounted back). One train run per worker's queue: each completes, each ran on
its own host, and both models are readable from the server's host (the shared home).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driftloop import prefect_api
from driftloop.stack import LocalStack, StackConfig
from driftloop.supervise import free_port
from tasks import registry
from tasks.settings import Settings
from tests.support.netns import Host, network, wait_for

REPO = Path(__file__).resolve().parents[2]
POOL = "driftloop-remote"
CHEAP = {"dataset": "telco", "trials": 1, "timeout_s": 120, "profile": False,
         "alias": "challenger", "fail_on_quality": False}  # fmt: skip
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@contextlib.contextmanager
def git_daemon(root: Path, listen: str):
    """A bare clone of this repository's HEAD, served read-only over git:// on ``listen``, on a
    free port (not git's 9418: tests run in parallel, and the machine may run a daemon)."""
    bare = root / "driftloop.git"
    port = free_port(listen)
    subprocess.run(["git", "clone", "--quiet", "--bare", str(REPO), str(bare)], check=True,
                   timeout=120)  # fmt: skip
    proc = subprocess.Popen(
        ["git", "daemon", f"--base-path={root}", "--export-all", "--reuseaddr",
         f"--listen={listen}", f"--port={port}", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"git://{listen}:{port}/driftloop.git"
        wait_for(lambda: _ls_remote(url), 30, 0.3, "git daemon up")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _ls_remote(url: str) -> bool:
    done = subprocess.run(["git", "ls-remote", url], capture_output=True, timeout=10)
    return done.returncode == 0


def _hidden_project_worker(host: Host, name: str, queue: str, workdir: Path, env: dict):
    """``prefect worker start`` in ``host``'s namespace, hostname ``name`` (the worker is
    named after the hostname it sees), with the project directory covered by an empty tmpfs
    (the virtualenv, if inside it, mounted back)."""
    venv = Path(sys.prefix)
    keep = workdir / "venv"
    keep.mkdir(parents=True)
    remount = (
        f"mount --bind {venv} {keep}; mount -t tmpfs tmpfs {REPO}; mkdir -p {venv}; "
        f"mount --bind {keep} {venv}; "
        if venv.is_relative_to(REPO)
        else f"mount -t tmpfs tmpfs {REPO}; "
    )
    script = (
        f"set -e; hostname {name}; {remount}test ! -e {REPO}/flows; cd {workdir}; "
        f"exec {sys.executable} -m prefect worker start --pool {POOL} --work-queue {queue} "
        f'--type process --name "driftloop-$(hostname)" --install-policy never'
    )
    argv = host.argv("unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c",
                     script)  # fmt: skip
    log = open(workdir / "worker.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(argv, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True), log  # fmt: skip


async def _start_runs(api_url: str, queues: list[str]) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        async with get_client() as client:
            dep = await client.read_deployment_by_name("train/train-remote")
            ids = []
            for queue in queues:
                run = await client.create_flow_run_from_deployment(
                    dep.id, parameters={"config": CHEAP}, work_queue_name=queue
                )
                ids.append(str(run.id))
            return ids


def test_two_remote_workers_train_from_git_with_the_project_hidden(tmp_path: Path):
    home = tmp_path / "shared-home"
    settings = Settings(home=home)
    names = ["worker-host-a", "worker-host-b"]
    with network(2) as net:
        stack = LocalStack(settings, StackConfig(host=net.gateway, worker=False, deploy=False,
                                                 scheduler=False))  # fmt: skip
        workers: list[tuple[subprocess.Popen, object]] = []
        try:
            stack.up()
            prefect_api.create_process_pool(stack.api_url, POOL)
            with git_daemon(tmp_path / "git", net.gateway) as repo_url:
                worker_env = {
                    **settings.library_env(), "PATH": os.environ["PATH"],
                    "HOME": str(tmp_path), "PREFECT_API_URL": stack.api_url,
                    "PREFECT_LOCAL_STORAGE_PATH": str(home / "prefect-results"),
                    "PREFECT_WORKER_QUERY_SECONDS": "1", "WANDB_MODE": "disabled",
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                }  # fmt: skip
                for i, (host, name) in enumerate(zip(net.hosts, names, strict=True)):
                    env_i = {**worker_env, "PREFECT_HOME": str(tmp_path / f"prefect-{i}")}
                    workers.append(_hidden_project_worker(
                        host, name, f"q-{i}", tmp_path / f"w{i}", env_i
                    ))  # fmt: skip
                # the deployment is made while the workers boot (both are slow starters)
                env = {**stack.env(), "DRIFTLOOP_GIT_REPOSITORY": repo_url}
                env.pop("PYTHONPATH", None)
                deploy = subprocess.run(
                    [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file",
                     "deploy/remote/prefect.yaml", "--name", "train-remote"],
                    cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
                )  # fmt: skip
                assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-2000:]
                run_ids = asyncio.run(_start_runs(stack.api_url, ["q-0", "q-1"]))
                deadline = time.monotonic() + 200
                runs = {}
                while time.monotonic() < deadline:
                    runs = {r: prefect_api.api_call("GET", f"{stack.api_url}/flow_runs/{r}").json()
                            for r in run_ids}  # fmt: skip
                    if all((r["state"] or {}).get("type") in TERMINAL for r in runs.values()):
                        break
                    time.sleep(1)
                logs = "\n".join((tmp_path / f"w{i}" / "worker.log").read_text(errors="replace")
                                 for i in range(2))  # fmt: skip
                states = [(r["state"] or {}).get("type") for r in runs.values()]
                assert states == ["COMPLETED", "COMPLETED"], logs[-4000:]
                run_logs = {
                    r: prefect_api.api_call("POST", f"{stack.api_url}/logs/filter", json={
                        "logs": {"flow_run_id": {"any_": [r]}}, "limit": 200,
                    }).json()
                    for r in run_ids
                }  # fmt: skip
        finally:
            for proc, log in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 15)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=20)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                log.close()
            stack.down()
    # each run's logs name the host it ran on: the worker is named after its own hostname
    for run_id, name, other in zip(run_ids, names, names[::-1], strict=True):
        messages = "\n".join(m["message"] for m in run_logs[run_id])
        assert f"Worker 'driftloop-{name}' submitting flow run" in messages
        assert f"driftloop-{other}" not in messages
    # and both models are readable (checksums verified) from the server's host
    tags = [m["tag"] for m in registry.list_models("telco", settings)]
    assert len(tags) == 2
    for tag in tags:
        assert registry.load_model(tag, settings).booster.num_trees() > 0
