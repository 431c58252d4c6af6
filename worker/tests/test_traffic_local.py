"""The local runtime's traffic, from a real serving process: the beat scrape over its control
socket into the rollups, read back by `LocalRuntime.traffic`; and, with PROMETHEUS_URL, from a real
Prometheus server (Debian's `prometheus` package) scraping the same process's /metrics."""

import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.db.models import Sum

from endpoints.demo import IRIS_FEATURES
from endpoints.models import Endpoint, TrafficRollup
from endpoints.services.deployments import deployment_request
from endpoints.services.endpoints import endpoint_create
from endpoints.services.operations import deployment_run
from tests.fixtures.worker import session_ports, stop_serving_processes
from worker import tasks
from worker.runtimes.local import LocalRuntime
from worker.runtimes.traffic import LATENCY_BOUNDS

SETOSA = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))


@pytest.fixture(scope="module")
def module_runtime_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("traffic-runtime")
    yield root
    stop_serving_processes(root, launcher=True)


@pytest.fixture
def live(settings, module_runtime_dir, admin, iris_version, sent) -> Endpoint:
    """`iris-open`, open to anyone (so a Prometheus server may read /metrics), served for real."""
    settings.LOCAL_RUNTIME_DIR = module_runtime_dir
    settings.LOCAL_RUNTIME_PORT_MIN, settings.LOCAL_RUNTIME_PORT_MAX = session_ports()
    endpoint = endpoint_create(user=admin, name="iris-open", access_mode="open")
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert deployment_run(deployment_id=deployment.pk) == "ready"
    endpoint.refresh_from_db()
    yield endpoint
    stop_serving_processes(module_runtime_dir)
    shutil.rmtree(module_runtime_dir / "endpoints", ignore_errors=True)


def call(endpoint: Endpoint, *, good: int, bad: int = 0) -> None:
    """`good` predictions, `bad` refused bodies (422), one unknown path (404), one health check."""
    with httpx.Client(base_url=endpoint.url, timeout=10) as client:
        for _ in range(good):
            assert client.post("/predict", json=SETOSA).status_code == 200
        for _ in range(bad):
            assert client.post("/predict", json={"sepal_length": "long"}).status_code == 422
        if bad:
            assert client.get("/no-such-page").status_code == 404
        assert client.get("/healthz").status_code == 200


def last_hour() -> tuple[datetime, datetime]:
    end = datetime.fromtimestamp((int(time.time()) // 60 + 1) * 60, tz=UTC)
    return end - timedelta(hours=1), end


def totals(span: int) -> dict:
    return TrafficRollup.objects.filter(span=span).aggregate(
        ok=Sum("ok"), client=Sum("client_errors"), server=Sum("server_errors")
    )


def test_beat_scrapes_a_live_processes_requests_into_rollups_the_runtime_reads(live, settings):
    settings.TRAFFIC_SCRAPE_SECONDS = 600  # the process started within two intervals: all of it counts
    call(live, good=5, bad=2)
    assert tasks.scrape_traffic() == 1
    assert totals(1) == {"ok": 5, "client": 3, "server": 0}
    call(live, good=4)
    tasks.scrape_traffic()
    assert totals(1) == totals(60) == {"ok": 9, "client": 3, "server": 0}

    start, end = last_hour()
    traffic = LocalRuntime().traffic(live.name, live.live_deployment.resources, start=start, end=end, step=60)
    assert traffic.source == "the portal's scraper"
    [revision] = traffic.revisions
    assert revision.revision == live.live_deployment.resources["revision"]
    assert sum(point.ok for point in revision.points) == 9
    assert sum(point.client_errors for point in revision.points) == 3
    for point in revision.points:
        assert 0 < point.p50 <= point.p95 <= point.p99 <= LATENCY_BOUNDS[-1]


def test_a_scrape_with_nothing_new_adds_nothing(live, settings):
    settings.TRAFFIC_SCRAPE_SECONDS = 600
    tasks.scrape_traffic()
    before = totals(1)
    tasks.scrape_traffic()
    assert totals(1) == before


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def prometheus(live, tmp_path):
    """A real Prometheus scraping the live serving process's /metrics every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no prometheus binary (Debian: apt-get install prometheus)")
    # Every series exists before the first scrape: increase() cannot see a series' first requests.
    call(live, good=1, bad=1)
    target = live.url.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: serving, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: scrapes(url) >= 2, "Prometheus to scrape the serving process twice")
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def scrapes(url: str) -> int:
    """How many times Prometheus has scraped the target (0 while it is starting)."""
    try:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": "count_over_time(up[5m])"}, timeout=5)
    except httpx.HTTPError:
        return 0
    result = answer.json()["data"]["result"] if answer.status_code == 200 else []
    return int(float(result[0]["value"][1])) if result else 0


def wait_for(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.5)


def test_with_prometheus_url_the_runtime_reads_a_real_prometheus(live, prometheus, settings):
    settings.PROMETHEUS_URL = prometheus
    runtime = LocalRuntime()
    assert runtime.scrape_traffic() == []  # Prometheus scrapes; the portal does not
    call(live, good=20, bad=5)
    seen = scrapes(prometheus)
    wait_for(lambda: scrapes(prometheus) >= seen + 3, "three more scrapes")

    start, end = last_hour()
    traffic = runtime.traffic(live.name, None, start=start, end=end, step=3600)
    assert traffic.source == f"Prometheus at {prometheus}"
    [revision] = traffic.revisions
    assert revision.revision == live.live_deployment.resources["revision"]
    [point] = revision.points
    # increase() extrapolates to the ends of the range, so counts are near, not exact.
    assert point.ok == pytest.approx(20, rel=0.35)
    assert point.client_errors == pytest.approx(6, rel=0.35)
    assert point.server_errors == 0
    assert 0 < point.p50 <= point.p99 <= LATENCY_BOUNDS[-1]


def test_a_prometheus_that_is_not_there_is_a_transient_failure(live, settings):
    from worker.runtimes.base import TransientError

    settings.PROMETHEUS_URL = f"http://127.0.0.1:{free_port()}"
    start, end = last_hour()
    with pytest.raises(TransientError, match="did not answer"):
        LocalRuntime().traffic(live.name, None, start=start, end=end, step=60)
