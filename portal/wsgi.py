import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

# Uploads are inspected in the sandbox; start its server now rather than on the first upload.
from endpoints.sandbox import client as sandbox  # noqa: E402

sandbox.warm()
