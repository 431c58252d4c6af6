"""How Google's errors become the runtime's: permanent, or worth another try."""

import pytest
from google.api_core import exceptions as gexc

from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import PROJECT
from worker.runtimes.base import PermanentError, TransientError
from worker.runtimes.gcp.errors import ACCOUNT_PROPAGATION_SECONDS, translate

SERVICE = f"projects/{PROJECT}/locations/us-central1/services/iris-prod"


def test_a_service_account_google_does_not_see_yet_is_tried_again_shortly():
    exc = gexc.BadRequest("Service account ep-iris@proj.iam.gserviceaccount.com does not exist.")
    failure = translate(exc, "Let ep-iris read the bucket")
    assert isinstance(failure, TransientError)
    assert failure.retry_after == ACCOUNT_PROPAGATION_SECONDS
    assert "does not exist" in str(failure)


def test_other_invalid_arguments_stay_permanent_with_googles_message():
    failure = translate(gexc.InvalidArgument("Memory must be at least 512Mi."), "Deploy the revision")
    assert isinstance(failure, PermanentError)
    assert str(failure).startswith("Deploy the revision: Memory must be at least 512Mi.")


# Through the real clients, from the fake servers' answers on the wire.


def test_a_call_to_an_api_not_enabled_fails_for_good_naming_it_and_the_command(gcp, fakes):
    fakes.project.disabled.add("run.googleapis.com")

    with pytest.raises(PermanentError) as refused:
        gcp.ctx.call(gcp.ctx.clients.run().get_service, name=SERVICE, what="Read the Cloud Run service")

    message = str(refused.value)
    assert message.startswith("Read the Cloud Run service: the run.googleapis.com API is not enabled")
    assert "gcloud services enable run.googleapis.com --project=123456789012" in message
    assert "Cloud Run Admin API has not been used in project 123456789012" in message
    assert fakes.run.methods() == ["GetService"]  # not retried


def test_the_rest_form_of_an_api_not_enabled_is_named_too(gcp, fakes):
    fakes.project.disabled.add("compute.googleapis.com")

    with pytest.raises(PermanentError, match="gcloud services enable compute.googleapis.com"):
        gcp.ctx.call(
            gcp.ctx.clients.compute("SecurityPoliciesClient").get,
            project=PROJECT,
            security_policy="ep-iris-prod",
            what="Read the security policy",
        )


def test_computes_403_rate_limits_wait_and_other_403s_do_not(gcp, fakes):
    policies = gcp.ctx.clients.compute("SecurityPoliciesClient")
    for reason in ("rateLimitExceeded", "userRateLimitExceeded"):
        fakes.compute.fail_next(status=403, message="Rate Limit Exceeded", reason=reason)
        with pytest.raises(TransientError) as waited:
            gcp.ctx.call(policies.get, project=PROJECT, security_policy="x", what="Read the policy")
        assert waited.value.retry_after == gcp.ctx.cfg.rate_limit_wait

    fakes.compute.fail_next(status=403, message="Required 'compute.securityPolicies.get' permission")
    with pytest.raises(PermanentError, match="compute.securityPolicies.get"):
        gcp.ctx.call(policies.get, project=PROJECT, security_policy="x", what="Read the policy")
