"""REST API URLs, under /api/: the v1 resources, a token exchange, the schema and its docs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from endpoints.api import views

app_name = "api"

router = DefaultRouter()
router.include_format_suffixes = False  # no .json twins of every path in the schema
router.register("models", views.MLModelViewSet, basename="model")
router.register("versions", views.ModelVersionViewSet, basename="version")
router.register("endpoints", views.EndpointViewSet, basename="endpoint")
router.register("deployments", views.DeploymentViewSet, basename="deployment")
router.register("load-tests", views.LoadTestViewSet, basename="load-test")
router.register("key-requests", views.KeyRequestViewSet, basename="key-request")
router.register("keys", views.ApiKeyViewSet, basename="key")
router.register("teams", views.TeamViewSet, basename="team")
router.register("audit", views.AuditEventViewSet, basename="audit")
router.register("auth/tokens", views.ApiTokenViewSet, basename="api-token")

urlpatterns = [
    path("v1/auth/token/", views.TokenView.as_view(), name="token"),
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script from a URL instead of inline, for the CSP.
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api:schema", template_name="endpoints/swagger_ui.html"),
        name="docs",
    ),
]
