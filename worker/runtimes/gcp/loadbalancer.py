"""The external HTTPS load balancer in front of an allowlist endpoint, where Cloud Armor applies.

    https://<endpoint>.<GCP_LB_DOMAIN>  ->  forwarding rule <ep>-https (global address <ep>-ip, :443)
      -> target HTTPS proxy <ep>-proxy (managed certificate <ep>-cert) -> URL map <ep>-urlmap
      -> backend service <ep>-backend (security policy <ep>-allowlist)
      -> serverless NEG <ep>-neg (region of the service) -> Cloud Run service <ep>

Made the first time an allowlist endpoint deploys (each piece created unless it exists, so a
resumed step skips what is there) and reused after: a deployment whose predecessor recorded the
chain makes no call at all. Someone must point the DNS name at the address (the step says which).
An endpoint's delete removes the chain in the reverse order, the forwarding rule first: Compute
refuses to delete a piece another one still refers to.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from worker.runtimes.base import DeploySpec, HttpsFront
from worker.runtimes.gcp import compute
from worker.runtimes.gcp.armor import policy_link
from worker.runtimes.gcp.clients import Context
from worker.runtimes.resources import DeploymentResources


def names(endpoint: str) -> dict[str, str]:
    return {
        "address": f"{endpoint}-ip",
        "certificate": f"{endpoint}-cert",
        "certificate_spare": f"{endpoint}-cert-2",  # a replacement's name, the two taking turns
        "neg": f"{endpoint}-neg",
        "backend": f"{endpoint}-backend",
        "url_map": f"{endpoint}-urlmap",
        "proxy": f"{endpoint}-proxy",
        "rule": f"{endpoint}-https",
    }


def hostname(ctx: Context, endpoint: str) -> str:
    return f"{endpoint}.{ctx.cfg.lb_domain}"


def ensure_chain(ctx: Context, spec: DeploySpec) -> tuple[DeploymentResources, list[str]]:
    """Create what is missing of the chain; return the address and URL end users call, and what
    was created."""
    endpoint = spec.endpoint
    project = ctx.cfg.project
    region = spec.resources.region
    n = names(endpoint)
    link = f"projects/{project}/global"
    made = []

    def insert(client_name: str, what: str, region_of: str | None = None, **kwargs):
        client = ctx.clients.compute(client_name)
        if compute.insert(
            ctx, client.insert_unary, {"project": project, **kwargs}, what=what, region=region_of
        ):
            made.append(what)

    insert(
        "GlobalAddressesClient",
        f"address {n['address']}",
        address_resource=compute_v1.Address(name=n["address"], ip_version="IPV4", address_type="EXTERNAL"),
    )
    insert(
        "SslCertificatesClient",
        f"certificate {n['certificate']}",
        ssl_certificate_resource=compute_v1.SslCertificate(
            name=n["certificate"],
            type_="MANAGED",
            managed=compute_v1.SslCertificateManagedSslCertificate(domains=[hostname(ctx, endpoint)]),
        ),
    )
    insert(
        "RegionNetworkEndpointGroupsClient",
        f"serverless NEG {n['neg']}",
        region_of=region,
        region=region,
        network_endpoint_group_resource=compute_v1.NetworkEndpointGroup(
            name=n["neg"],
            network_endpoint_type="SERVERLESS",
            cloud_run=compute_v1.NetworkEndpointGroupCloudRun(service=endpoint),
        ),
    )
    insert(
        "BackendServicesClient",
        f"backend service {n['backend']}",
        backend_service_resource=compute_v1.BackendService(
            name=n["backend"],
            load_balancing_scheme="EXTERNAL_MANAGED",
            protocol="HTTPS",
            backends=[
                compute_v1.Backend(
                    group=f"projects/{project}/regions/{region}/networkEndpointGroups/{n['neg']}"
                )
            ],
            security_policy=policy_link(ctx, endpoint),
        ),
    )
    insert(
        "UrlMapsClient",
        f"URL map {n['url_map']}",
        url_map_resource=compute_v1.UrlMap(
            name=n["url_map"], default_service=f"{link}/backendServices/{n['backend']}"
        ),
    )
    insert(
        "TargetHttpsProxiesClient",
        f"HTTPS proxy {n['proxy']}",
        target_https_proxy_resource=compute_v1.TargetHttpsProxy(
            name=n["proxy"],
            url_map=f"{link}/urlMaps/{n['url_map']}",
            ssl_certificates=[f"{link}/sslCertificates/{n['certificate']}"],
        ),
    )
    insert(
        "GlobalForwardingRulesClient",
        f"forwarding rule {n['rule']}",
        forwarding_rule_resource=compute_v1.ForwardingRule(
            name=n["rule"],
            I_p_address=f"{link}/addresses/{n['address']}",
            I_p_protocol="TCP",
            port_range="443",
            load_balancing_scheme="EXTERNAL_MANAGED",
            target=f"{link}/targetHttpsProxies/{n['proxy']}",
        ),
    )
    address = ctx.call(
        ctx.clients.compute("GlobalAddressesClient").get,
        project=project,
        address=n["address"],
        what=f"Read address {n['address']}",
    )
    found: DeploymentResources = {
        "load_balancer": n["rule"],
        "lb_address": address.address,
        "url": f"https://{hostname(ctx, endpoint)}",
    }
    return found, made


def pieces(endpoint: str, regions: list[str]) -> list[tuple[str, dict[str, str]]]:
    """The chain's pieces in the order they are created, each as (client, the keys naming it): one
    serverless NEG per region the endpoint's service was in. Each refers only to pieces before it,
    so deleting in the reverse order never meets a piece still in use."""
    n = names(endpoint)
    return [
        ("GlobalAddressesClient", {"address": n["address"]}),
        ("SslCertificatesClient", {"ssl_certificate": n["certificate"]}),
        *[
            ("RegionNetworkEndpointGroupsClient", {"region": region, "network_endpoint_group": n["neg"]})
            for region in regions
        ],
        ("BackendServicesClient", {"backend_service": n["backend"]}),
        ("UrlMapsClient", {"url_map": n["url_map"]}),
        ("TargetHttpsProxiesClient", {"target_https_proxy": n["proxy"]}),
        ("GlobalForwardingRulesClient", {"forwarding_rule": n["rule"]}),
    ]


def label(key: dict[str, str]) -> str:
    """A piece's name for messages: `<name>` or `<name> (<region>)`."""
    name = key.get("network_endpoint_group") or next(iter(key.values()))
    return f"{name} ({key['region']})" if "region" in key else name


def exists(ctx: Context, client_name: str, key: dict[str, str]) -> bool:
    found = ctx.call(
        ctx.clients.compute(client_name).get,
        project=ctx.cfg.project,
        what=f"Read {label(key)}",
        accept=(gexc.NotFound,),
        **key,
    )
    return found is not None


def missing(ctx: Context, spec: DeploySpec) -> list[str]:
    """The names of the chain's pieces that do not exist yet, read one by one."""
    return [
        label(key)
        for client, key in pieces(spec.endpoint, [spec.resources.region])
        if not exists(ctx, client, key)
    ]


def _made(endpoint: str, regions: list[str]) -> list[tuple[str, dict[str, str]]]:
    """The pieces as `pieces` lists them, with the certificate a replacement may have made."""
    made = pieces(endpoint, regions)
    spare = ("SslCertificatesClient", {"ssl_certificate": names(endpoint)["certificate_spare"]})
    return [*made[:2], spare, *made[2:]]


def present(ctx: Context, endpoint: str, regions: list[str]) -> list[str]:
    """The names of the chain's pieces that exist, in the order `delete_chain` deletes them."""
    return [label(key) for client, key in reversed(_made(endpoint, regions)) if exists(ctx, client, key)]


def delete_chain(ctx: Context, endpoint: str, regions: list[str]) -> list[str]:
    """Delete the chain, the forwarding rule first; returns the names of the pieces deleted."""
    deleted = []
    for client_name, key in reversed(_made(endpoint, regions)):
        method = ctx.clients.compute(client_name).delete_unary
        request = {"project": ctx.cfg.project, **key}
        if compute.delete(ctx, method, request, what=f"Delete {label(key)}", region=key.get("region")):
            deleted.append(label(key))
    return deleted


def front(ctx: Context, endpoint: str, live: DeploymentResources) -> HttpsFront | None:
    """The load balancer's address, the name to point at it and its managed certificate's status."""
    if not live.get("load_balancer"):
        return None
    name = current_certificate(ctx, endpoint)
    certificate = ctx.call(
        ctx.clients.compute("SslCertificatesClient").get,
        project=ctx.cfg.project,
        ssl_certificate=name,
        what=f"Read the certificate {name}",
    )
    host = hostname(ctx, endpoint)
    managed = certificate.managed
    domain = dict(managed.domain_status).get(host, "")
    return HttpsFront(
        host=host,
        address=live.get("lb_address", ""),
        certificate=managed.status or "PROVISIONING",
        detail=f"{host}: {domain}" if domain and domain != managed.status else "",
    )


def current_certificate(ctx: Context, endpoint: str) -> str:
    """The name of the certificate the endpoint's HTTPS proxy presents."""
    proxy = names(endpoint)["proxy"]
    found = ctx.call(
        ctx.clients.compute("TargetHttpsProxiesClient").get,
        project=ctx.cfg.project,
        target_https_proxy=proxy,
        what=f"Read the HTTPS proxy {proxy}",
    )
    return (
        found.ssl_certificates[0].rsplit("/", 1)[-1]
        if found.ssl_certificates
        else names(endpoint)["certificate"]
    )


def replace_certificate(ctx: Context, endpoint: str) -> str:
    """Put a new managed certificate for the endpoint's name on its proxy, under the other of the
    two certificate names, and delete the old one (Google never issues a certificate that ended in
    PROVISIONING_FAILED_PERMANENTLY: only a new one can succeed). Returns the new one's name.

    Each write is idempotent, so a replacement cut short is finished by the next one."""
    n, project = names(endpoint), ctx.cfg.project
    old = current_certificate(ctx, endpoint)
    new = n["certificate_spare"] if old == n["certificate"] else n["certificate"]
    certificates = ctx.clients.compute("SslCertificatesClient")
    request = {"project": project, "ssl_certificate": new}
    compute.delete(ctx, certificates.delete_unary, request, what=f"Delete the unused certificate {new}")
    compute.insert(
        ctx,
        certificates.insert_unary,
        {
            "project": project,
            "ssl_certificate_resource": compute_v1.SslCertificate(
                name=new,
                type_="MANAGED",
                managed=compute_v1.SslCertificateManagedSslCertificate(domains=[hostname(ctx, endpoint)]),
            ),
        },
        what=f"Create the certificate {new}",
    )
    compute.update(
        ctx,
        ctx.clients.compute("TargetHttpsProxiesClient").set_ssl_certificates_unary,
        {
            "project": project,
            "target_https_proxy": n["proxy"],
            "target_https_proxies_set_ssl_certificates_request_resource": (
                compute_v1.TargetHttpsProxiesSetSslCertificatesRequest(
                    ssl_certificates=[f"projects/{project}/global/sslCertificates/{new}"]
                )
            ),
        },
        what=f"Put the certificate {new} on {n['proxy']}",
    )
    compute.delete(
        ctx, certificates.delete_unary, {"project": project, "ssl_certificate": old}, what=f"Delete {old}"
    )
    return new
