"""The demo model: iris, trained from the copy of the dataset that ships with scikit-learn."""

import io

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_LABELS = {"0": "setosa", "1": "versicolor", "2": "virginica"}
# One flower of each species from the dataset (rows 0, 50 and 100): the demo version's examples.
IRIS_EXAMPLES = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 7.0, "sepal_width": 3.2, "petal_length": 4.7, "petal_width": 1.4},
    {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5},
]


def iris_skops_bytes() -> bytes:
    """A LogisticRegression fitted on iris with named features, as a .skops file."""
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    frame = load_iris(as_frame=True).frame
    features = frame.iloc[:, :4]
    features.columns = IRIS_FEATURES
    model = LogisticRegression(max_iter=1000).fit(features, frame["target"])
    return sio.dumps(model)


class NamedBytes(io.BytesIO):
    """An in-memory upload with a file name, as the services expect."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name
        self.size = len(data)
