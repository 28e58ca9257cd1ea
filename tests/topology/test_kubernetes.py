"""Kubernetes: the work pool from deploy/kubernetes/ on a real Prefect server, the retrain
deployment on it (``prefect deploy --pool``), and the job manifest a worker would submit,
rendered by prefect-kubernetes from the pool's template. No cluster needed: what is checked
is what the worker hands to the Kubernetes API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
POOL = "driftloop-kubernetes"

pytestmark = pytest.mark.timeout(240)


def _manifests() -> dict[str, dict]:
    docs = yaml.safe_load_all((K8S / "settings.yaml").read_text())
    return {d["kind"]: d for d in docs}


def test_template_keeps_every_variable_the_worker_knows():
    from prefect_kubernetes.worker import KubernetesWorker

    ours = json.loads((K8S / "base-job-template.json").read_text())
    stock = KubernetesWorker.get_default_base_job_template()
    assert set(stock["variables"]["properties"]) <= set(ours["variables"]["properties"])
    assert set(stock["job_configuration"]) == set(ours["job_configuration"])
    values = yaml.safe_load((K8S / "worker-values.yaml").read_text())
    assert values["worker"]["config"]["workPool"] == POOL
    assert values["worker"]["config"]["type"] == "kubernetes"
    config_map = _manifests()["ConfigMap"]["data"]
    assert config_map["DRIFTLOOP_HOME"] == ours["variables"]["properties"]["home_path"]["default"]
    assert config_map["PREFECT_LOCAL_STORAGE_PATH"].startswith(config_map["DRIFTLOOP_HOME"])


async def _render(api_url: str) -> tuple[dict, dict, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    template = json.loads((K8S / "base-job-template.json").read_text())
    async with get_client() as client:
        await client.create_work_pool(
            WorkPoolCreate(name=POOL, type="kubernetes", base_job_template=template)
        )
        try:
            return await _deploy_and_render(client, api_url)
        finally:  # the session's server is shared: leave no pool, deployment or trigger
            for automation in await client.read_automations():
                if any(getattr(a, "deployment_id", None) for a in automation.actions):
                    await client.delete_automation(automation.id)
            with contextlib.suppress(Exception):
                dep = await client.read_deployment_by_name("retrain/retrain")
                await client.delete_deployment(dep.id)
            await client.delete_work_pool(POOL)


async def _deploy_and_render(client, api_url: str) -> tuple[dict, dict, str]:
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    deploy = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--name", "retrain",
         "--pool", POOL],
        cwd=REPO, env={**os.environ, "PREFECT_API_URL": api_url}, capture_output=True,
        text=True, timeout=180,
    )  # fmt: skip
    assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-2000:]
    deployment = await client.read_deployment_by_name("retrain/retrain")
    assert deployment.work_pool_name == POOL
    pool = await client.read_work_pool(POOL)
    run = await client.create_flow_run_from_deployment(deployment.id)
    flow = await client.read_flow(deployment.flow_id)
    config = await KubernetesWorkerJobConfiguration.from_template_and_values(
        pool.base_job_template, deployment.job_variables or {}
    )
    config.prepare_for_flow_run(run, deployment, flow)
    return config.job_manifest, deployment.model_dump(mode="json"), str(run.id)


def test_retrain_job_manifest_from_the_pool_template(prefect_harness):
    from prefect.settings import PREFECT_API_URL

    manifest, deployment, run_id = asyncio.run(_render(str(PREFECT_API_URL.value())))
    assert manifest["kind"] == "Job" and manifest["metadata"]["namespace"] == "driftloop"
    assert manifest["metadata"]["labels"]["prefect.io/deployment-name"] == "retrain"
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "driftloop:0.1.0"
    assert container["args"] == ["prefect", "flow-run", "execute"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PREFECT__FLOW_RUN_ID"] == run_id
    assert container["envFrom"] == [
        {"configMapRef": {"name": "driftloop-settings"}},
        {"secretRef": {"name": "driftloop-secrets"}},
    ]
    manifests = _manifests()
    (volume,) = pod["volumes"]
    assert (
        volume["persistentVolumeClaim"]["claimName"]
        == manifests["PersistentVolumeClaim"]["metadata"]["name"]
    )
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == manifests["ConfigMap"]["data"]["DRIFTLOOP_HOME"]
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    # the deployment is prefect.yaml's retrain, its limit and trigger kept
    assert deployment["concurrency_limit"] == 1 or deployment["global_concurrency_limit"]
    assert deployment["entrypoint"] == "flows/retrain.py:retrain"
