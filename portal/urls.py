from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("endpoints.api.urls")),
    path("", include("endpoints.urls")),
]

handler404 = "endpoints.api.errors.not_found"
handler500 = "endpoints.api.errors.server_error"
