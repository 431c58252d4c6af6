"""The REST API for automation: glue between HTTP and the service layer.

Every read starts from `for_user(request.user)`, so an object a user may not see answers 404.
Every write validates the input's shape with an input serializer, calls one service function,
and renders the result; the service decides what is allowed and says why not.

    curl -H "Authorization: Token $TOKEN" -X POST -H "Content-Type: application/json" \\
         -d '{"model_version": 3}' https://portal.example.com/api/v1/endpoints/iris-prod/deploy/
"""

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_in
from django.db.models import Max
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import SAFE_METHODS, AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from endpoints.api import serializers as s
from endpoints.api.errors import ErrorSerializer
from endpoints.api.permissions import IsAdmin, IsAdminOrReadOnly
from endpoints.client_address import client_address
from endpoints.models import (
    DNS_LABEL,
    ApiKey,
    ApiKeyRequest,
    ApiToken,
    AuditEvent,
    Deployment,
    Endpoint,
    LoadTest,
    MLModel,
    ModelVersion,
    Team,
)
from endpoints.services.allowlist import allowlist_add, allowlist_remove
from endpoints.services.deployments import (
    deployment_plan,
    deployment_request,
    deployment_rollback,
    traffic_share,
)
from endpoints.services.endpoints import endpoint_create, endpoint_update
from endpoints.services.errors import Unprocessable
from endpoints.services.keys import (
    api_key_restore,
    api_key_reveal,
    api_key_revoke,
    api_key_rotate,
    key_request_approve,
    key_request_create,
    key_request_reissue,
    key_request_reject,
)
from endpoints.services.lifecycle import endpoint_delete, endpoint_start, endpoint_stop, lifecycle_plan
from endpoints.services.load_tests import load_test_cancel, load_test_start
from endpoints.services.rollouts import rollout_from_request
from endpoints.services.tokens import api_token_issue, api_token_revoke
from endpoints.services.versions import ml_model_create, model_version_register
from endpoints.sign_in import LOCKED_OUT_CODE, SIGN_IN_THROTTLES, THROTTLED
from endpoints.uploads import require_within_limit


def errors(*codes: int) -> dict:
    """Document error answers: errors(400, 403) -> {400: ErrorSerializer, 403: ErrorSerializer}."""
    return {code: ErrorSerializer for code in codes}


class ServiceViewSet(viewsets.GenericViewSet):
    """A viewset whose writes go: input serializer -> service function -> read serializer."""

    # Input serializers by action (also what the browsable API renders as the form).
    input_serializers: dict = {}

    def get_serializer_class(self):
        if self.request is not None and self.request.method not in SAFE_METHODS:
            return self.input_serializers.get(self.action, self.serializer_class)
        return self.serializer_class

    def validated(self, *, partial: bool = False) -> dict:
        serializer = self.get_serializer(data=self.request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def respond(self, instance, serializer_class=None, *, status_code=status.HTTP_200_OK, location=False):
        serializer_class = serializer_class or self.serializer_class
        data = serializer_class(instance, context=self.get_serializer_context()).data
        headers = {"Location": str(data["url"])} if location else None
        return Response(data, status=status_code, headers=headers)

    def paginated(self, queryset, serializer_class):
        page = self.paginate_queryset(queryset)
        data = serializer_class(page, many=True, context=self.get_serializer_context()).data
        return self.get_paginated_response(data)


# -- auth --------------------------------------------------------------------------------------------


class LockedOut(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = LOCKED_OUT_CODE


@extend_schema(
    tags=["auth"],
    auth=[],
    summary="Exchange a username and password for an API token",
    description="The token is shown once and expires at `expiry`. A wrong username or password "
    "answers 400 (code `authorization`), as OAuth 2's token endpoint does. Attempts are limited per client "
    "address and per user name (429); repeated failures lock the user name and the address out "
    "for a while, during which even the right password is refused (429, code `locked_out`).",
    request=s.TokenRequestSerializer,
    responses={200: s.TokenIssuedSerializer, **errors(400, 429)},
)
class TokenView(APIView):
    """POST username and password; send the token back as `Authorization: Token <token>`."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = list(SIGN_IN_THROTTLES)
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    serializer_class = s.TokenRequestSerializer

    def throttled(self, request, wait):
        raise exceptions.Throttled(wait, detail=THROTTLED)

    def post(self, request):
        serializer = s.TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # django-axes watches authenticate(): it needs the Django request to count and lock.
        http_request = request._request
        user = authenticate(http_request, **serializer.validated_data)
        if user is None:
            if getattr(http_request, "axes_locked_out", False):
                raise LockedOut(settings.AXES_COOLOFF_MESSAGE)
            raise exceptions.ValidationError(
                {"non_field_errors": ["Unable to log in with provided credentials."]}, code="authorization"
            )
        user_logged_in.send(sender=type(user), request=http_request, user=user)
        token, secret = api_token_issue(user=user, address=client_address(http_request))
        return Response({"token": secret, "expiry": token.expiry}, headers={"Cache-Control": "no-store"})


@extend_schema_view(
    list=extend_schema(summary="List API tokens (your own; everyone's for admins), never their secrets"),
    destroy=extend_schema(
        summary="Revoke an API token (your own; any for admins)",
        responses={204: OpenApiResponse(description="Revoked."), **errors(403, 404, 409)},
    ),
)
@extend_schema(tags=["auth"])
class ApiTokenViewSet(ServiceViewSet, mixins.ListModelMixin):
    """API tokens: when they were issued, when they expire, their first characters."""

    serializer_class = s.ApiTokenSerializer

    def get_queryset(self):
        return ApiToken.objects.for_user(self.request.user).select_related("user")

    def destroy(self, request, pk=None):
        api_token_revoke(user=request.user, token=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


# -- models and versions -----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="List models"),
    retrieve=extend_schema(summary="Show a model"),
    create=extend_schema(
        summary="Create a model (admins)",
        request=s.MLModelCreateSerializer,
        responses={201: s.MLModelSerializer, **errors(400, 403, 409)},
    ),
)
@extend_schema(tags=["models"])
class MLModelViewSet(ServiceViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Models and their versions: list, create, upload artifacts."""

    serializer_class = s.MLModelSerializer
    input_serializers = {"create": s.MLModelCreateSerializer, "versions": s.ModelVersionUploadSerializer}
    permission_classes = [IsAdminOrReadOnly]

    def get_queryset(self):
        return (
            MLModel.objects.for_user(self.request.user)
            .select_related("owner")
            .annotate(latest_version=Max("versions__number"))
            .order_by("name")  # an aggregate drops Meta.ordering
        )

    def create(self, request):
        ml_model = ml_model_create(user=request.user, **self.validated())
        ml_model.latest_version = None
        return self.respond(ml_model, status_code=status.HTTP_201_CREATED, location=True)

    @extend_schema(
        methods=["GET"],
        summary="List a model's versions, newest first",
        responses=s.ModelVersionSerializer(many=True),
    )
    @extend_schema(
        methods=["POST"],
        summary="Upload an artifact as the model's next version (admins)",
        description="multipart/form-data. The file is loaded and checked before anything is recorded; "
        "errors name the field at fault (`artifact`, `input_schema`, `label_map`, `metrics`, `example`).",
        request={"multipart/form-data": s.ModelVersionUploadSerializer},
        responses={201: s.ModelVersionSerializer, **errors(400, 403, 404, 409, 413)},
    )
    @action(detail=True, methods=["get", "post"], parser_classes=[MultiPartParser, FormParser])
    def versions(self, request, pk=None):
        ml_model = self.get_object()
        if request.method == "GET":
            versions = (
                ModelVersion.objects.for_user(request.user)
                .filter(model=ml_model)
                .select_related("model", "created_by")
                .order_by("-number")
            )
            return self.paginated(versions, s.ModelVersionSerializer)
        request.data  # noqa: B018 -- parse the body: an upload past the limit is dropped while streaming
        require_within_limit(request._request)
        data = self.validated()
        version = model_version_register(
            user=request.user,
            ml_model=ml_model,
            upload=data.get("artifact"),
            input_schema=data.get("input_schema"),
            label_map=data.get("label_map"),
            metrics=data.get("metrics"),
            example=data.get("example"),
            trust_code=data["trust_code"],
            trusted_types=data.get("trusted_types"),
        )
        return self.respond(
            version, s.ModelVersionSerializer, status_code=status.HTTP_201_CREATED, location=True
        )


@extend_schema_view(retrieve=extend_schema(summary="Show a model version"))
@extend_schema(tags=["models"])
class ModelVersionViewSet(ServiceViewSet, mixins.RetrieveModelMixin):
    """One model version: its schema, classes, label map and artifact facts."""

    serializer_class = s.ModelVersionSerializer

    def get_queryset(self):
        return ModelVersion.objects.for_user(self.request.user).select_related("model", "created_by")


# -- endpoints ---------------------------------------------------------------------------------------


ENDPOINT_NAME = OpenApiParameter(
    "name", str, OpenApiParameter.PATH, pattern=DNS_LABEL.regex.pattern, description="The endpoint's name."
)


@extend_schema_view(
    list=extend_schema(summary="List endpoints"),
    retrieve=extend_schema(summary="Show an endpoint", parameters=[ENDPOINT_NAME]),
    create=extend_schema(
        summary="Create an endpoint (admins)",
        request=s.EndpointCreateSerializer,
        responses={201: s.EndpointSerializer, **errors(400, 403, 409)},
    ),
    partial_update=extend_schema(
        summary="Change an endpoint's settings (admins); they apply from its next deployment",
        parameters=[ENDPOINT_NAME],
        request=s.EndpointSettingsSerializer,
        responses={200: s.EndpointSerializer, **errors(400, 403, 404, 409)},
    ),
)
@extend_schema(tags=["endpoints"])
class EndpointViewSet(ServiceViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Endpoints by name: settings, deploys, deployment history, IP allowlist."""

    serializer_class = s.EndpointSerializer
    input_serializers = {
        "create": s.EndpointCreateSerializer,
        "partial_update": s.EndpointSettingsSerializer,
        "deploy": s.DeployRequestSerializer,
        "plan": s.PlanRequestSerializer,
        "destroy": s.DeleteRequestSerializer,
        "allowlist": s.AllowlistAddSerializer,
        "load_tests": s.LoadTestRequestSerializer,
    }
    permission_classes = [IsAdminOrReadOnly]
    lookup_field = "name"
    # Only a DNS label can name an endpoint: any other path is not found before a query is made.
    lookup_value_regex = DNS_LABEL.regex.pattern.removeprefix("^").removesuffix("$")

    def get_queryset(self):
        return Endpoint.objects.for_user(self.request.user).with_live().select_related("created_by")

    def create(self, request):
        endpoint = endpoint_create(user=request.user, **self.validated())
        return self.respond(endpoint, status_code=status.HTTP_201_CREATED, location=True)

    def partial_update(self, request, name=None):
        endpoint = self.get_object()
        endpoint = endpoint_update(user=request.user, endpoint=endpoint, **self.validated(partial=True))
        return self.respond(endpoint)

    @extend_schema(
        summary="Deploy a model version to the endpoint (admins)",
        description="Answers 202 at once with the queued deployment; poll its `url` (also the "
        "`Location` header) until `status` is `ready` or `failed`.",
        parameters=[ENDPOINT_NAME],
        request=s.DeployRequestSerializer,
        responses={202: s.DeploymentSerializer, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def deploy(self, request, name=None):
        endpoint = self.get_object()
        data = self.validated()
        deployment = deployment_request(
            user=request.user,
            endpoint=endpoint,
            model_version=data["model_version"],
            traffic_percent=data.get("traffic_percent"),
            rollout=rollout_from_request(data),
        )
        return self.respond(
            deployment, s.DeploymentSerializer, status_code=status.HTTP_202_ACCEPTED, location=True
        )

    @extend_schema(
        summary="Say what a deploy, stop, start or delete would change, changing nothing (admins)",
        description="Nothing is written and nothing is changed: the runtime answers from reads "
        "(and, on Cloud Run, a validate-only request). Revision names are provisional.",
        parameters=[ENDPOINT_NAME],
        request=s.PlanRequestSerializer,
        responses={200: s.DeploymentPlanSerializer, **errors(400, 403, 404, 409, 503)},
    )
    @action(detail=True, methods=["post"])
    def plan(self, request, name=None):
        endpoint = self.get_object()
        data = self.validated()
        operation = data["action"]
        traffic_share(data.get("traffic_percent"))  # refused out of range, whatever the operation
        if operation != "deploy":
            changes = lifecycle_plan(user=request.user, endpoint=endpoint, action=operation)
            version, share = None, None
        elif "model_version" not in data:
            raise Unprocessable("Choose the model version to deploy.", field="model_version")
        else:
            rollout = rollout_from_request(data)
            asked = rollout.steps[0] if rollout else data.get("traffic_percent")
            version, share = data["model_version"].pk, traffic_share(asked)
            changes = deployment_plan(
                user=request.user,
                endpoint=endpoint,
                model_version=data["model_version"],
                traffic_percent=asked,
            )
        body = {
            "endpoint": endpoint.name,
            "action": operation,
            "model_version": version,
            "traffic_percent": share,
            "runtime": settings.RUNTIME,
            "changes": [vars(change) for change in changes],
        }
        return Response(s.DeploymentPlanSerializer(body).data)

    @extend_schema(
        summary="Stop serving the endpoint's live version (admins)",
        description="Answers 202 with the queued stop; its URL, keys and records stay, and `start` "
        "serves the same version again. Poll the operation's `url` until `status` is `done`.",
        parameters=[ENDPOINT_NAME],
        request=None,
        responses={202: s.DeploymentSerializer, **errors(403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def stop(self, request, name=None):
        operation = endpoint_stop(user=request.user, endpoint=self.get_object())
        return self.respond(
            operation, s.DeploymentSerializer, status_code=status.HTTP_202_ACCEPTED, location=True
        )

    @extend_schema(
        summary="Serve a stopped endpoint's live version again (admins)",
        parameters=[ENDPOINT_NAME],
        request=None,
        responses={202: s.DeploymentSerializer, **errors(403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def start(self, request, name=None):
        operation = endpoint_start(user=request.user, endpoint=self.get_object())
        return self.respond(
            operation, s.DeploymentSerializer, status_code=status.HTTP_202_ACCEPTED, location=True
        )

    @extend_schema(
        summary="Delete the endpoint and everything the runtime made for it (admins)",
        description="Send the endpoint's name as `?confirm=` (or as `confirm` in a body). Answers 202 "
        "with the queued delete; its records and audit stay, its keys are revoked, and its name is "
        "free once the delete is `done`. Another name, or none, answers 422.",
        parameters=[
            ENDPOINT_NAME,
            OpenApiParameter(
                "confirm",
                str,
                OpenApiParameter.QUERY,
                required=True,
                description="The endpoint's name, typed again to confirm the delete.",
            ),
        ],
        request=s.DeleteRequestSerializer,
        # A DELETE's body is left out of the schema (?confirm= is the documented way), but read.
        responses={202: s.DeploymentSerializer, **errors(400, 403, 404, 409, 415, 422)},
    )
    def destroy(self, request, name=None):
        endpoint = self.get_object()
        confirm = s.DeleteRequestSerializer(data=request.data or request.query_params)  # body or ?confirm=
        confirm.is_valid(raise_exception=True)
        operation = endpoint_delete(user=request.user, endpoint=endpoint, **confirm.validated_data)
        return self.respond(
            operation, s.DeploymentSerializer, status_code=status.HTTP_202_ACCEPTED, location=True
        )

    @extend_schema(
        summary="The endpoint's deployments, newest first",
        parameters=[ENDPOINT_NAME],
        responses=s.DeploymentSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def deployments(self, request, name=None):
        endpoint = self.get_object()
        history = (
            Deployment.objects.for_user(request.user)
            .filter(endpoint=endpoint)
            .select_related("endpoint", "model_version__model", "requested_by")
        )
        return self.paginated(history, s.DeploymentSerializer)

    @extend_schema(
        methods=["GET"],
        summary="The endpoint's IP allowlist",
        parameters=[ENDPOINT_NAME],
        responses=s.AllowlistEntrySerializer(many=True),
    )
    @extend_schema(
        methods=["POST"],
        summary="Allow an IP address or CIDR range (admins)",
        parameters=[ENDPOINT_NAME],
        request=s.AllowlistAddSerializer,
        responses={201: s.AllowlistEntrySerializer, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["get", "post"])
    def allowlist(self, request, name=None):
        endpoint = self.get_object()
        if request.method == "GET":
            return self.paginated(endpoint.allowlist.select_related("added_by"), s.AllowlistEntrySerializer)
        entry = allowlist_add(user=request.user, endpoint=endpoint, **self.validated())
        return self.respond(entry, s.AllowlistEntrySerializer, status_code=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Remove an allowlist entry (admins)",
        parameters=[
            ENDPOINT_NAME,
            OpenApiParameter("entry_id", int, OpenApiParameter.PATH, description="The entry's id."),
        ],
        request=None,
        responses={204: OpenApiResponse(description="Removed."), **errors(403, 404, 409)},
    )
    @action(
        detail=True,
        methods=["delete"],
        url_path=r"allowlist/(?P<entry_id>[0-9]+)",
        url_name="allowlist-entry",
    )
    def allowlist_entry(self, request, name=None, entry_id=None):
        endpoint = self.get_object()
        entry = get_object_or_404(endpoint.allowlist.select_related("endpoint"), pk=entry_id)
        allowlist_remove(user=request.user, entry=entry)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        methods=["GET"],
        summary="The endpoint's load tests, newest first",
        parameters=[ENDPOINT_NAME],
        responses=s.LoadTestSerializer(many=True),
    )
    @extend_schema(
        methods=["POST"],
        summary="Start a load test of the endpoint's public URL (admins)",
        description="Answers 202 with the queued test; poll its `url` (also the `Location` header): "
        "`timeseries` grows by a snapshot a second while it runs, and `summary` holds the whole test's "
        "figures once `status` is `done` (or `cancelled`). The test sends the live version's example rows; "
        "on an endpoint that checks keys, with a key made for it and revoked when it ends. Refused (409) "
        "while another test or an operation runs on the endpoint, and when it is not serving.",
        parameters=[ENDPOINT_NAME],
        request=s.LoadTestRequestSerializer,
        responses={202: s.LoadTestSerializer, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["get", "post"], url_path="load-tests", url_name="load-tests")
    def load_tests(self, request, name=None):
        endpoint = self.get_object()
        if request.method == "GET":
            tests = LoadTest.objects.for_user(request.user).filter(endpoint=endpoint)
            return self.paginated(
                tests.select_related("endpoint", "requested_by", "cancelled_by"), s.LoadTestSerializer
            )
        data = self.validated()
        test = load_test_start(
            user=request.user,
            endpoint=endpoint,
            users=data.get("users"),
            spawn_rate=data.get("spawn_rate"),
            duration_seconds=data.get("duration_seconds"),
        )
        return self.respond(test, s.LoadTestSerializer, status_code=status.HTTP_202_ACCEPTED, location=True)


# -- load tests --------------------------------------------------------------------------------------


@extend_schema_view(retrieve=extend_schema(summary="Show a load test: status, snapshots, figures"))
@extend_schema(tags=["endpoints"])
class LoadTestViewSet(ServiceViewSet, mixins.RetrieveModelMixin):
    """Load tests: follow one, cancel one. Started and listed under their endpoint."""

    serializer_class = s.LoadTestSerializer
    permission_classes = [IsAdminOrReadOnly]

    def get_queryset(self):
        return LoadTest.objects.for_user(self.request.user).select_related(
            "endpoint", "requested_by", "cancelled_by"
        )

    @extend_schema(
        summary="Cancel a queued or running load test (admins)",
        description="A queued test is cancelled at once; a running one stops within a second or two, "
        "keeping what it measured until then (`status` becomes `cancelled`). Its key is revoked.",
        request=None,
        responses={200: s.LoadTestSerializer, **errors(403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        test = load_test_cancel(user=request.user, test=self.get_object())
        return self.respond(test)


# -- deployments -------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="List deployments on all endpoints, newest first"),
    retrieve=extend_schema(summary="Show a deployment: status, steps journal, resources, error"),
)
@extend_schema(tags=["deployments"])
class DeploymentViewSet(ServiceViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Deployments: poll one's progress, roll back to one that was live."""

    serializer_class = s.DeploymentSerializer
    permission_classes = [IsAdminOrReadOnly]

    def get_queryset(self):
        return Deployment.objects.for_user(self.request.user).select_related(
            "endpoint", "model_version__model", "requested_by"
        )

    @extend_schema(
        summary="Deploy again the version this deployment put live (admins)",
        description="Answers 202 with the new deployment, to poll like any other.",
        request=None,
        responses={202: s.DeploymentSerializer, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        deployment = deployment_rollback(user=request.user, deployment=self.get_object())
        return self.respond(deployment, status_code=status.HTTP_202_ACCEPTED, location=True)


# -- key requests and keys -----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="List key requests (your teams'; all of them for admins)"),
    retrieve=extend_schema(summary="Show a key request"),
    create=extend_schema(
        summary="Ask for an API key for one of your teams",
        request=s.KeyRequestCreateSerializer,
        responses={201: s.KeyRequestSerializer, **errors(400, 403, 409)},
    ),
)
@extend_schema(tags=["keys"])
class KeyRequestViewSet(ServiceViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """API key requests: teams ask, admins decide, the team sees the key once."""

    serializer_class = s.KeyRequestSerializer
    input_serializers = {
        "create": s.KeyRequestCreateSerializer,
        "approve": s.DecisionSerializer,
        "reject": s.DecisionSerializer,
    }

    def get_queryset(self):
        return ApiKeyRequest.objects.for_user(self.request.user).select_related(
            "team", "endpoint", "requested_by", "decided_by", "api_key"
        )

    def create(self, request):
        data = self.validated()
        key_request = key_request_create(
            user=request.user,
            team=data.get("team"),
            endpoint=data["endpoint"],
            reason=data["reason"],
            valid_days=data.get("valid_days"),
        )
        return self.respond(key_request, status_code=status.HTTP_201_CREATED, location=True)

    @extend_schema(
        summary="Approve a pending request (admins); the worker then issues the key",
        request=s.DecisionSerializer,
        responses={200: s.KeyRequestSerializer, **errors(403, 404, 409)},
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAdmin])
    def approve(self, request, pk=None):
        key_request = key_request_approve(user=request.user, request=self.get_object(), **self.validated())
        return self.respond(key_request)

    @extend_schema(
        summary="Reject a pending request (admins)",
        request=s.DecisionSerializer,
        responses={200: s.KeyRequestSerializer, **errors(403, 404, 409)},
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAdmin])
    def reject(self, request, pk=None):
        key_request = key_request_reject(user=request.user, request=self.get_object(), **self.validated())
        return self.respond(key_request)

    @extend_schema(
        summary="Show the issued key, once",
        description="The secret is returned this one time and then forgotten; a second call "
        "answers 410 Gone. So does a call after the key was revoked (code `revoked`) or after its "
        "reveal window passed (code `expired_unseen`: the secret is erased and the key revoked; an "
        "admin can re-issue the request).",
        request=None,
        responses={200: s.RevealedKeySerializer, **errors(403, 404, 409, 410)},
    )
    @action(detail=True, methods=["post"])
    def reveal(self, request, pk=None):
        secret = api_key_reveal(user=request.user, request=self.get_object())
        return Response({"key": secret}, headers={"Cache-Control": "no-store"})

    @extend_schema(
        summary="Re-issue a request whose key expired unseen (admins)",
        description="Answers 202 with a new request, already approved: the worker issues a new key "
        "and a member of the team reveals it once. The unseen key stays revoked.",
        request=None,
        responses={202: s.KeyRequestSerializer, **errors(403, 404, 409)},
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAdmin])
    def reissue(self, request, pk=None):
        key_request = key_request_reissue(user=request.user, request=self.get_object())
        return self.respond(key_request, status_code=status.HTTP_202_ACCEPTED, location=True)


@extend_schema_view(
    list=extend_schema(summary="List API keys (your teams'; all of them for admins)"),
    retrieve=extend_schema(summary="Show an API key (never its secret)"),
)
@extend_schema(tags=["keys"])
class ApiKeyViewSet(ServiceViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Issued API keys: their prefix and state, never the secret; admins revoke."""

    serializer_class = s.ApiKeySerializer
    input_serializers = {"rotate": s.KeyRotateSerializer}

    def get_queryset(self):
        return ApiKey.objects.for_user(self.request.user).select_related("team", "endpoint", "revoked_by")

    @extend_schema(
        summary="Revoke a key (admins)",
        request=None,
        responses={200: s.ApiKeySerializer, **errors(403, 404, 409)},
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAdmin])
    def revoke(self, request, pk=None):
        key = api_key_revoke(user=request.user, key=self.get_object())
        return self.respond(key)

    @extend_schema(
        summary="Undo a revoke made less than 30 days ago (admins)",
        request=None,
        responses={200: s.ApiKeySerializer, **errors(403, 404, 409)},
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAdmin])
    def restore(self, request, pk=None):
        key = api_key_restore(user=request.user, key=self.get_object())
        return self.respond(key)

    @extend_schema(
        summary="Rotate a key (admins): issue its team a new one, revoke this one after an overlap",
        description="Answers 202 with the new key's request, already approved: the worker issues "
        "the key and a member of the team reveals it once, as for any request. The old key is "
        "revoked `overlap_hours` later (once the new one is issued).",
        request=s.KeyRotateSerializer,
        responses={202: s.KeyRequestSerializer, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAdmin])
    def rotate(self, request, pk=None):
        key_request = api_key_rotate(user=request.user, key=self.get_object(), **self.validated())
        return self.respond(
            key_request, s.KeyRequestSerializer, status_code=status.HTTP_202_ACCEPTED, location=True
        )


@extend_schema_view(list=extend_schema(summary="List your teams (all teams for admins)"))
@extend_schema(tags=["keys"])
class TeamViewSet(ServiceViewSet, mixins.ListModelMixin):
    """The teams you belong to (the team a key request is for)."""

    serializer_class = s.TeamSerializer

    def get_queryset(self):
        user = self.request.user
        if not user.is_authenticated:
            return Team.objects.none()
        return Team.objects.all() if user.is_staff else Team.objects.filter(members=user)


# -- audit ---------------------------------------------------------------------------------------------


@extend_schema_view(list=extend_schema(summary="The audit log, newest first (admins)"))
@extend_schema(tags=["audit"])
class AuditEventViewSet(ServiceViewSet, mixins.ListModelMixin):
    """What happened, who did it, to what: written by the services only."""

    serializer_class = s.AuditEventSerializer
    permission_classes = [IsAdmin]

    def get_queryset(self):
        return AuditEvent.objects.for_user(self.request.user).select_related("actor")
