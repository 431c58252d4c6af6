"""The fakes' own tests: real client libraries against the fake servers."""

import httpx
import kubernetes
import pytest

from tests.fakes.fixtures import *  # noqa: F403


@pytest.fixture
def kube(fake_kubernetes):
    """Typed APIs of the official client on the fake: `kube.apps`, `kube.core`, `kube.autoscaling`."""
    client = kubernetes.config.new_client_from_config(config_file=fake_kubernetes.kubeconfig)
    with client:
        yield Apis(client)


class Apis:
    def __init__(self, client):
        self.client = client
        self.apps = kubernetes.client.AppsV1Api(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.autoscaling = kubernetes.client.AutoscalingV2Api(client)


@pytest.fixture
def raw(fake_kubernetes):
    """Plain HTTP with the kubeconfig's token, for bodies the typed client refuses to send."""
    from tests.fakes.kubernetes_api.server import TOKEN

    with httpx.Client(base_url=fake_kubernetes.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client
