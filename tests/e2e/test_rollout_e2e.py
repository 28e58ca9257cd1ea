"""Progressive delivery end to end: a real `driftloop serve` with 2 workers, a real Prefect
server (the session harness), Telco rows replayed with their true labels, and the rollout flow
run look after look as its schedule would run it:

- a canary whose model is truly worse is rolled back; a shadow of the same model is rolled back
  on paired rows; a truly better canary walks the ramp and is promoted;
- no request fails at any step; every worker serves each new split within 5 s of the index
  write; an entity gets the same arm across requests and workers.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime

import httpx
import pytest

from driftloop.supervise import free_port
from flows.rollout import RolloutRunConfig, rollout
from schemas import load_dataset
from tasks import events, registry
from tasks.features import FeatureSpec
from tasks.rollout import experiment
from tasks.rollout.config import GuardrailConfig, RolloutConfig
from tasks.rollout.routing import Router
from tasks.settings import Settings
from tests.support.models import save_tiny, train_tiny
from tests.support.server import Server, make_home
from tests.support.telco import telco_frame

pytestmark = pytest.mark.e2e
CONVERGE_S = 5.0
PER_LOOK = 700  # answered records between two looks
# small samples so that each experiment decides in a few looks; the guardrails are opened wide:
# on a loaded 2-core machine a p99 latency ratio is noise, and this test is about the test
GUARDS = GuardrailConfig(max_p99_latency_ratio=100, max_score_ks=1.0, min_requests=50)
CANARY = RolloutConfig(mode="canary", ramp=(0.25, 0.5, 1.0), min_labels=150,
                       max_sample=3_000, guardrails=GUARDS)  # fmt: skip
SHADOW = CANARY.model_copy(update={"mode": "shadow"})
RUN = RolloutRunConfig(dataset="telco")


class Replay:
    """Two client threads replaying Telco records (1-3 per request, new connections now and
    then so both workers answer); every answer and every failure is kept."""

    def __init__(self, url: str, records: list[dict]) -> None:
        self.url, self.records = url, records
        self.answers: list[tuple[float, dict]] = []  # (time answered, prediction)
        self.failures: list[str] = []
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(k,)) for k in range(2)]

    def __enter__(self) -> Replay:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def _run(self, k: int) -> None:
        i = k * 7919
        while not self._stop.is_set():
            with httpx.Client(base_url=self.url, timeout=30) as client:
                for _ in range(20):
                    n = 1 + i % 3
                    batch = [self.records[(i + j) % len(self.records)] for j in range(n)]
                    i += n
                    try:
                        resp = client.post("/predict", json={"records": batch})
                    except httpx.HTTPError as exc:
                        with self._lock:
                            self.failures.append(repr(exc))
                        continue
                    now = time.time()
                    with self._lock:
                        if resp.status_code != 200:
                            self.failures.append(f"{resp.status_code} {resp.text[:200]}")
                        else:
                            self.answers += [(now, p) for p in resp.json()["predictions"]]

    def since(self, index: int) -> list[tuple[float, dict]]:
        with self._lock:
            return self.answers[index:]

    def wait_for(self, start: int, n: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.answers) - start < n:
            assert time.monotonic() < deadline, f"only {len(self.answers) - start} answers"
            time.sleep(0.1)
        return [p for _, p in self.since(start)]


@pytest.fixture(scope="module")
def world(prefect_harness):
    ds = load_dataset("telco")
    frame = telco_frame()
    fspec = FeatureSpec.from_dataset(ds)
    train, replay = frame.head(2000), frame.slice(2000)
    home = make_home("rollout")
    settings = Settings(home=home).ensure_dirs()
    tags = {
        "good": save_tiny(train_tiny(train, fspec, leaves=15, rounds=60), fspec, settings, "good"),
        "weak": save_tiny(train_tiny(train, fspec, leaves=2, rounds=2), fspec, settings, "weak"),
    }
    registry.set_alias("telco", registry.CHAMPION, tags["good"], settings=settings)
    labels = dict(zip(replay["customerID"], (replay["Churn"] == "Yes").cast(float), strict=True))
    server = Server(home, free_port(), workers=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLOOP_HOME", str(home))
        try:
            server.wait_ready()
            with Replay(server.url, replay.drop("Churn").to_dicts()) as load:
                yield server, settings, tags, labels, load
        finally:
            server.stop()


def _label(server: Server, answers: list[dict], labels: dict[str, float]) -> None:
    items = [{"request_id": p["request_id"], "label": labels[p["id"]]} for p in answers]
    for lo in range(0, len(items), 5_000):
        resp = server.client.post("/feedback", json={"feedback": items[lo : lo + 5_000]})
        assert resp.status_code == 200, resp.text


def _workers_on(
    server: Server, split: tuple[str, float] | None, since: float, timeout: float = 3 * CONVERGE_S
) -> float:
    """Poll /models over new connections until two workers report ``split`` (experiment id,
    share); return the latest worker's switch time after ``since`` (its own clock)."""
    seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"workers on {split}: only {sorted(seen)}"
        m = httpx.post(f"{server.url}/models", json={}, timeout=10).json()
        now_on = None if m["split"] is None else (m["split"]["experiment"], m["split"]["share"])
        if now_on == split:
            switched = m["split_since"] and datetime.fromisoformat(m["split_since"]).timestamp()
            seen[m["worker"]] = (switched or since) - since
    return max(seen.values())


def _look(server, settings, labels, load, start: int) -> tuple[dict, int]:
    """Label what was answered since ``start``, wait for the logs' flush, run one look."""
    answers = load.wait_for(start, PER_LOOK)
    _label(server, answers, labels)
    time.sleep(1.5)  # both workers' prediction and feedback logs flush every 0.5 s
    return rollout(config=RUN), start + len(answers)


def _run_until_decided(world, config: RolloutConfig, challenger: str) -> list[dict]:
    """Start a rollout, look until it ends; check each split change reaches both workers."""
    server, settings, tags, labels, load = world
    started = experiment.start("telco", challenger, config, reason="e2e")
    records, start = [], len(load.answers)
    for _ in range(8):
        record, start = _look(server, settings, labels, load, start)
        records.append(record)
        moved = record["share_after"] != record["share_before"] or record["action"] != "continue"
        if moved:
            written = settings.alias_index.stat().st_mtime
            split = (started.id, record["share_after"]) if record["action"] == "advance" else None
            assert _workers_on(server, split, written) <= CONVERGE_S
            _check_routing(load, started, split, time.time())
        if record["action"] not in ("continue", "advance"):
            return records
    raise AssertionError(f"no decision after 8 looks: {[r['explanation'] for r in records]}")


def _check_routing(load: Replay, started, split, after: float) -> None:
    """Every answer after both workers were seen on the split follows it: the router's arm
    for the entity (sticky by id), or the champion once the experiment ended."""
    time.sleep(1.5)
    router = Router(started.salt, split[1]) if split else None
    recent = [p for t, p in load.since(0) if t > after]
    assert recent, "no traffic after the switch"
    for p in recent:
        expected = router.arm(p["id"]) if router else "champion"
        assert p["arm"] == expected, (p, split)


def test_a_truly_worse_canary_is_rolled_back(world) -> None:
    server, settings, tags, labels, load = world
    records = _run_until_decided(world, CANARY, tags["weak"])
    last = records[-1]
    assert last["action"] == "rollback", [r["explanation"] for r in records]
    assert last["evidence"]["lower"] > 0 and last["evidence"]["design"] == "two_sample"
    assert registry.read_index(settings)["telco"]["aliases"] == {"champion": tags["good"]}
    assert not load.failures, load.failures[:5]
    sent = _outbox(settings, events.ROLLOUT_ROLLED_BACK)
    assert sent[-1]["id"] == last["event_id"]
    assert sent[-1]["payload"]["evidence"] == last["evidence"]


def test_the_same_entity_gets_the_same_arm_across_requests_and_workers(world) -> None:
    server, settings, tags, labels, load = world
    started = experiment.start("telco", tags["weak"], CANARY, reason="sticky")
    try:
        _workers_on(server, (started.id, 0.25), 0, timeout=60)  # the challenger loads first
        router = Router(started.salt, started.share)
        records = {r["customerID"]: r for r in load.records[:24]}
        arms: dict[str, set[str]] = {i: set() for i in records}
        workers: dict[str, set[str]] = {i: set() for i in records}
        for _, entity in itertools.product(range(4), records):  # new connections: any worker
            resp = httpx.post(f"{server.url}/predict", json={"records": [records[entity]]})
            (p,) = resp.json()["predictions"]
            arms[entity].add(p["arm"])
            workers[entity].add(resp.headers["x-driftloop-worker"])
        assert all(arms[e] == {router.arm(e)} for e in records), arms
        assert {"champion", "challenger"} <= set().union(*arms.values())
        assert len(set().union(*workers.values())) == 2
        assert [e for e in records if len(workers[e]) == 2], "no entity met both workers"
    finally:
        experiment.finish("telco", "abort", reason="sticky check done")


def test_a_worse_shadow_is_rolled_back_on_paired_rows(world) -> None:
    server, settings, tags, labels, load = world
    records = _run_until_decided(world, SHADOW, tags["weak"])
    last = records[-1]
    assert last["action"] == "rollback" and last["evidence"]["design"] == "paired"
    ev = last["evidence"]
    assert ev["n_champion"] == ev["n_challenger"]  # the same rows, both scores
    assert not load.failures, load.failures[:5]
    sent = _outbox(settings, events.ROLLOUT_ROLLED_BACK)
    assert sent[-1]["payload"]["evidence"]["design"] == "paired"


def test_a_truly_better_canary_walks_the_ramp_and_is_promoted(world) -> None:
    server, settings, tags, labels, load = world
    registry.promote("telco", tags["weak"], reason="e2e: a weak champion")
    _workers_on(server, None, 0, timeout=60)
    records = _run_until_decided(world, CANARY, tags["good"])
    actions = [r["action"] for r in records]
    assert actions[-1] == "promote" and "advance" in actions, actions
    assert registry.read_index(settings)["telco"]["aliases"] == {"champion": tags["good"]}
    assert not load.failures, load.failures[:5]
    kinds = [r["event"] for r in _outbox(settings, None) if "rollout" in r["event"]]
    assert kinds[-1] == events.ROLLOUT_PROMOTED and events.ROLLOUT_ADVANCED in kinds


def _outbox(settings: Settings, event: str | None) -> list[dict]:
    records = events.pending_events(settings) + events.sent_events(settings)
    return sorted((r for r in records if event in (None, r["event"])), key=lambda r: r["occurred"])
