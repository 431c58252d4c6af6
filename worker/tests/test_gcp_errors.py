"""How Google's errors become the runtime's: permanent, or worth another try."""

from google.api_core import exceptions as gexc

from worker.runtimes.base import PermanentError, TransientError
from worker.runtimes.gcp.errors import ACCOUNT_PROPAGATION_SECONDS, translate


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
