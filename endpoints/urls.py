"""Dashboard URLs (server-rendered pages and their htmx partials)."""

app_name = "endpoints"

urlpatterns: list = []
