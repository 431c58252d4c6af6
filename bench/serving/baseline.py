"""The seed-style baseline: FastAPI, a pydantic request model and a plain `def` predict endpoint.

Written the way a generated seed app usually is: the row goes through pydantic, then a one-row
pandas DataFrame (so the model sees its feature names), then scikit-learn. It reads the same
SERVING_MODEL_URI / SERVING_MODEL_META as the container. Run: `uvicorn bench.serving.baseline:app`.
"""

import os

import numpy as np
import orjson
import pandas as pd
import skops.io as sio
from fastapi import FastAPI
from pydantic import BaseModel, create_model

meta = orjson.loads(os.environ["SERVING_MODEL_META"])
model = sio.load(os.environ["SERVING_MODEL_URI"], trusted=meta["trusted_types"])
features = [feature["name"] for feature in meta["schema"]]
numbers = [feature["name"] for feature in meta["schema"] if feature.get("type", "number") != "string"]
labels = {value: meta["label_map"].get(str(value), value) for value in model.classes_.tolist()}
KINDS = {"string": str, "number": float, "integer": float, "boolean": float}


def _kind(feature: dict):
    kind = KINDS[feature.get("type", "number")]
    return (kind | None, None) if feature.get("nullable") else (kind, ...)


Row = create_model("Row", **{feature["name"]: _kind(feature) for feature in meta["schema"]})


class Batch(BaseModel):
    inputs: list[list[float | str | None]]


app = FastAPI()


@app.post("/predict")
def predict(row: Row) -> dict:
    frame = pd.DataFrame([row.model_dump()]).astype({name: float for name in numbers}).fillna(np.nan)
    probabilities = model.predict_proba(frame)[0]
    result = {
        f"{labels[value]}_probability": float(p) for value, p in zip(labels, probabilities, strict=True)
    }
    result["target"] = labels[model.classes_[probabilities.argmax()].item()]
    return result


@app.post("/predict/batch")
def predict_batch(batch: Batch) -> dict:
    frame = (
        pd.DataFrame(batch.inputs, columns=features).astype({name: float for name in numbers}).fillna(np.nan)
    )
    return {"predictions": [labels[value] for value in model.predict(frame).tolist()]}
