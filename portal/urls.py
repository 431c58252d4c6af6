from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from endpoints.sign_in import sign_in_throttled
from endpoints.views.common import post_only

urlpatterns = [
    # Both login pages go through the sign-in throttles; these come before the routes they shadow.
    path("admin/login/", sign_in_throttled(admin.site.login)),
    path("accounts/login/", sign_in_throttled(auth_views.LoginView.as_view()), name="login"),
    # Logging out is a POST; a GET (a bookmark, a reload) goes back to the dashboard, still signed in.
    path(
        "accounts/logout/",
        post_only("endpoints:endpoint-list")(auth_views.LogoutView.as_view()),
        name="logout",
    ),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("endpoints.api.urls")),
    path("", include("endpoints.urls")),
]

handler400 = "endpoints.api.errors.bad_request"
handler404 = "endpoints.api.errors.not_found"
handler500 = "endpoints.api.errors.server_error"
