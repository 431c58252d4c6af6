from django.apps import AppConfig


class EndpointsConfig(AppConfig):
    name = "endpoints"
    verbose_name = "Model endpoints"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in

        from endpoints.middleware import record_log_in

        user_logged_in.connect(record_log_in, dispatch_uid="endpoints.record_log_in")
        from endpoints import signals  # noqa: F401  (connects the audit receivers)
