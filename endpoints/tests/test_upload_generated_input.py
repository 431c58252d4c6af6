"""Generated uploads: broken, truncated and foreign artifacts with any form fields are refused
with a 400 or 422 that says why, never a 500, and leave no version behind (400 for a form field
of the wrong form, 422 for a file or JSON the portal cannot use)."""

from __future__ import annotations

import itertools
import json

from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from endpoints.models import ModelVersion
from endpoints.services.versions import ml_model_create

MODEL_NUMBERS = itertools.count()
FILE_NAMES = ["model.skops", "model.onnx", "model.pkl", "model.joblib", "model.txt", "model"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)
schemas = (
    st.just('[{"name": "a", "type": "number"}, {"name": "b", "type": "number"}]')
    | json_values.map(json.dumps)
    | st.text(max_size=30)
)


def mutations(valid: bytes):
    """The valid artifact cut short, with bytes changed, or with bytes of something else."""
    return (
        st.integers(0, len(valid) - 1).map(lambda cut: valid[:cut])
        | st.lists(
            st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)), min_size=1, max_size=4
        ).map(lambda edits: _edit(valid, edits))
        | st.binary(max_size=2000)
    )


def _edit(data: bytes, edits) -> bytes:
    changed = bytearray(data)
    for index, value in edits:
        changed[index] = value
    return bytes(changed)


@settings(max_examples=40)
@given(data=st.data())
def test_a_broken_upload_is_refused_saying_why(admin, iris_bytes, data):
    ml_model = ml_model_create(user=admin, name=f"model-{next(MODEL_NUMBERS)}")
    client = APIClient()
    client.force_authenticate(admin)
    fields = {
        "artifact": SimpleUploadedFile(
            data.draw(st.sampled_from(FILE_NAMES)), data.draw(mutations(iris_bytes))
        ),
        "input_schema": data.draw(schemas),
        "label_map": data.draw(json_values.map(json.dumps) | st.text(max_size=10)),
    }
    before = ModelVersion.objects.count()
    response = client.post(f"/api/v1/models/{ml_model.pk}/versions/", fields, format="multipart")
    assert response.status_code < 500, response.content[:300]
    if response.status_code != 201:
        assert response.status_code in (400, 422), response.content[:300]
        assert response.json()["detail"]
        assert ModelVersion.objects.count() == before
