"""REST API URLs, under /api/."""

app_name = "api"

urlpatterns: list = []
