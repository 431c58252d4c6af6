"""Dashboard URLs (server-rendered pages and their htmx partials). Records are found by name."""

from django.urls import path

from endpoints.views import (
    allowlist,
    audit,
    cloud_setup,
    deployments,
    endpoints,
    keys,
    lifecycle,
    load_tests,
    logs,
    models,
    playground,
    tokens,
    traffic,
)

app_name = "endpoints"

urlpatterns = [
    path("", endpoints.endpoint_list, name="endpoint-list"),
    path("new-endpoint/", endpoints.endpoint_create, name="endpoint-create"),
    path("endpoints/<str:name>/", endpoints.endpoint_detail, name="endpoint-detail"),
    path("endpoints/<str:name>/settings/", endpoints.endpoint_edit, name="endpoint-edit"),
    path("endpoints/<str:name>/kubernetes.yaml", endpoints.endpoint_manifests, name="endpoint-manifests"),
    path("endpoints/<str:name>/access-state/", endpoints.endpoint_access_state, name="endpoint-access-state"),
    path("endpoints/<str:name>/logs/", logs.endpoint_logs, name="endpoint-logs"),
    path("endpoints/<str:name>/deploy/", deployments.deployment_create, name="deployment-create"),
    path("endpoints/<str:name>/traffic/", traffic.endpoint_traffic_view, name="endpoint-traffic"),
    path("endpoints/<str:name>/load-tests/", load_tests.load_test_panel, name="load-test-panel"),
    path("endpoints/<str:name>/load-tests/start/", load_tests.load_test_start, name="load-test-start"),
    path("load-tests/<int:pk>/cancel/", load_tests.load_test_cancel, name="load-test-cancel"),
    path("load-tests/<int:pk>/locustfile.py", load_tests.load_test_locustfile, name="load-test-locustfile"),
    path("endpoints/<str:name>/stop/", lifecycle.endpoint_stop, name="endpoint-stop"),
    path("endpoints/<str:name>/start/", lifecycle.endpoint_start, name="endpoint-start"),
    path("endpoints/<str:name>/delete/", lifecycle.endpoint_delete, name="endpoint-delete"),
    path("endpoints/<str:name>/allowlist/", allowlist.allowlist_add, name="allowlist-add"),
    path(
        "endpoints/<str:name>/allowlist/<int:pk>/remove/", allowlist.allowlist_remove, name="allowlist-remove"
    ),
    path("playground/", playground.playground_send, name="playground"),
    path("deployments/<int:pk>/", deployments.deployment_detail, name="deployment-detail"),
    path("deployments/<int:pk>/rollback/", deployments.deployment_rollback, name="deployment-rollback"),
    path("deployments/<int:pk>/rollout/", deployments.deployment_rollout, name="deployment-rollout"),
    path("models/", models.model_list, name="model-list"),
    path("new-model/", models.model_create, name="model-create"),
    path("models/<str:name>/", models.model_detail, name="model-detail"),
    path("models/<str:name>/upload/", models.version_create, name="version-create"),
    path("models/<str:name>/v<int:number>/", models.version_detail, name="version-detail"),
    path("models/<str:name>/v<int:number>/deploy/", models.version_deploy, name="version-deploy"),
    path("key-requests/", keys.key_request_list, name="key-request-list"),
    path("key-requests/new/", keys.key_request_create, name="key-request-create"),
    path("key-requests/<int:pk>/", keys.key_request_detail, name="key-request-detail"),
    path("key-requests/<int:pk>/reveal/", keys.key_request_reveal, name="key-request-reveal"),
    path("key-requests/<int:pk>/reissue/", keys.key_request_reissue, name="key-request-reissue"),
    path("key-requests/<int:pk>/approve/", keys.key_request_approve, name="key-request-approve"),
    path("key-requests/<int:pk>/reject/", keys.key_request_reject, name="key-request-reject"),
    path("keys/", keys.key_list, name="key-list"),
    path("keys/<int:pk>/revoke/", keys.key_revoke, name="key-revoke"),
    path("keys/<int:pk>/restore/", keys.key_restore, name="key-restore"),
    path("keys/<int:pk>/rotate/", keys.key_rotate, name="key-rotate"),
    path("audit/", audit.audit_list, name="audit-list"),
    path("cloud-setup/", cloud_setup.cloud_setup, name="cloud-setup"),
    path("tokens/", tokens.token_list, name="token-list"),
    path("tokens/<int:pk>/revoke/", tokens.token_revoke, name="token-revoke"),
]
