"""A fake Compute Engine REST API: Cloud Armor security policies and the load balancer chain.

Served over plain HTTP for `compute_v1` clients built with `api_endpoint=http://127.0.0.1:PORT`
and anonymous credentials. It keeps global addresses, managed SSL certificates, regional
serverless network endpoint groups, backend services, URL maps, target HTTPS proxies, global
forwarding rules and security policies, and holds to GOOGLE-APIS.md d.4:

- names are `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters; references must exist;
- a basic rule matches at most 10 `srcIpRanges` (valid CIDRs or `*`), priorities are unique,
  0..2147483647, the default rule (2147483647) cannot be removed, descriptions are at most 64
  characters, actions are allow / deny(403|404|502) / ...;
- `securityPolicies.patch` needs the current `fingerprint` (else 412 conditionNotMet) and cannot
  change rules; every change to a policy (rules included) gives it a new fingerprint;
- writes take effect when accepted and answer a Compute `Operation` (PENDING until
  `operation_polls` polls have passed, then DONE); `fail_operation_next()` makes the next write's
  operation end DONE with an error (and no effect), as quota errors do; `requestId` makes a
  retried write return its first operation;
- the project (`GET projects/{project}`) reports Cloud Armor's global quotas, SECURITY_POLICIES and
  SECURITY_POLICY_RULES (every rule of every policy, default rules included), with the limits in
  `quota_limits`; a policy or rule past them is refused with 403 `quotaExceeded` ("Quota
  'SECURITY_POLICIES' exceeded.  Limit: 10.0 globally."); with `writes_per_minute` set, writes past
  it in a minute (on the project's clock) get 403 `rateLimitExceeded`, as Compute's rate quotas do;
- a delete of a resource another one still refers to (a forwarding rule's target proxy and
  address, a proxy's URL map and certificates, a URL map's backend service, a backend service's
  NEGs and security policy) is refused with 400 `resourceInUseByAnotherResource`, in Google's words
  ("The ssl_certificate resource '...' is already being used by '...'"); deleting what is gone is
  404. Like inserts, deletes take effect when accepted.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
import uuid
from dataclasses import dataclass

from tests.fakes.rest_server import HttpError, Request, RestFake, route

BASE = "https://www.googleapis.com/compute/v1"
NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
PROJECT = r"/compute/v1/projects/(?P<project>[^/]+)"
GLOBAL = (
    "(?P<collection>addresses|sslCertificates|backendServices|urlMaps|targetHttpsProxies|forwardingRules)"
)
DEFAULT_PRIORITY = 2147483647
#: What each collection's resources refer to, by field (a link, or a list of links).
REFERENCES = {
    "forwardingRules": ("target", "IPAddress"),
    "targetHttpsProxies": ("urlMap", "sslCertificates"),
    "urlMaps": ("defaultService",),
    "backendServices": ("backends", "securityPolicy"),
}
KINDS = {
    "addresses": "address",
    "sslCertificates": "ssl_certificate",
    "networkEndpointGroups": "network_endpoint_group",
    "backendServices": "backend_service",
    "urlMaps": "url_map",
    "targetHttpsProxies": "target_https_proxy",
    "forwardingRules": "forwarding_rule",
    "securityPolicies": "security_policy",
}
#: Cloud Armor's global quotas as a new project has them (raised on request, per project).
QUOTA_LIMITS = {"SECURITY_POLICIES": 10.0, "SECURITY_POLICY_RULES": 200.0}
ACTIONS = {"allow", "deny(403)", "deny(404)", "deny(502)", "throttle", "rate_based_ban", "redirect"}


def _short(link: str) -> str:
    """'https://.../projects/p/global/x/y' or 'projects/p/global/x/y' or 'global/x/y' -> 'global/x/y'."""
    link = link.split("/compute/v1/", 1)[-1]
    return re.sub(r"^projects/[^/]+/", "", link)


@dataclass
class _Op:
    body: dict
    polls_left: int
    effect: object  # callable applied when the operation completes, or None
    error: tuple[str, str] | None


class ComputeFake(RestFake):
    api = "compute.googleapis.com"

    def __init__(self):
        super().__init__()
        self.reset_state()

    def reset_state(self) -> None:
        self.operation_polls = 0
        self.resources: dict[str, dict] = {}  # "global/addresses/x" or "regions/r/networkEndpointGroups/x"
        self.policies: dict[str, dict] = {}  # name -> security policy
        self.operations: dict[str, _Op] = {}
        self.request_ids: dict[str, dict] = {}
        self._operation_failures: list[tuple[str, str]] = []
        self._next_ip = 10
        self.quota_limits = dict(QUOTA_LIMITS)
        self.writes_per_minute: int | None = None
        self._writes: list[float] = []

    # --- test controls -----------------------------------------------------------------------

    def fail_operation_next(self, code: str = "QUOTA_EXCEEDED", message: str = "Quota exceeded.") -> None:
        with self.lock:
            self._operation_failures.append((code, message))

    def rules(self, policy: str) -> dict[int, dict]:
        with self.lock:
            return {rule["priority"]: rule for rule in self.policies[policy]["rules"]}

    def add_foreign_rule(
        self, policy: str, priority: int, ranges: list[str], action: str = "deny(403)"
    ) -> None:
        """A rule someone else made (the console, Terraform): the portal must leave it alone."""
        with self.lock:
            self.policies[policy]["rules"].append(_rule(priority, ranges, action, "made by the ops team"))
            self._touch(self.policies[policy])

    # --- operations --------------------------------------------------------------------------

    def _operation(self, request: Request, scope: str, kind: str, target: str, effect) -> tuple[int, dict]:
        request_id = request.query.get("requestId")
        if request_id and request_id in self.request_ids:
            return 200, self.request_ids[request_id]
        self._within_write_rate()
        project = request.params["project"]
        name = f"operation-{uuid.uuid4().hex[:20]}"
        scope_path = scope if scope == "global" else f"regions/{scope}"
        body = {
            "kind": "compute#operation",
            "id": str(secrets.randbelow(10**18)),
            "name": name,
            "operationType": kind,
            "targetLink": f"{BASE}/projects/{project}/{target}",
            "status": "PENDING",
            "progress": 0,
            "selfLink": f"{BASE}/projects/{project}/{scope_path}/operations/{name}",
        }
        if scope != "global":
            body["region"] = f"{BASE}/projects/{project}/regions/{scope}"
        failure = self._operation_failures.pop(0) if self._operation_failures else None
        if failure is None and effect is not None:
            effect()  # the resource exists (being created) as soon as the write is accepted
        op = _Op(body=body, polls_left=self.operation_polls, effect=None, error=failure)
        self.operations[name] = op
        if op.polls_left <= 0:
            self._finish(op)
        if request_id:
            self.request_ids[request_id] = op.body
        return 200, dict(op.body)

    def _finish(self, op: _Op) -> None:
        if op.error is not None:
            code, message = op.error
            op.body["error"] = {"errors": [{"code": code, "message": message}]}
            op.body["httpErrorStatusCode"] = 403
            op.body["httpErrorMessage"] = "FORBIDDEN"
        elif op.effect is not None:
            op.effect()
        op.effect = None
        op.body.update(status="DONE", progress=100)

    def _poll(self, request: Request) -> tuple[int, dict]:
        op = self.operations.get(request.params["operation"])
        if op is None:
            raise HttpError(404, f"The resource 'operations/{request.params['operation']}' was not found")
        if op.body["status"] != "DONE":
            op.polls_left -= 1
            op.body["status"] = "RUNNING"
            if op.polls_left <= 0:
                self._finish(op)
        return 200, dict(op.body)

    @route("GET", PROJECT + r"/global/operations/(?P<operation>[^/]+)")
    def get_global_operation(self, request: Request):
        return self._poll(request)

    @route("POST", PROJECT + r"/global/operations/(?P<operation>[^/]+)/wait")
    def wait_global_operation(self, request: Request):
        return self._poll(request)

    @route("GET", PROJECT + r"/regions/(?P<region>[^/]+)/operations/(?P<operation>[^/]+)")
    def get_region_operation(self, request: Request):
        return self._poll(request)

    @route("POST", PROJECT + r"/regions/(?P<region>[^/]+)/operations/(?P<operation>[^/]+)/wait")
    def wait_region_operation(self, request: Request):
        return self._poll(request)

    # --- generic resources -------------------------------------------------------------------

    def _check_name(self, body: dict) -> str:
        name = body.get("name", "")
        if not NAME.match(name):
            raise HttpError(
                400,
                f"Invalid value for field 'resource.name': '{name}'. Must be a match of regex "
                "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'",
                reason="invalid",
            )
        return name

    def _exists(self, key: str, what: str) -> None:
        if key not in self.resources:
            raise HttpError(400, f"The resource '{key}' ({what}) was not found", reason="notFound")

    def _insert(self, request: Request, collection: str, scope: str = "global") -> tuple[int, dict]:
        body = request.json()
        name = self._check_name(body)
        prefix = "global" if scope == "global" else f"regions/{scope}"
        key = f"{prefix}/{collection}/{name}"
        if key in self.resources:
            raise HttpError(409, f"The resource 'projects/{request.params['project']}/{key}' already exists")
        self._validate(collection, body, request)
        stored = {
            **body,
            "id": str(secrets.randbelow(10**18)),
            "selfLink": f"{BASE}/projects/{request.params['project']}/{key}",
            "fingerprint": base64.b64encode(secrets.token_bytes(8)).decode(),
        }
        if collection == "addresses" and "address" not in stored:
            stored["address"] = f"34.120.0.{self._next_ip}"
            self._next_ip += 1
        if collection == "sslCertificates":
            managed = stored.get("managed", {})
            domains = {domain: "PROVISIONING" for domain in managed.get("domains", [])}
            stored["managed"] = {**managed, "status": "PROVISIONING", "domainStatus": domains}

        def effect():
            self.resources[key] = stored

        return self._operation(request, scope, "insert", key, effect)

    def set_certificate(self, name: str, status: str, domain_status: dict[str, str] | None = None) -> None:
        """Move the managed certificate `name` to `status` (ACTIVE once Google has issued it,
        PROVISIONING_FAILED_PERMANENTLY when it never will), each domain to `domain_status`."""
        managed = self.resources[f"global/sslCertificates/{name}"]["managed"]
        managed["status"] = status
        domains = managed.get("domains", [])
        managed["domainStatus"] = domain_status or {domain: status for domain in domains}

    def _validate(self, collection: str, body: dict, request: Request) -> None:
        if collection == "networkEndpointGroups":
            if body.get("networkEndpointType") != "SERVERLESS" or not body.get("cloudRun", {}).get("service"):
                raise HttpError(
                    400, "A serverless NEG needs networkEndpointType SERVERLESS and cloudRun.service."
                )
        if collection == "backendServices":
            for backend in body.get("backends", []):
                self._exists(_short(backend.get("group", "")), "backends.group")
            if body.get("securityPolicy"):
                self._policy(_short(body["securityPolicy"]).rsplit("/", 1)[-1])
        if collection == "urlMaps":
            self._exists(_short(body.get("defaultService", "")), "defaultService")
        if collection == "targetHttpsProxies":
            self._exists(_short(body.get("urlMap", "")), "urlMap")
            if not body.get("sslCertificates"):
                raise HttpError(400, "A target HTTPS proxy needs at least one SSL certificate.")
            for certificate in body["sslCertificates"]:
                self._exists(_short(certificate), "sslCertificates")
        if collection == "forwardingRules":
            self._exists(_short(body.get("target", "")), "target")
            address = body.get("IPAddress", "")
            if address and not re.match(r"^\d+\.\d+\.\d+\.\d+$", address):
                self._exists(_short(address), "IPAddress")
        if collection == "sslCertificates" and body.get("type") == "MANAGED":
            if not body.get("managed", {}).get("domains"):
                raise HttpError(400, "A managed certificate needs managed.domains.")

    def _get(self, key: str) -> tuple[int, dict]:
        if key not in self.resources:
            raise HttpError(404, f"The resource '{key}' was not found")
        return 200, self.resources[key]

    def _links(self, resource: dict) -> set[str]:
        """The short links ("global/urlMaps/x") a stored resource refers to."""
        collection = _short(resource["selfLink"]).split("/")[-2]
        links = set()
        for field in REFERENCES.get(collection, ()):
            value = resource.get(field)
            for item in value if isinstance(value, list) else [value]:
                link = item.get("group") if isinstance(item, dict) else item
                if link and not re.match(r"^\d+\.\d+\.\d+\.\d+$", link):
                    links.add(_short(link))
        return links

    def _delete(self, request: Request, key: str, scope: str, remove) -> tuple[int, dict]:
        """Delete `key` unless another resource refers to it; `remove()` takes it away."""
        project = request.params["project"]
        users = sorted(other for other, resource in self.resources.items() if key in self._links(resource))
        if users:
            collection, name = key.split("/")[-2:]
            raise HttpError(
                400,
                f"The {KINDS[collection]} resource 'projects/{project}/{key}' is already being used by "
                f"'projects/{project}/{users[0]}'",
                reason="resourceInUseByAnotherResource",
            )
        return self._operation(request, scope, "delete", key, remove)

    @route("DELETE", PROJECT + "/global/" + GLOBAL + r"/(?P<name>[^/]+)")
    def delete_global(self, request: Request):
        key = f"global/{request.params['collection']}/{request.params['name']}"
        self._get(key)
        return self._delete(request, key, "global", lambda: self.resources.pop(key))

    @route("DELETE", PROJECT + r"/regions/(?P<region>[^/]+)/networkEndpointGroups/(?P<name>[^/]+)")
    def delete_neg(self, request: Request):
        region = request.params["region"]
        key = f"regions/{region}/networkEndpointGroups/{request.params['name']}"
        self._get(key)
        return self._delete(request, key, region, lambda: self.resources.pop(key))

    @route("POST", PROJECT + "/global/" + GLOBAL)
    def insert_global(self, request: Request):
        return self._insert(request, request.params["collection"])

    @route("GET", PROJECT + "/global/" + GLOBAL + r"/(?P<name>[^/]+)")
    def get_global(self, request: Request):
        return self._get(f"global/{request.params['collection']}/{request.params['name']}")

    @route("POST", PROJECT + r"/regions/(?P<region>[^/]+)/networkEndpointGroups")
    def insert_neg(self, request: Request):
        return self._insert(request, "networkEndpointGroups", request.params["region"])

    @route("GET", PROJECT + r"/regions/(?P<region>[^/]+)/networkEndpointGroups/(?P<name>[^/]+)")
    def get_neg(self, request: Request):
        return self._get(f"regions/{request.params['region']}/networkEndpointGroups/{request.params['name']}")

    @route("POST", PROJECT + r"/global/backendServices/(?P<name>[^/]+)/setSecurityPolicy")
    def set_security_policy(self, request: Request):
        key = f"global/backendServices/{request.params['name']}"
        self._get(key)
        link = request.json().get("securityPolicy", "")
        if link:
            self._policy(_short(link).rsplit("/", 1)[-1])

        def effect():
            self.resources[key]["securityPolicy"] = link

        return self._operation(request, "global", "setSecurityPolicy", key, effect)

    # Google's path for this one global method has no /global/ in it.
    @route("POST", PROJECT + r"/targetHttpsProxies/(?P<name>[^/]+)/setSslCertificates")
    def set_ssl_certificates(self, request: Request):
        key = f"global/targetHttpsProxies/{request.params['name']}"
        self._get(key)
        links = request.json().get("sslCertificates", [])
        if not links:
            raise HttpError(400, "A target HTTPS proxy needs at least one SSL certificate.")
        for link in links:
            self._exists(_short(link), "sslCertificates")

        def effect():
            self.resources[key]["sslCertificates"] = links

        return self._operation(request, "global", "setSslCertificates", key, effect)

    # --- security policies -------------------------------------------------------------------

    def _policy(self, name: str) -> dict:
        if name not in self.policies:
            raise HttpError(404, f"The resource 'global/securityPolicies/{name}' was not found")
        return self.policies[name]

    def _touch(self, policy: dict) -> None:
        policy["fingerprint"] = base64.b64encode(secrets.token_bytes(8)).decode()

    def _check_rule(self, rule: dict) -> dict:
        priority = int(rule.get("priority", -1))
        if not 0 <= priority <= DEFAULT_PRIORITY:
            raise HttpError(
                400, f"Invalid value for field 'resource.priority': '{priority}'.", reason="invalid"
            )
        if rule.get("action") not in ACTIONS:
            raise HttpError(400, f"Invalid value for field 'resource.action': '{rule.get('action')}'.")
        if len(rule.get("description", "")) > 64:
            raise HttpError(400, "Invalid value for field 'resource.description': longer than 64 characters.")
        match = rule.get("match", {})
        if match.get("versionedExpr") == "SRC_IPS_V1":
            ranges = match.get("config", {}).get("srcIpRanges", [])
            if not ranges:
                raise HttpError(400, "A SRC_IPS_V1 rule needs at least one srcIpRanges entry.")
            if len(ranges) > 10:
                raise HttpError(
                    400,
                    f"Invalid value for field 'resource.match.config.srcIpRanges': {len(ranges)} ranges; "
                    "the limit is 10 per rule.",
                    reason="invalid",
                )
            for cidr in ranges:
                if cidr != "*":
                    try:
                        ipaddress.ip_network(cidr, strict=False)
                    except ValueError:
                        raise HttpError(400, f"Invalid IP range in srcIpRanges: '{cidr}'.") from None
        elif "expr" not in match:
            raise HttpError(400, "A rule needs match.versionedExpr with config, or match.expr.")
        return {**rule, "priority": priority, "kind": "compute#securityPolicyRule"}

    # --- the project's quotas ----------------------------------------------------------------

    def _within_write_rate(self) -> None:
        """Compute's per-minute write quota, when `writes_per_minute` sets one: past it, 403
        rateLimitExceeded until the minute has passed on the project's clock."""
        if self.writes_per_minute is None:
            return
        now = self.project.now()
        self._writes = [at for at in self._writes if at > now - 60]
        if len(self._writes) >= self.writes_per_minute:
            raise HttpError(
                403,
                "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute' of "
                "service 'compute.googleapis.com' for consumer 'project_number:123456789012'.",
                reason="rateLimitExceeded",
            )
        self._writes.append(now)

    def _usage(self) -> dict[str, float]:
        return {
            "SECURITY_POLICIES": float(len(self.policies)),
            "SECURITY_POLICY_RULES": float(sum(len(policy["rules"]) for policy in self.policies.values())),
        }

    def _within_quota(self, metric: str, more: int) -> None:
        limit = self.quota_limits[metric]
        if self._usage()[metric] + more > limit:
            raise HttpError(
                403, f"Quota '{metric}' exceeded.  Limit: {limit} globally.", reason="quotaExceeded"
            )

    @route("GET", PROJECT)
    def get_project(self, request: Request):
        project = request.params["project"]
        usage = self._usage()
        return 200, {
            "kind": "compute#project",
            "name": project,
            "selfLink": f"{BASE}/projects/{project}",
            "quotas": [
                {"metric": metric, "limit": limit, "usage": usage[metric]}
                for metric, limit in self.quota_limits.items()
            ],
        }

    # --- security policies -------------------------------------------------------------------

    @route("POST", PROJECT + r"/global/securityPolicies")
    def insert_policy(self, request: Request):
        body = request.json()
        name = self._check_name(body)
        if name in self.policies:
            project = request.params["project"]
            raise HttpError(
                409, f"The resource 'projects/{project}/global/securityPolicies/{name}' already exists"
            )
        rules = [self._check_rule(rule) for rule in body.get("rules", [])]
        priorities = [rule["priority"] for rule in rules]
        if len(priorities) != len(set(priorities)):
            raise HttpError(400, "Two rules have the same priority.")
        if DEFAULT_PRIORITY not in priorities:
            rules.append(_rule(DEFAULT_PRIORITY, ["*"], "allow", "default rule"))
        self._within_quota("SECURITY_POLICIES", 1)
        self._within_quota("SECURITY_POLICY_RULES", len(rules))
        policy = {
            **body,
            "kind": "compute#securityPolicy",
            "id": str(secrets.randbelow(10**18)),
            "type": body.get("type", "CLOUD_ARMOR"),
            "rules": rules,
            "selfLink": f"{BASE}/projects/{request.params['project']}/global/securityPolicies/{name}",
        }
        self._touch(policy)
        if request.query.get("validateOnly") == "true":
            return self._operation(request, "global", "insert", f"global/securityPolicies/{name}", None)

        def effect():
            self.policies[name] = policy

        return self._operation(request, "global", "insert", f"global/securityPolicies/{name}", effect)

    @route("DELETE", PROJECT + r"/global/securityPolicies/(?P<name>[^/]+)")
    def delete_policy(self, request: Request):
        name = request.params["name"]
        self._policy(name)
        return self._delete(
            request, f"global/securityPolicies/{name}", "global", lambda: self.policies.pop(name)
        )

    @route("GET", PROJECT + r"/global/securityPolicies/(?P<name>[^/]+)")
    def get_policy(self, request: Request):
        policy = self._policy(request.params["name"])
        return 200, {**policy, "rules": sorted(policy["rules"], key=lambda rule: rule["priority"])}

    @route("PATCH", PROJECT + r"/global/securityPolicies/(?P<name>[^/]+)")
    def patch_policy(self, request: Request):
        policy = self._policy(request.params["name"])
        body = request.json()
        if body.get("fingerprint") != policy["fingerprint"]:
            raise HttpError(
                412,
                "Invalid fingerprint: the resource was changed since it was read; read it again.",
                reason="conditionNotMet",
            )
        if "rules" in body:
            raise HttpError(
                400,
                "securityPolicies.patch cannot be used to update the rules in the policy. Please use the per "
                "rule methods like addRule, patchRule, and removeRule instead.",
            )
        changes = {key: value for key, value in body.items() if key not in ("fingerprint", "name", "rules")}

        def effect():
            policy.update(changes)
            self._touch(policy)

        return self._operation(
            request, "global", "patch", f"global/securityPolicies/{policy['name']}", effect
        )

    @route("POST", PROJECT + r"/global/securityPolicies/(?P<name>[^/]+)/addRule")
    def add_rule(self, request: Request):
        policy = self._policy(request.params["name"])
        rule = self._check_rule(request.json())
        if any(existing["priority"] == rule["priority"] for existing in policy["rules"]):
            raise HttpError(
                400,
                f"Invalid value for field 'resource.priority': '{rule['priority']}'. "
                "A rule with this priority already exists in the policy.",
                reason="invalid",
            )
        self._within_quota("SECURITY_POLICY_RULES", 1)
        if request.query.get("validateOnly") == "true":
            return self._operation(
                request, "global", "addRule", f"global/securityPolicies/{policy['name']}", None
            )

        def effect():
            policy["rules"].append(rule)
            self._touch(policy)

        return self._operation(
            request, "global", "addRule", f"global/securityPolicies/{policy['name']}", effect
        )

    def _rule_at(self, policy: dict, request: Request) -> dict:
        priority = int(request.query.get("priority", 0))
        for rule in policy["rules"]:
            if rule["priority"] == priority:
                return rule
        raise HttpError(400, f"Invalid value for field 'priority': '{priority}'. The rule does not exist.")

    @route("GET", PROJECT + r"/global/securityPolicies/(?P<name>[^/]+)/getRule")
    def get_rule(self, request: Request):
        return 200, self._rule_at(self._policy(request.params["name"]), request)

    @route("POST", PROJECT + r"/global/securityPolicies/(?P<name>[^/]+)/patchRule")
    def patch_rule(self, request: Request):
        policy = self._policy(request.params["name"])
        current = self._rule_at(policy, request)
        rule = self._check_rule({**current, **request.json(), "priority": current["priority"]})

        def effect():
            current.clear()
            current.update(rule)
            self._touch(policy)

        return self._operation(
            request, "global", "patchRule", f"global/securityPolicies/{policy['name']}", effect
        )

    @route("POST", PROJECT + r"/global/securityPolicies/(?P<name>[^/]+)/removeRule")
    def remove_rule(self, request: Request):
        policy = self._policy(request.params["name"])
        rule = self._rule_at(policy, request)
        if rule["priority"] == DEFAULT_PRIORITY:
            raise HttpError(400, "The default rule cannot be removed.")

        def effect():
            policy["rules"].remove(rule)
            self._touch(policy)

        return self._operation(
            request, "global", "removeRule", f"global/securityPolicies/{policy['name']}", effect
        )


def _rule(priority: int, ranges: list[str], action: str, description: str) -> dict:
    return {
        "kind": "compute#securityPolicyRule",
        "priority": priority,
        "action": action,
        "description": description,
        "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ranges}},
    }
