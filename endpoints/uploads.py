"""Uploads bounded while they stream: a file past MODEL_UPLOAD_MAX_BYTES is dropped, never stored.

Django's upload handlers see each chunk as it is read from the request. This one writes to a
temporary file like Django's own, counts the bytes, and at the first chunk past the limit (or at
once, when the request says in advance that it is larger) closes and deletes what it wrote and
stops the upload; the rest of the body is read and discarded so the client gets the answer. The
view then asks `refusal(request)` and answers 400 with the reason.
"""

from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler

from endpoints.services.errors import ServiceError

# Multipart framing and the small form fields that travel with the file.
ENVELOPE_BYTES = 1024 * 1024
# Past the limit, at most this much more of a body is read (and thrown away) to answer cleanly.
DRAIN_BYTES = 64 * 1024 * 1024


class BoundedUploadHandler(TemporaryFileUploadHandler):
    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.declared = content_length
        self.received = 0
        return None

    def new_file(self, *args, **kwargs):
        limit = settings.MODEL_UPLOAD_MAX_BYTES
        if getattr(self, "declared", 0) > limit + ENVELOPE_BYTES:
            self._refuse(f"The request is {self.declared:,} bytes; a model file may be at most {limit:,}.")
        super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data, start):
        self.received = start + len(raw_data)
        limit = settings.MODEL_UPLOAD_MAX_BYTES
        if self.received > limit:
            self.file.close()  # a NamedTemporaryFile: closing deletes it
            self._refuse(f"The file is larger than {limit:,} bytes, the most a model file may be.")
        return super().receive_data_chunk(raw_data, start)

    def _refuse(self, message: str):
        self.request.upload_refused = message
        raise StopUpload(connection_reset=self.declared - self.received > DRAIN_BYTES)


def require_within_limit(request) -> None:
    """Raise the ServiceError that says why the request's upload was dropped, if it was."""
    message = getattr(request, "upload_refused", "")
    if message:
        raise ServiceError(message, field="artifact", code="too_large")
